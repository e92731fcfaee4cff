"""`sde synth`: generate a synthetic identifiable SOURCE directory."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table


def synth(
    persons: int = typer.Option(..., "--persons", "-n", help="How many persons to generate."),
    out: Path = typer.Option(..., "--out", "-o", help="New (or empty) directory to write."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives identical files."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or summary."),
) -> None:
    """Generate synthetic, identifiable OMOP-shaped source CSVs with planted identifiers.

    The output is a SOURCE directory for `sde ingest`: one CSV per table plus
    `_truth/planted.jsonl`, the record of every identifier planted in the notes.
    """
    from sde.cli.context import console
    from sde.synth.write import check_target, synthesize

    # Checked before the progress bar appears, so bad input is one line and nothing else.
    check_target(out)
    with Progress(
        TextColumn("synth"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
        transient=True,
    ) as bar:
        task = bar.add_task("persons", total=max(persons, 0))
        summary = synthesize(persons, out, seed, progress=lambda n: bar.advance(task, n))
    if quiet:
        return
    table = Table(title=f"{out} (seed {seed})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, rows in summary.rows.items():
        table.add_row(name, f"{rows:,}")
    table.add_row("total", f"{summary.total_rows:,}", style="bold")
    table.add_row("planted identifiers", f"{summary.planted:,}")
    console.print(table)
    console.print(
        f"{summary.persons:,} persons in {summary.seconds:.1f} s: "
        f"{summary.persons / summary.seconds:,.0f} persons/s, "
        f"{summary.total_rows / summary.seconds:,.0f} rows/s"
    )


def register(app: typer.Typer) -> None:
    app.command("synth")(synth)
