"""What every command needs: settings, the state database, the acting user."""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cache
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from sde.core.config import Settings, load_settings
from sde.core.db import get_engine, transaction

console = Console()
err_console = Console(stderr=True)


@cache
def settings() -> Settings:
    return load_settings()


def engine() -> Engine:
    """The state database, migrated to the current schema."""
    from sde.core.schema import ensure_schema

    eng = get_engine(settings())
    ensure_schema(eng)
    return eng


def actor() -> str:
    """Who the audit log names for a CLI action: $SDE_ACTOR, else the OS account."""
    return os.environ.get("SDE_ACTOR") or f"cli:{getpass.getuser()}"


def signer_and_witness() -> tuple[Any, Any]:
    from sde.audit import CheckpointSigner

    s = settings()
    return CheckpointSigner(s.checkpoint_key_path), s.witness_path


@contextmanager
def write() -> Iterator[Session]:
    """A transaction for a registry change; the new chain head is checkpointed after commit."""
    from sde.audit import audited_transaction

    with audited_transaction(engine(), settings()) as session:
        yield session


@contextmanager
def read() -> Iterator[Session]:
    with transaction(engine()) as session:
        yield session


def show(rows: Sequence[dict[str, Any]], columns: Sequence[str], as_json: bool, title: str) -> None:
    """Print rows as a table for people, or as JSON lines for scripts."""
    if as_json:
        print(json.dumps(list(rows), default=str, indent=1))
        return
    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


def show_fields(info: dict[str, Any], as_json: bool) -> None:
    """Print one record as `key: value` lines for people, or as JSON for scripts."""
    if as_json:
        print(json.dumps(info, default=str, indent=1))
        return
    for key, value in info.items():
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        console.print(f"{key}: {'-' if shown in ('', None) else shown}", highlight=False)


def reset() -> None:
    """Forget cached settings (tests run several configurations in one process)."""
    settings.cache_clear()
