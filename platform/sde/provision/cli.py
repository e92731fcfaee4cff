"""`sde projects provision` and `sde data catalogue`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from sde.cli.context import actor, console, engine, settings

data_app = typer.Typer(
    name="data", help="Provisioned project data: what a project can see.", no_args_is_help=True
)


def provision_command(
    project: str = typer.Argument(..., help="Project id."),
    as_json: bool = typer.Option(False, "--json", help="Print the build manifest as JSON."),
) -> None:
    """Build the project's read-only data from its grants (opt-outs applied) and swap it in."""
    from sde.ingest.cli import progress_bars
    from sde.provision.build import provision

    with progress_bars() as hook:
        result = provision(settings(), engine(), project, actor(), hook)
    if as_json:
        import json

        print(json.dumps(result.manifest, indent=1, default=str))
        return
    table = Table(title=f"Provisioned {project} in {result.seconds:.1f}s")
    for col in ("table", "rows", "columns"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for d in result.manifest["datasets"]:
        for name, t in d["tables"].items():
            cols = ", ".join(c["name"] for c in t["columns"])
            table.add_row(f"{d['schema']}.{name}", f"{t['rows']:,}", cols)
    console.print(table)
    opt = result.manifest["optout"]
    if opt["exempt"]:
        console.print(f"opt-out: project exempt ({opt['exempt_reason']})")
    elif opt["list_version"] is None:
        console.print("opt-out: no list loaded")
    else:
        removed = ", ".join(f"{k}: {v:,}" for k, v in opt["removed_persons"].items())
        console.print(f"opt-out list v{opt['list_version']} applied; people removed: {removed}")
    console.print(f"data {result.data_dir} -> {result.build.name}")
    console.print(f"manifest sha256 {result.manifest_hash}")


@data_app.command("catalogue")
def catalogue_command(
    project: str | None = typer.Option(None, "--project", help="Project id."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", help="A provisioned data directory (default: the project's)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List a project's tables and columns with their descriptions."""
    from sde.core.errors import SdeError
    from sde.data import DataError
    from sde.data.cli import print_catalogue
    from sde.provision.build import data_dir as project_data

    if data_dir is None:
        if project is None:
            raise SdeError("name a --project or a --data-dir")
        data_dir = project_data(settings(), project)
    try:
        print_catalogue(data_dir, as_json)
    except DataError as exc:
        raise SdeError(str(exc)) from None


def register(app: typer.Typer) -> None:
    # `sde projects provision` lives with provisioning, beside the registry's commands.
    from sde.cli.projects import app as projects_app

    projects_app.command("provision")(provision_command)
    app.add_typer(data_app)
