"""`sde datasets`: the dataset catalogue and per-project grants."""

from __future__ import annotations

import typer
from sqlalchemy import select

from sde.cli.context import actor, console, read, show, write
from sde.registry import service
from sde.registry.enums import Classification, spoken
from sde.registry.models import Dataset

app = typer.Typer(
    name="datasets", help="The dataset catalogue and grants to projects.", no_args_is_help=True
)


@app.command("add")
def add(
    name: str = typer.Argument(..., help="Dataset name (a-z 0-9 _)."),
    description: str = typer.Option("", "--description", help="What the dataset holds."),
    classification: str = typer.Option(
        Classification.PSEUDONYMISED,
        "--classification",
        help=f"{spoken(Classification)}.",
    ),
) -> None:
    """Add a dataset to the catalogue (versions come from `sde ingest`)."""
    with write() as session:
        service.add_dataset(
            session, actor(), name=name, description=description, classification=classification
        )
    console.print(f"added dataset {name}")


@app.command("list")
def list_datasets(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List datasets and their versions."""
    with read() as session:
        rows = [
            {
                "name": d.name,
                "classification": d.classification,
                "description": d.description,
                "versions": ",".join(str(v.version) for v in d.versions),
                "latest_manifest": d.versions[-1].manifest_hash[:12] if d.versions else None,
            }
            for d in session.scalars(select(Dataset).order_by(Dataset.name))
        ]
    show(
        rows,
        ["name", "classification", "versions", "latest_manifest", "description"],
        as_json,
        "Datasets",
    )


@app.command("show")
def show_dataset(
    name: str = typer.Argument(..., help="Dataset name."),
    version: int | None = typer.Option(None, "--version", help="Version (default: latest)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the tables and columns of a dataset version."""
    with read() as session:
        dv = service.get_dataset_version(session, name, version)
        rows = [{"table": t, "columns": ", ".join(cols)} for t, cols in sorted(dv.tables.items())]
        title = f"{dv.label} manifest {dv.manifest_hash}"
    show(rows, ["table", "columns"], as_json, title)


@app.command("grant")
def grant(
    project: str = typer.Argument(..., help="Project id."),
    dataset: str = typer.Argument(..., help="Dataset name."),
    columns: list[str] = typer.Option(
        ..., "--column", "-c", help="table.column or table.* (repeat for each)."
    ),
    version: int | None = typer.Option(None, "--version", help="Version (default: latest)."),
) -> None:
    """Grant a project a minimal set of columns of one dataset version."""
    with write() as session:
        g = service.grant_access(
            session, actor(), slug=project, dataset=dataset, version=version, columns=columns
        )
        label = g.dataset_version.label
    console.print(f"granted {project} {len(columns)} column spec(s) of {label}")


@app.command("revoke")
def revoke(
    project: str = typer.Argument(..., help="Project id."),
    dataset: str = typer.Argument(..., help="Dataset name."),
    version: int = typer.Option(..., "--version", help="Version."),
) -> None:
    """Withdraw a project's grant on a dataset version."""
    with write() as session:
        service.revoke_grant(session, actor(), slug=project, dataset=dataset, version=version)
    console.print(f"revoked {project}'s grant on {dataset}@{version}")


def register(root: typer.Typer) -> None:
    root.add_typer(app)
