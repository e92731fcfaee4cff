"""`sde workspaces`: the workspace network and its firewall."""

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
