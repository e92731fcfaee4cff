"""`sde config`: show the effective configuration and its reference."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import typer

from sde.cli.context import settings
from sde.core.config import SECTIONS, settings_reference

app = typer.Typer(name="config", help="Configuration.", no_args_is_help=True)


@app.command("show")
def show() -> None:
    """Print the effective settings (file, environment and defaults merged) as JSON."""
    s = settings()
    effective: dict[str, Any] = {"home": str(s.home), "config_file": str(s.config_file or "")}
    effective.update({name: asdict(getattr(s, name)) for name in SECTIONS})
    if s.database.url:
        # The output ends up in tickets and chat; the password stays out of it.
        from sqlalchemy.engine import make_url

        url = make_url(s.database.url)
        effective["database"]["url"] = url.render_as_string(hide_password=url.password is not None)
    print(json.dumps(effective, indent=1))


@app.command("docs")
def docs() -> None:
    """Print the Markdown reference of every setting."""
    print(settings_reference())


def register(root: typer.Typer) -> None:
    root.add_typer(app)
