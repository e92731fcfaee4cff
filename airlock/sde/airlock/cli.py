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


ingress_app = typer.Typer(
    name="ingress",
    help="Files coming into a project's workspaces (released read-only under /ingress).",
    no_args_is_help=True,
)
app.add_typer(ingress_app)


@ingress_app.command("upload")
def ingress_upload_cmd(
    project: str = typer.Argument(..., help="The project the files are for."),
    files: list[Path] = typer.Argument(..., help="Local files to upload."),
    user: str = typer.Option(
        ..., "--user", help="The project member the request is of (its author)."
    ),
    group: str = typer.Option("files", "--group", help="The file group."),
    request_id: str | None = typer.Option(
        None, "--request", help="Add to this ingress request instead of creating one."
    ),
    context: str | None = typer.Option(None, "--context", help="What the files are."),
    controls: str | None = typer.Option(
        None, "--controls", help="Why they are safe to bring in (source, review done)."
    ),
    submit: bool = typer.Option(False, "--submit", help="Submit the request for review too."),
) -> None:
    """Upload files into an ingress request (scanned by ClamAV, checked, then reviewed)."""
    from sde.airlock import ingress, service
    from sde.cli.context import console, read, settings, write

    st = settings()
    with write() as s:
        rid = ingress.upload_files(
            s,
            user,
            st,
            project,
            files,
            group=group,
            request_id=request_id,
            context=context,
            controls=controls,
        )
    if submit:
        with write() as s:
            service.submit(s, user, st, rid)
    with read() as s:
        request = service.get_request(s, rid)
        status = str(request.status)
        findings = [
            (f.name, x)
            for f in service.active_files(s, request)
            for x in service.report_of(s, request, f).get("findings", [])
            if x["status"] != "pass"
        ]
    print(rid)
    for name, finding in findings:
        console.print(
            f"  {finding['status']} {name}: {finding['name']}: {finding['reason']}",
            highlight=False,
            markup=False,
        )
    console.print(f"{rid}: {status}", highlight=False, markup=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app)
