"""`sde audit`: verify and read the audit log."""

from __future__ import annotations

import json
from datetime import date, datetime

import typer

from sde.audit import checkpoint, list_events, verify
from sde.cli.context import console, engine, show, signer_and_witness
from sde.core.errors import InvalidInput

app = typer.Typer(
    name="audit", help="Verify and read the tamper-evident audit log.", no_args_is_help=True
)


def _since(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    except ValueError:
        raise InvalidInput(f"invalid time {value!r}: expected YYYY-MM-DD or an ISO time") from None
    if isinstance(when, datetime):
        return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return when.isoformat()


@app.command("verify")
def verify_cmd(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Check the hash chain and signed checkpoints; exit 1 and name the first bad seq."""
    signer, witness = signer_and_witness()
    report = verify(engine(), signer, witness)
    if as_json:
        print(json.dumps(report.__dict__))
    else:
        style = "green" if report.ok else "red"
        console.print(f"[{style}]{report.summary()}[/{style}]")
        for warning in report.warnings:
            console.print(f"[yellow]warning[/yellow]: {warning}")
    if not report.ok:
        raise typer.Exit(1)


@app.command("checkpoint")
def checkpoint_cmd() -> None:
    """Sign the current chain head now (write commands do this themselves)."""
    signer, witness = signer_and_witness()
    cp = checkpoint(engine(), signer, witness)
    console.print(f"checkpoint at seq {cp.seq}" if cp else "head already checkpointed")


@app.command("log")
def log_cmd(
    project: str | None = typer.Option(None, "--project", help="Only this project."),
    actor: str | None = typer.Option(None, "--actor", help="Only this actor."),
    action: str | None = typer.Option(None, "--action", help="Only actions starting with this."),
    since: str | None = typer.Option(None, "--since", help="From this date/time (UTC)."),
    until: str | None = typer.Option(None, "--until", help="Before this date/time (UTC)."),
    limit: int | None = typer.Option(None, "--limit", help="At most this many events."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON lines."),
) -> None:
    """List audit events, oldest first."""
    events = list_events(
        engine(),
        project=project,
        actor=actor,
        action=action,
        since=_since(since),
        until=_since(until),
        limit=limit,
    )
    if as_json:
        for event in events:
            print(json.dumps(event, ensure_ascii=False))
        return
    rows = [{**e, "details": json.dumps(e["details"], ensure_ascii=False)[:80]} for e in events]
    show(rows, ["seq", "ts", "actor", "action", "target", "project", "details"], False, "Audit log")


def register(root: typer.Typer) -> None:
    root.add_typer(app)
