"""The demonstration platform behind `sde demo`: registry, data and sign-in accounts.

Demo behaviour lives here and only here, above every component it drives (the
registry, the data pipeline, provisioning, the hub), so no component imports
demo code and nothing below needs to know a demo exists. `sde demo` (`cli.py`)
is its only caller, beside `sde hub demo-code`, which reads what it prepared.

Each step is idempotent: running `sde demo` again reuses what exists.
"""

from __future__ import annotations

# Who the demo's audit events name as the actor: every demo write, registry, data
# and sign-in alike, so an auditor can tell the seeded state from real work.
DEMO_ACTOR = "demo:seed"
DEMO_PROJECT = "diabetes-outcomes"
