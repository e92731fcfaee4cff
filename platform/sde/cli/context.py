"""What every command needs: settings and the state database, loaded once."""

from __future__ import annotations

from functools import cache

from rich.console import Console
from sqlalchemy import Engine

from sde.core.config import Settings, load_settings
from sde.core.db import get_engine

console = Console()
err_console = Console(stderr=True)


@cache
def settings() -> Settings:
    return load_settings()


def engine() -> Engine:
    """The state database, migrated to the current schema."""
    from sde.registry.schema import ensure_schema

    eng = get_engine(settings())
    ensure_schema(eng)
    return eng


def reset() -> None:
    """Forget cached settings (tests run several configurations in one process)."""
    settings.cache_clear()
