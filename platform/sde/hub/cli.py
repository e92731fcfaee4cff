"""`sde hub`: run the hub, manage sign-in credentials."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(
    name="hub", help="The researchers' hub: run it, manage sign-in.", no_args_is_help=True
)
credentials_app = typer.Typer(
    name="credentials",
    help="Sign-in credentials (password, authenticator enrolment, lockout).",
    no_args_is_help=True,
)
app.add_typer(credentials_app)


@app.command("start")
def start() -> None:
    """Run JupyterHub and its proxy in the foreground (Ctrl-C stops them and the workspaces)."""
    from sde.cli.context import settings
    from sde.hub.launch import exec_hub

    exec_hub(settings())


@credentials_app.command("set-password")
def set_password(
    username: str = typer.Argument(..., help="The person (registry username)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from standard input."
    ),
) -> None:
    """Give a person a password (a random one is printed unless --password-stdin)."""
    from sde.cli.context import actor, console, write
    from sde.hub import credentials

    password = _password(password_stdin)
    with write() as session:
        credentials.set_password(session, actor(), username, password)
    if not password_stdin:
        console.print(f"password for {username}: {password}")
    console.print(f"{username} enrols an authenticator app at the first sign-in")


@credentials_app.command("reset")
def reset(
    username: str = typer.Argument(..., help="The person whose sign-in is reset."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the new password from standard input."
    ),
) -> None:
    """Operator reset: new password, authenticator enrolment cleared, lockout lifted."""
    from sde.cli.context import actor, console, write
    from sde.hub import credentials

    password = _password(password_stdin)
    with write() as session:
        credentials.reset_credentials(session, actor(), username, password, reason)
    if not password_stdin:
        console.print(f"new password for {username}: {password}")
    console.print(f"{username} enrols an authenticator app again at the next sign-in")


@credentials_app.command("show")
def show(
    username: str = typer.Argument(..., help="The person."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Sign-in state of a person (never the secrets)."""
    from sde.cli.context import read
    from sde.cli.context import show as show_rows
    from sde.hub import credentials, throttle
    from sde.registry.service import get_person

    with read() as session:
        get_person(session, username)
        state = credentials.login_state(session, username)
        cred = credentials.credential_of(session, username)
        row = {
            "username": username,
            "has_password": state.has_password,
            "enrolled": state.enrolled,
            "locked_from": ", ".join(throttle.locked_sources(session, username)) or "-",
            "last_login_at": cred.last_login_at if cred else None,
        }
    show_rows([row], list(row), as_json, "sign-in")


@app.command("demo-code")
def demo_code(username: str = typer.Argument(..., help="A demo account.")) -> None:
    """Current authenticator code of a demo account (demo accounts only)."""
    from sde.cli.context import settings
    from sde.demo.accounts import current_code

    print(current_code(settings(), username))


def _password(from_stdin: bool) -> str:
    from sde.hub.credentials import generate_password

    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return generate_password()


def register(root: typer.Typer) -> None:
    root.add_typer(app)
