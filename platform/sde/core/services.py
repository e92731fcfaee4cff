"""How the hub's managed services (the API gate, the warm-pool filler) start.

Each reads the settings itself (the hub passes them on as SDE_* variables) and,
like the `sde` command, reports a problem the operator can fix as one line
`error: ...` with the error's exit code, so the hub's log shows why the service
stopped instead of a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from sde.core.config import Settings, load_settings
from sde.core.errors import SdeError


def run_service(serve: Callable[[Settings], object]) -> None:
    try:
        serve(load_settings())
    except SdeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
