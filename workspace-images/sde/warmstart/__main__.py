import sys

from sde.warmstart import main

sys.exit(main())
