"""`sde demo`: a demonstration registry, its data and sign-in accounts, then the hub.

Idempotent: running it again reuses what exists.
"""

from __future__ import annotations

import typer

from sde.cli.context import console, settings, write
from sde.demo import DEMO_PROJECT
from sde.demo.registry import DEMO_PEOPLE, seed_registry


def demo(
    persons: int = typer.Option(10_000, "--persons", help="Synthetic persons for the demo data."),
    no_hub: bool = typer.Option(
        False, "--no-hub", help="Prepare the demo accounts but do not start the hub."
    ),
) -> None:
    """Seed a demonstration registry and print what is there."""
    console.print(f"SDE_HOME: {settings().home}")
    with write() as session:
        made = seed_registry(session)
    for item in made:
        console.print(f"created {item}")
    if not made:
        console.print("demo registry already present")
    # The data pipeline and the hub load only when the demo runs, not for `sde --help`.
    from sde.cli.context import engine
    from sde.demo.accounts import demo_hub
    from sde.demo.data import build_demo_data
    from sde.ingest.cli import progress_bars

    # Synthesise, ingest, grant and provision the demo project's data (idempotent).
    with progress_bars() as hook:
        for item in build_demo_data(settings(), engine(), DEMO_PROJECT, persons, progress=hook):
            console.print(item)
    console.print("people: " + ", ".join(p[0] for p in DEMO_PEOPLE))
    console.print(f"try: sde access check alice {DEMO_PROJECT}")
    demo_hub(settings(), start=not no_hub)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
