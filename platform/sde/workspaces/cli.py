"""`sde workspaces`: the workspace network and its firewall, the warm pool, work volumes."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="workspaces",
    help="Researcher workspaces: network isolation and the warm pool.",
    no_args_is_help=True,
)
network_app = typer.Typer(
    name="network",
    help="The internal workspace network and the host firewall rules that go with it.",
    no_args_is_help=True,
)
app.add_typer(network_app)
pool_app = typer.Typer(
    name="pool",
    help="The warm pool: workspace containers started ahead, empty, for spawns to claim.",
    no_args_is_help=True,
)
app.add_typer(pool_app)
work_app = typer.Typer(
    name="work",
    help="Work volumes: one fixed-size filesystem per person x project, named NAME-work-ID.",
    no_args_is_help=True,
)
app.add_typer(work_app)


def register(root: typer.Typer) -> None:
    root.add_typer(app)


@network_app.command("up")
def up() -> None:
    """Create the network and install the firewall rules (idempotent; needs root)."""
    from sde.cli.context import settings
    from sde.workspaces.network import ensure_network

    net = ensure_network(settings())
    ports = ", ".join(str(p) for p in net.allowed_ports)
    rules = "firewall installed" if net.firewall else "firewall NOT managed by sde"
    typer.echo(
        f"network {net.name} up: bridge {net.bridge}, {net.subnet} via {net.gateway}; "
        f"workspaces reach only {net.gateway} ports {ports} ({rules})"
    )


@network_app.command("down")
def down() -> None:
    """Remove the firewall rules and the network (refused while workspaces run)."""
    from sde.cli.context import settings
    from sde.workspaces.network import remove_network

    s = settings()
    removed = remove_network(s)
    what = "removed" if removed else "was not there (firewall rules removed if any)"
    typer.echo(f"network {s.workspaces.network} {what}")


@network_app.command("status")
def status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the network, its isolation settings and whether the firewall is in place."""
    from sde.cli.context import settings, show_fields
    from sde.workspaces.network import network_status

    show_fields(network_status(settings()), as_json)


@pool_app.command("status")
def pool_status(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the pool's ready and warming containers and the workspaces claimed from it."""
    from sde.cli.context import settings, show_fields
    from sde.workspaces.pool import status

    show_fields(status(settings()), as_json)


@work_app.command("list")
def work_list(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Every work volume with whose it is (its labels) and whether a workspace has it mounted."""
    from sde.cli.context import settings, show
    from sde.workspaces import workvolumes
    from sde.workspaces.engine import docker_client

    rows = workvolumes.listing(docker_client(), settings())
    columns = ["volume", "user", "project", "mounted", "carried_from"]
    show(rows, columns, as_json, "work volumes")


@work_app.command("carry-over")
def work_carry_over(
    old: str = typer.Argument(..., help="The old-named volume, NAME-work-USER-PROJECT."),
    username: str = typer.Argument(..., help="The person it belongs to."),
    project: str = typer.Argument(..., help="The project it belongs to."),
) -> None:
    """Say whose an ambiguous old-named work volume is: copied into theirs, once (audited)."""
    from sde.cli.context import actor, settings, write
    from sde.workspaces import events, workvolumes
    from sde.workspaces.engine import docker_client

    s = settings()
    done = workvolumes.carry_over(docker_client(), s, old, username, project)
    with write() as session:
        events.record_work_carried(session, actor(), username, project, old, done.volume)
    typer.echo(f"{old} carried over into {done.volume} ({username}/{project}); {old} is kept")
