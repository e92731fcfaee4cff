"""`python -m sde.airlock.app`: how the hub starts the airlock service."""

from sde.airlock.app.server import main

main()
