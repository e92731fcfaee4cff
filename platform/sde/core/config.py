"""sde configuration: one TOML file plus `SDE_*` environment variables.

Every setting is declared once below with its default and help text; `sde config
show` prints the effective values and `sde config docs` the reference in
docs/configuration.md. Precedence: environment > file > default.

The file is `$SDE_CONFIG`, else `$SDE_HOME/sde.toml` when present. Keys are
`[section] name`; the environment name is `SDE_<SECTION>_<NAME>` in capitals,
e.g. `SDE_DATABASE_URL`. State lives under `SDE_HOME` (default
`~/.local/share/sde`).
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sde.core.errors import ConfigError
from sde.core.validators import (
    Check,
    absolute_path,
    at_least,
    ipv4_subnet,
    ipv4_subnet_of,
    length,
    more_than,
    positive_number,
    size,
    web_origin,
)


def setting(default: Any, help: str, check: Check | None = None) -> Any:
    """A setting's one declaration: default, help text and the check `load_settings` runs."""
    metadata = {"help": help, "check": check}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _not_the_bridge(value: str, settings: Settings) -> str | None:
    """The hub API never on the bridge address (only the API gate listens there) nor 0.0.0.0."""
    if not value or not settings.hub.docker:
        return None
    try:
        gateway = str(ipv4_subnet_of(settings.workspaces.subnet).network_address + 1)
    except ValueError:
        gateway = None  # workspaces.subnet's own check says what is wrong with it
    if value not in (gateway, "0.0.0.0"):
        return None
    return (
        f"{value} would put the hub API on the workspace bridge address, where only the "
        "API gate may listen; leave it empty (loopback)"
    )


SIGN_INS = ("embedded", "keycloak")


def _sign_in(value: str, settings: Settings) -> str | None:
    """A sign-in sde ships, with what it needs declared beside it."""
    if value not in SIGN_INS:
        return f"{value!r}: expected one of {', '.join(SIGN_INS)}"
    if value == "keycloak" and not settings.keycloak.url:
        return "keycloak needs keycloak.url (where the hub reaches Keycloak)"
    if value == "keycloak" and settings.hub.authenticator_class:
        return "keycloak and hub.authenticator_class both name a sign-in: keep one"
    return None


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = setting(
        "",
        "SQLAlchemy URL of the state database (registry, audit). Empty means "
        "SQLite at $SDE_HOME/sde.db in WAL mode; PostgreSQL: "
        "postgresql+psycopg://user@host/dbname.",
    )
    echo: bool = setting(False, "Log every SQL statement (debugging only).")


@dataclass(frozen=True)
class AuditSettings:
    checkpoint_key: str = setting(
        "",
        "Path of the Ed25519 private key that signs audit checkpoints. Keep it "
        "outside the database (and in production outside the host). Empty means "
        "$SDE_HOME/keys/audit-checkpoint.key, created on first use.",
    )
    witness: str = setting(
        "",
        "Append-only file that receives a copy of every signed checkpoint, so that "
        "deleting checkpoints from the database is detectable. Empty means "
        "$SDE_HOME/audit/checkpoints.jsonl. Point it at WORM storage in production.",
    )


@dataclass(frozen=True)
class DataSettings:
    pseudonym_key: str = setting(
        "",
        "Path of the secret (32+ random bytes) for keyed pseudonyms (HMAC-SHA256). "
        "Never mounted into workspaces. Empty means $SDE_HOME/keys/pseudonym.key, "
        "created on first use.",
    )
    datasets_dir: str = setting(
        "", "Where dataset versions are published. Empty means $SDE_HOME/datasets."
    )
    projects_dir: str = setting(
        "", "Where project data is provisioned. Empty means $SDE_HOME/projects."
    )
    k_anonymity_target: int = setting(
        5, "Smallest acceptable equivalence class over the quasi-identifiers."
    )
    quasi_identifiers: list[str] = setting(
        ["age_band", "sex", "postcode_district", "ethnicity"],
        "Columns of the person table that form the quasi-identifier set for k-anonymity.",
    )
    small_count_threshold: int = setting(
        10,
        "Counts of people below this may be disclosive: what researchers see of "
        "provisioning (the manifest.json in a workspace's /data) shows them as '<N'. The "
        "exact figures stay in the project.provision audit event. At least 1.",
        at_least(1),
    )


@dataclass(frozen=True)
class HubSettings:
    ip: str = setting(
        "127.0.0.1", "Address the hub's public proxy listens on (loopback by default)."
    )
    port: int = setting(8000, "Port of the hub's public proxy.")
    public_url: str = setting(
        "",
        "URL at which browsers reach the hub, scheme://host[:port]. Each workspace is served "
        "on a host of its own under it (w-KEY.HOST) and each hub service on NAME--service.HOST, "
        "so a site needs a wildcard DNS name and certificate for *.HOST. Empty means "
        "http://sde.localhost:PORT (browsers resolve *.localhost to loopback).",
        web_origin,
    )
    proxy_api_port: int = setting(
        0,
        "Loopback port of the public proxy's own API (the hub adds and removes routes "
        "through it). 0 means a free port chosen at each start.",
    )
    api_ip: str = setting(
        "",
        "Address the hub API binds to. Empty means loopback; workspaces reach it only "
        "through the API gate on the workspace bridge address, which forwards only what "
        "a workspace's server needs. Never the bridge address or 0.0.0.0.",
        _not_the_bridge,
    )
    api_port: int = setting(8081, "Port of the hub API.")
    image: str = setting("sde-workspace:latest", "Docker image of researcher workspaces.")
    name: str = setting(
        "sde",
        "Name of this installation on the Docker engine: prefix of workspace containers "
        "(NAME-ws-ID) and work volumes (NAME-work-ID); see [workspaces] names_key.",
    )
    mem_limit: str = setting("4G", "Memory limit of one workspace container.")
    cpu_limit: str = setting(
        "1.0", "CPU limit of one workspace container (cores).", positive_number("cores")
    )
    idle_timeout: int = setting(
        3600, "Seconds of inactivity after which a workspace is stopped by the idle culler."
    )
    activity_seconds: int = setting(
        60,
        "Seconds between the hub's readings of each workspace's last activity from its "
        "proxy (the person's browser traffic), which the idle culler goes by; a workspace's "
        "own reports of activity are refused. Less than idle_timeout.",
        at_least(1, below="hub.idle_timeout"),
    )
    max_failures: int = setting(
        5, "Failed sign-ins in a row (password or code) after which an account is locked."
    )
    lockout_seconds: int = setting(900, "How long a locked account stays locked.")
    session_hours: int = setting(
        12,
        "Hours a sign-in lasts before the person signs in again (the hub's cookie and "
        "the workspaces' OAuth tokens).",
        more_than(0),
    )
    totp_key: str = setting(
        "",
        "Path of the key that encrypts TOTP secrets at rest. Empty means "
        "$SDE_HOME/keys/hub-totp.key, created on first use.",
    )
    authenticator: str = setting(
        "embedded",
        "How people sign in to the hub: `embedded` (registry accounts with password + "
        "TOTP, sde.hub.authenticator) or `keycloak` (the [keycloak] realm through OIDC, "
        "sde.hub.keycloak_auth; needs keycloak.url). Either way the registry decides who "
        "may sign in and every access check still asks it.",
        _sign_in,
    )
    authenticator_class: str = setting(
        "",
        "Another JupyterHub authenticator class (dotted name), for a plug-in sde does not "
        "ship; it replaces the embedded sign-in. Empty means the one hub.authenticator "
        "names; it cannot be combined with hub.authenticator = keycloak.",
    )
    auth_state_key: str = setting(
        "",
        "Path of the key that encrypts the tokens the hub keeps of a Keycloak sign-in "
        "(JupyterHub's auth state; never handed to workspaces). Empty means "
        "$SDE_HOME/keys/hub-auth-state.key, created on first use.",
    )
    extra_config: str = setting(
        "",
        "Path of a further JupyterHub configuration file loaded after sde's own, e.g. "
        "the client settings of an OIDC authenticator. Empty means none.",
    )
    docker: bool = setting(
        True,
        "Run workspaces in Docker on the internal workspace network. False starts the "
        "hub for sign-in only (no workspace can start), e.g. where there is no Docker engine.",
    )


@dataclass(frozen=True)
class WorkspacesSettings:
    network: str = setting(
        "sde-workspaces",
        "Name of the internal Docker network of workspaces (no route out; containers on it "
        "cannot reach each other).",
    )
    bridge: str = setting(
        "sde-ws0",
        "Name of the network's bridge interface on the host (at most 15 characters); the "
        "host firewall rules match on it.",
        length(1, 15),
    )
    subnet: str = setting(
        "10.213.0.0/24",
        "IPv4 subnet of the workspace network; its first address is the bridge (gateway) "
        "address, where the hub API and the airlock API listen for workspaces.",
        ipv4_subnet(min_addresses=4),
    )
    airlock_port: int = setting(
        8082,
        "Port of the airlock API on the bridge address: with the hub API port "
        "([hub] api_port) the only host ports a workspace can reach.",
    )
    pids_limit: int = setting(512, "Most processes and threads one workspace container may run.")
    tmp_size: str = setting(
        "1g",
        "Size of each in-memory scratch filesystem of a workspace (/tmp and the home "
        "directory; the root filesystem is read-only, only the work volume persists).",
    )
    warm_pool: int = setting(
        1,
        "Workspace containers kept started and waiting, with nothing of anyone in them, so "
        "that a spawn takes one (about 0.3 s) instead of starting a container (about 2.5 s). "
        "Needs the hub to run as root on the Docker host; 0 turns the pool off.",
        at_least(0),
    )
    access_check_seconds: int = setting(
        30,
        "Seconds between checks that a running workspace's access still holds "
        "(accreditation, training, project dates and status, membership); a workspace "
        "whose access has lapsed is stopped at the next check and the lapse audited.",
        at_least(1),
    )
    pool_dir: str = setting(
        "/run/sde",
        "Host directory under which the warm pool mounts data and work volumes into its "
        "containers (NAME/slots, NAME/slot-staging) and each work volume's filesystem is "
        "mounted while a workspace uses it (NAME/work/ID). Runtime state, kept out of "
        "SDE_HOME so that a backup or clean-up of SDE_HOME never walks into a running "
        "workspace.",
        absolute_path,
    )
    work_quota: str = setting(
        "10G",
        "Size of each work volume (person x project): a fixed-size ext4 filesystem of its "
        "own, so that writes stop with ENOSPC there and nothing else fills up. A number "
        "with K, M, G or T; at least 16M. Applies to work volumes created from then on.",
        size(minimum="16M"),  # ext4's own metadata takes a few MB
    )
    names_key: str = setting(
        "",
        "Path of the secret that keys workspace names (containers, work volumes, OAuth "
        "clients: NAME-ws-ID, NAME-work-ID, ID an HMAC of person and project), so that a "
        "name says nothing about whose it is. Empty means "
        "$SDE_HOME/keys/workspace-names.key, created on first use; keep it: a new key "
        "gives every person x project a new, empty work volume.",
    )
    firewall: bool = setting(
        True,
        "Install the host firewall rules (iptables chains SDE-WS-BRIDGE) with the network. "
        "Only turn off where an equivalent firewall is managed elsewhere.",
    )


def _file_types(value: list[str], settings: Settings) -> str | None:
    """Extensions as the airlock compares them: lower case, no dot, letters and digits."""
    bad = [t for t in value if not (t.isascii() and t.isalnum() and t == t.lower())]
    if not value:
        return "must name at least one file type"
    return f"expected extensions such as csv or png, got {bad}" if bad else None


@dataclass(frozen=True)
class AirlockSettings:
    store_dir: str = setting(
        "",
        "Where the airlock keeps the snapshots of added files, named by their SHA-256 "
        "(read-only, never deleted: revocation keeps the evidence). Empty means "
        "$SDE_HOME/airlock/store.",
    )
    reviews_required: int = setting(
        2,
        "Independent output-checker reviews an egress request needs before it can be "
        "approved (checkers are blind to each other's votes until this many are in). "
        "At least 2.",
        at_least(2),
    )
    ingress_reviews_required: int = setting(
        1, "Reviews an ingress request (files coming in) needs. At least 1.", at_least(1)
    )
    project_members_may_review: bool = setting(
        False,
        "Whether an output checker who is a member of a request's project may review it "
        "(never its author).",
    )
    max_file_size: str = setting(
        "16M", "Largest file the airlock accepts (K, M, G suffixes).", size("1")
    )
    max_files: int = setting(200, "Most files (all groups) in one request.", at_least(1))
    max_csv_rows: int = setting(
        5000, "Most data rows in a CSV or TSV file (the table-shape check).", at_least(1)
    )
    file_types: list[str] = setting(
        ["csv", "tsv", "txt", "log", "md", "json", "png", "jpg", "jpeg", "svg"],
        "File extensions the airlock accepts (checked with the bytes: archives are "
        "refused whatever their name).",
        _file_types,
    )
    ingress_file_types: list[str] = setting(
        ["csv", "tsv", "txt", "log", "md", "json", "png", "jpg", "jpeg", "svg", "py", "r", "sql"],
        "File extensions an ingress request accepts (files coming in: code and code lists "
        "too), instead of file_types.",
        _file_types,
    )
    clamd_socket: str = setting(
        "/run/clamav/clamd.ctl",
        "Unix socket of the ClamAV daemon (Debian clamav-daemon) that scans every ingress "
        "file; a missing daemon, a scan error or a found signature blocks the file.",
    )


def _service_url(value: str, settings: Settings) -> str | None:
    """Empty or scheme://host[:port][/path]: unlike the hub's, an address is fine here."""
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{value!r}: expected http(s)://host[:port][/path]"
    return None


@dataclass(frozen=True)
class KeycloakSettings:
    url: str = setting(
        "",
        "Base URL at which the hub and the `sde` command reach Keycloak, "
        "scheme://host[:port][/path] (e.g. https://auth.tre.example.org). Empty means "
        "no Keycloak: the hub's embedded sign-in.",
        _service_url,
    )
    realm: str = setting(
        "sde",
        "The Keycloak realm sde builds and imports (sde.keycloak.realm). Its lifetimes "
        "follow the hub's: an SSO session lasts hub.session_hours, an access token "
        "workspaces.access_check_seconds (so a lapse reaches a session within one access "
        "check); an account locks after hub.max_failures failed sign-ins for "
        "hub.lockout_seconds; every user must enrol a TOTP authenticator.",
        length(1, 255),
    )
    hub_client_id: str = setting(
        "sde-hub",
        "Client id of the hub in the realm (a confidential OIDC client; redirect URI "
        "hub.public_url/hub/oauth_callback).",
        length(1, 255),
    )
    hub_client_secret: str = setting(
        "",
        "Path of the file holding the hub client's secret. Empty means "
        "$SDE_HOME/keys/keycloak-hub-client.secret, created on first use (the realm import "
        "sets it in Keycloak).",
    )
    airlock_client_id: str = setting(
        "sde-airlock",
        "Client id of the airlock service in the realm (a confidential OIDC client; "
        "redirect URI on the service's own host, airlock--service.HOST).",
        length(1, 255),
    )
    airlock_client_secret: str = setting(
        "",
        "Path of the file holding the airlock client's secret. Empty means "
        "$SDE_HOME/keys/keycloak-airlock-client.secret, created on first use.",
    )
    admin_realm: str = setting(
        "master", "Realm of the Keycloak administrator sde signs in as (realm import, sync)."
    )
    admin_username: str = setting(
        "admin", "Keycloak administrator sde signs in as (realm import, sync)."
    )
    admin_password: str = setting(
        "",
        "Path of the file holding that administrator's password (never the password "
        "itself). Empty means $SDE_HOME/keys/keycloak-admin.password; it must exist.",
    )


@dataclass(frozen=True)
class Settings:
    home: Path
    config_file: Path | None
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    data: DataSettings = field(default_factory=DataSettings)
    hub: HubSettings = field(default_factory=HubSettings)
    workspaces: WorkspacesSettings = field(default_factory=WorkspacesSettings)
    keycloak: KeycloakSettings = field(default_factory=KeycloakSettings)
    airlock: AirlockSettings = field(default_factory=AirlockSettings)

    @property
    def database_url(self) -> str:
        return self.database.url or f"sqlite:///{self.home / 'sde.db'}"

    @property
    def checkpoint_key_path(self) -> Path:
        return Path(self.audit.checkpoint_key or self.home / "keys" / "audit-checkpoint.key")

    @property
    def witness_path(self) -> Path:
        return Path(self.audit.witness or self.home / "audit" / "checkpoints.jsonl")

    @property
    def pseudonym_key_path(self) -> Path:
        return Path(self.data.pseudonym_key or self.home / "keys" / "pseudonym.key")

    @property
    def totp_key_path(self) -> Path:
        return Path(self.hub.totp_key or self.home / "keys" / "hub-totp.key")

    @property
    def names_key_path(self) -> Path:
        return Path(self.workspaces.names_key or self.home / "keys" / "workspace-names.key")

    @property
    def auth_state_key_path(self) -> Path:
        return Path(self.hub.auth_state_key or self.home / "keys" / "hub-auth-state.key")

    @property
    def keycloak_hub_secret_path(self) -> Path:
        return Path(
            self.keycloak.hub_client_secret or self.home / "keys" / "keycloak-hub-client.secret"
        )

    @property
    def keycloak_airlock_secret_path(self) -> Path:
        return Path(
            self.keycloak.airlock_client_secret
            or self.home / "keys" / "keycloak-airlock-client.secret"
        )

    @property
    def keycloak_admin_password_path(self) -> Path:
        return Path(self.keycloak.admin_password or self.home / "keys" / "keycloak-admin.password")

    @property
    def datasets_dir(self) -> Path:
        return Path(self.data.datasets_dir or self.home / "datasets")

    @property
    def projects_dir(self) -> Path:
        return Path(self.data.projects_dir or self.home / "projects")

    @property
    def airlock_store_dir(self) -> Path:
        return Path(self.airlock.store_dir or self.home / "airlock" / "store")


SECTIONS: dict[str, type] = {
    "database": DatabaseSettings,
    "audit": AuditSettings,
    "data": DataSettings,
    "hub": HubSettings,
    "workspaces": WorkspacesSettings,
    "keycloak": KeycloakSettings,
    "airlock": AirlockSettings,
}


def _coerce(raw: str, default: Any, name: str) -> Any:
    """Parse an environment string into the type of the setting's default."""
    if isinstance(default, bool):
        if raw.lower() in {"1", "true", "yes", "on"}:
            return True
        if raw.lower() in {"0", "false", "no", "off", ""}:
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if isinstance(default, list):
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


def _check_type(value: Any, default: Any, name: str) -> Any:
    expected = type(default)
    if isinstance(default, bool) or not isinstance(default, int):
        ok = isinstance(value, expected)
    else:
        ok = isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, list) and ok:
        ok = all(isinstance(v, str) for v in value)
    if not ok:
        raise ConfigError(f"{name}: expected {expected.__name__}, got {value!r}")
    return value


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read the configuration; raises ConfigError naming the bad key or file."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("SDE_HOME") or Path.home() / ".local" / "share" / "sde").expanduser()
    config_file: Path | None
    if env.get("SDE_CONFIG"):
        config_file = Path(env["SDE_CONFIG"]).expanduser()
        if not config_file.is_file():
            raise ConfigError(f"SDE_CONFIG names {config_file}, which is not a file")
    else:
        config_file = home / "sde.toml"
        if not config_file.is_file():
            config_file = None

    data: dict[str, Any] = {}
    if config_file is not None:
        try:
            data = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_file}: not valid TOML: {exc}") from None
    unknown = set(data) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{config_file}: unknown section(s): {', '.join(sorted(unknown))}")

    sections: dict[str, Any] = {}
    for section, cls in SECTIONS.items():
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{config_file}: [{section}] must be a table")
        names = {f.name for f in fields(cls)}
        extra = set(table) - names
        if extra:
            raise ConfigError(
                f"{config_file}: unknown setting(s) in [{section}]: {', '.join(sorted(extra))}"
            )
        values: dict[str, Any] = {}
        for f in fields(cls):
            default = getattr(cls(), f.name)
            key = f"{config_file}: {section}.{f.name}"
            if f.name in table:
                values[f.name] = _check_type(table[f.name], default, key)
            env_name = f"SDE_{section}_{f.name}".upper()
            if env_name in env:
                values[f.name] = _coerce(env[env_name], default, env_name)
        sections[section] = cls(**values)
    settings = Settings(home=home, config_file=config_file, **sections)
    check_settings(settings)
    return settings


def check_settings(settings: Settings) -> None:
    """Run every setting's declared check; the first problem, named section.name, is raised."""
    for section, cls in SECTIONS.items():
        for f in fields(cls):
            check = f.metadata["check"]
            if check is None:
                continue
            problem = check(getattr(getattr(settings, section), f.name), settings)
            if problem:
                raise ConfigError(f"{section}.{f.name}: {problem}")


def settings_reference() -> str:
    """Markdown reference of every setting, its environment variable and default."""
    lines = [
        "# Configuration reference",
        "",
        "Generated by `sde config docs`. Precedence: environment > file > default.",
        "The file is `$SDE_CONFIG`, else `$SDE_HOME/sde.toml`; `SDE_HOME` defaults to",
        "`~/.local/share/sde`.",
        "",
    ]
    for section, cls in SECTIONS.items():
        lines += [f"## [{section}]", "", "| setting | environment | default | meaning |"]
        lines.append("|---|---|---|---|")
        for f in fields(cls):
            default = getattr(cls(), f.name)
            shown = ", ".join(default) if isinstance(default, list) else default
            env_name = f"SDE_{section}_{f.name}".upper()
            help_text = f.metadata["help"]
            lines.append(f"| `{f.name}` | `{env_name}` | `{shown!s}` | {help_text} |")
        lines.append("")
    return "\n".join(lines)
