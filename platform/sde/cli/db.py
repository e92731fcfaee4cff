"""`sde db`: the state database schema."""

from __future__ import annotations

import typer

from sde.cli.context import console, settings
from sde.core.db import get_engine
from sde.core.schema import current_revisions, ensure_schema

app = typer.Typer(name="db", help="State database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade() -> None:
    """Create or migrate the state database to the current schema."""
    eng = get_engine(settings())
    ensure_schema(eng)
    console.print(f"schema at {', '.join(sorted(current_revisions(eng)))}")


@app.command("status")
def status() -> None:
    """Show the database URL (without password) and schema revision."""
    eng = get_engine(settings())
    console.print(f"database: {eng.url.render_as_string(hide_password=True)}")
    console.print(f"revisions: {', '.join(sorted(current_revisions(eng))) or '(empty)'}")


def register(root: typer.Typer) -> None:
    root.add_typer(app)
