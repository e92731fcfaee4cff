"""`sde airlock`: check files as the airlock would, verify release records.

`check` runs the check-runner over local files (what a researcher sees before
submitting, without a request); `verify-release` checks a release record's
signature, and with `--files` the downloaded files against it, so that anyone
holding the installation's public key (`sde airlock public-key`) can tell that
what they hold is what the checkers approved.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sde.core.errors import InvalidInput, NotFound

app = typer.Typer(
    name="airlock",
    help="The airlock: check outputs, verify release records.",
    no_args_is_help=True,
)


@app.command("check")
def check_cmd(
    paths: list[Path] = typer.Argument(..., help="Files to check."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Run the airlock's checks over files; exit 0 when every file passes, 1 otherwise."""
    from rich.markup import escape

    from sde.airlock.checks import CheckStatus, run_checks
    from sde.cli.context import console, settings

    reports = {}
    for path in paths:
        if not path.is_file():
            raise NotFound(f"{path} is not a file")
        reports[str(path)] = run_checks(path, path.name, settings())
    passed = all(r.status == CheckStatus.PASS for r in reports.values())
    if as_json:
        out = {"status": "pass" if passed else "fail"}
        print(json.dumps({**out, "files": {p: r.as_dict() for p, r in reports.items()}}))
    else:
        colour = {"pass": "green", "review": "yellow", "fail": "red"}
        for name, report in reports.items():
            c = colour[report.status]
            console.print(f"[{c}]{report.status}[/{c}] {escape(name)}", highlight=False)
            for f in report.findings:
                c = colour[f.status]
                where = f" ({', '.join(f.locations)})" if f.locations else ""
                text = escape(f"{f.name}: {f.reason}{where}")
                console.print(f"  [{c}]{f.status}[/{c}] {text}", highlight=False)
    if not passed:
        raise typer.Exit(1)


@app.command("verify-release")
def verify_release_cmd(
    record: Path = typer.Argument(..., help="The signed release record (JSON)."),
    public_key: Path | None = typer.Option(
        None, "--public-key", help="The signer's public key (PEM); default this installation's."
    ),
    files: Path | None = typer.Option(
        None, "--files", help="A folder of the downloaded files to check against the record."
    ),
) -> None:
    """Check a release record's signature (and files); exit 1 naming what does not match."""
    from rich.markup import escape

    from sde.airlock import release_record
    from sde.cli.context import console, err_console, settings

    try:
        signed = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{record}: not a readable JSON file: {exc}") from None
    release_record.verify(signed, settings(), public_key)
    if files is not None:
        problems = release_record.check_files(signed, files)
        for problem in problems:
            err_console.print(f"[red]{escape(problem)}[/red]", highlight=False)
        if problems:
            raise typer.Exit(1)
    n = len(signed["record"]["files"])
    console.print(f"[green]release record verified[/green]: {n} file(s)", highlight=False)


@app.command("public-key")
def public_key_cmd() -> None:
    """Print the public key release records are signed with (PEM), for outside verifiers."""
    from sde.airlock import release_record
    from sde.cli.context import settings

    print(release_record.public_key_pem(settings()), end="")


def register(root: typer.Typer) -> None:
    root.add_typer(app)
