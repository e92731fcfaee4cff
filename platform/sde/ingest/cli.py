"""`sde ingest` and `sde optout`: publishing dataset versions and managing the opt-out list."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from sde.cli.context import actor, console, engine, err_console, read, settings, show, write
from sde.ingest.source import SourceInvalid
from sde.registry.enums import Classification

optout_app = typer.Typer(
    name="optout",
    help="National Data Opt-Out: load the list, exempt projects.",
    no_args_is_help=True,
)


@contextmanager
def progress_bars() -> Iterator[Callable[[str, int | None], Callable[[int], None]]]:
    """A progress hook for long steps: a bar when the total is known, a spinner when not."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    ) as bars:

        def hook(label: str, total: int | None) -> Callable[[int], None]:
            task = bars.add_task(label, total=total if total is not None else 1)

            def advance(n: int) -> None:
                bars.advance(task, n)

            return advance

        yield hook


def print_problems(exc: SourceInvalid) -> None:
    table = Table(title=f"Source problems ({len(exc.problems)})")
    for col in ("file", "line/row", "column", "problem"):
        table.add_column(col)
    for p in exc.problems[:200]:
        where = f"line {p.line}" if p.line is not None else f"row {p.row}" if p.row else ""
        table.add_row(p.file, where, p.column or "", p.message)
    err_console.print(table)


def ingest_command(
    source: Path = typer.Argument(
        ..., help="Source directory (one CSV or Parquet file per table)."
    ),
    dataset: str = typer.Option(..., "--dataset", help="Dataset name (created when new)."),
    suppress_to_k: int | None = typer.Option(
        None,
        "--suppress-to-k",
        help="Suppress (blank the widest quasi-identifier, then remove people) until every "
        "equivalence class has at least K people.",
    ),
    date_shift_days: int = typer.Option(
        0,
        "--date-shift-days",
        help="Shift each person's dates by their own offset of up to N days (0: off).",
    ),
    reference_year: int | None = typer.Option(
        None, "--reference-year", help="Year at which age bands are computed (default: this year)."
    ),
    free_text: str = typer.Option(
        "scrub", "--free-text", help="scrub (default) or drop free-text columns."
    ),
    description: str = typer.Option(
        "", "--description", help="Description, when the dataset is new."
    ),
    classification: str = typer.Option(
        Classification.PSEUDONYMISED,
        "--classification",
        help="Classification, when the dataset is new.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Validate a source and publish it as a new immutable, de-identified dataset version."""
    from sde.ingest.pipeline import IngestOptions, ingest

    options = IngestOptions(
        suppress_to_k=suppress_to_k,
        date_shift_days=date_shift_days,
        reference_year=reference_year,
        free_text=free_text,
        description=description,
        classification=classification,
    )
    try:
        with progress_bars() as hook:
            result = ingest(settings(), engine(), source, dataset, actor(), options, hook)
    except SourceInvalid as exc:
        print_problems(exc)
        raise
    if as_json:
        import json

        print(json.dumps(result.manifest, indent=1, default=str))
        return
    m = result.manifest
    summary = Table(title=f"Published {result.dataset}@{result.version} in {result.seconds:.1f}s")
    summary.add_column("table")
    summary.add_column("rows", justify="right")
    summary.add_column("columns")
    for name, t in m["tables"].items():
        summary.add_row(name, f"{t['rows']:,}", ", ".join(c["name"] for c in t["columns"]))
    console.print(summary)
    facts = _facts(m)
    ft = Table(title="De-identification")
    ft.add_column("what")
    ft.add_column("value")
    for k, v in facts:
        ft.add_row(k, v)
    console.print(ft)
    console.print(f"manifest sha256 {result.manifest_hash}")
    console.print(f"path {result.path}")


def _facts(m: dict[str, Any]) -> list[tuple[str, str]]:
    persons = m["persons"]
    kb, ka = m["k_anonymity"]["before"], m["k_anonymity"]["after"]
    ents = m["free_text"]["entities"]
    return [
        ("persons in source", f"{persons['source']:,}"),
        (
            "removed: opt-out",
            f"{persons['removed_optout']:,} (list v{m['optout']['list_version']})"
            if m["optout"]["list_version"]
            else "0 (no opt-out list loaded)",
        ),
        ("removed: k suppression", f"{persons['removed_k_suppression']:,}"),
        ("persons published", f"{persons['published']:,}"),
        ("quasi-identifiers", " x ".join(ka["quasi_identifiers"])),
        (
            "k before",
            f"min k {kb['min_k']}, {kb['share_below_k']:.2%} of records in classes below "
            f"{kb['target_k']}",
        ),
        (
            "k after",
            f"min k {ka['min_k']}, {ka['share_below_k']:.2%} of records in classes below "
            f"{ka['target_k']}",
        ),
        (
            "free text",
            m["free_text"]["mode"]
            + (": " + ", ".join(f"{k} {v:,}" for k, v in sorted(ents.items())) if ents else ""),
        ),
    ]


@optout_app.command("load")
def optout_load(
    file: Path = typer.Argument(..., help="File of NHS numbers, one per line (header optional)."),
) -> None:
    """Store a new version of the opt-out list (only keyed hashes are kept)."""
    from sde.ingest import optout

    with write() as session:
        entry = optout.load_list(session, actor(), settings(), file)
        version, entries = entry.version, entry.entries
    console.print(f"opt-out list v{version}: {entries:,} people (stored as keyed hashes)")


@optout_app.command("exempt")
def optout_exempt(
    project: str = typer.Argument(..., help="Project id."),
    reason: str = typer.Option(..., "--reason", help="Legal basis (e.g. s251 reference)."),
) -> None:
    """Exempt a project from the opt-out: its data keeps opted-out people."""
    from sde.ingest import optout

    with write() as session:
        optout.exempt(session, actor(), project, reason)
    console.print(f"project {project} is exempt from the opt-out (re-provision to apply)")


@optout_app.command("revoke")
def optout_revoke(
    project: str = typer.Argument(..., help="Project id."),
    reason: str = typer.Option(..., "--reason", help="Why (recorded in the audit log)."),
) -> None:
    """Withdraw a project's opt-out exemption."""
    from sde.ingest import optout

    with write() as session:
        optout.revoke_exemption(session, actor(), project, reason)
    console.print(f"project {project} is no longer exempt (re-provision to apply)")


@optout_app.command("show")
def optout_show(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show the opt-out list versions and the exempt projects."""
    from sqlalchemy import select

    from sde.ingest.models import OptOutExemption, OptOutList

    with read() as session:
        rows: list[dict[str, Any]] = [
            {
                "kind": "list",
                "name": f"v{e.version}",
                "detail": f"{e.entries} entries, sha256 {e.list_sha256[:12]}",
                "by": e.loaded_by,
                "at": e.loaded_at,
            }
            for e in session.scalars(select(OptOutList).order_by(OptOutList.version))
        ]
        rows += [
            {
                "kind": "exemption",
                "name": x.project_slug,
                "detail": x.reason,
                "by": x.granted_by,
                "at": x.granted_at,
            }
            for x in session.scalars(select(OptOutExemption).order_by(OptOutExemption.project_slug))
        ]
    show(rows, ["kind", "name", "detail", "by", "at"], as_json, "National Data Opt-Out")


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest_command)
    app.add_typer(optout_app)
