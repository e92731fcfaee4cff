"""Sign-in throttling that a stranger cannot turn against an account's owner.

A lock that follows the account alone is a weapon: anyone who can reach the
login page (a workspace, say) could lock both output checkers out with a few
wrong passwords. So failures are counted per (account, source): `max_failures`
failures in a row from one source lock that account *from that source* for
`lockout_seconds`; the owner signing in from elsewhere is not locked out. What
crosses sources only slows: once an account (or a source, over every account it
tries) has many recent failures, each further attempt waits a few seconds
before it is checked, right password or not, so the wait tells nothing.

The source is the client address as the hub sees it through its proxy:
configurable-http-proxy appends the address of whoever connected to it to
`X-Forwarded-For`, so its *last* entry cannot be forged through the proxy.
It is believed only when the hub's peer is the host itself (the proxy); a
peer anywhere else is the source. Tornado's own `remote_ip` is not used: it
prefers `X-Real-Ip`, which any client sets and the proxy passes on.
Workspace addresses (`workspaces.subnet`, bar the bridge's own) never sign in:
such an attempt is refused before any secret is checked and never counted.
An IPv6 source counts as its /64, which one client usually holds whole.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import DateTime, Integer, String, delete, func, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from sde.core.clock import as_utc, utc_now
from sde.core.db import Base

# Seconds an attempt waits at most, however many failures precede it.
MAX_DELAY = 5.0
# A source slows down only after this many times `max_failures` failures over all
# the accounts it tried (spraying one password over many accounts).
SOURCE_FACTOR = 2


class LoginThrottle(Base):
    """Failed sign-ins in a row of one account name from one source."""

    __tablename__ = "login_throttle"

    # The name as typed (cleaned): unknown names are counted like known ones, so
    # the lock does not tell which accounts exist.
    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


def account_key(username: str) -> str:
    """The attacker-typed name, short and printable (as in the audit log's target)."""
    return re.sub(r"[^A-Za-z0-9._@-]", "?", username)[:64] or "?"


# ---------------------------------------------------------------- the source


@dataclass(frozen=True)
class Source:
    """Where a sign-in comes from, as far as the hub can know it."""

    address: str
    workspace: bool


def _ip(raw: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(raw.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def workspace_subnet(subnet: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    # `workspaces.subnet`, checked by load_settings.
    return ipaddress.ip_network(subnet, strict=False)


def login_source(peer: str, forwarded_for: str | None, subnet: str, hub_ips: set[str]) -> Source:
    """The source of a request whose socket peer is `peer`.

    `forwarded_for` is the request's `X-Forwarded-For` (every header of that name,
    comma-joined); `hub_ips` are the host's own addresses the proxy connects from.
    """
    net = workspace_subnet(subnet)
    gateway = next(net.hosts(), None)

    def in_workspace(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return ip in net and ip != gateway

    peer_ip = _ip(peer)
    if peer_ip is None:
        # Not an IP socket (a Unix socket): nothing to key on, so one shared source.
        return Source(address=peer or "?", workspace=False)
    if in_workspace(peer_ip):
        return Source(address=str(peer_ip), workspace=True)
    ip = peer_ip
    if forwarded_for and (peer_ip.is_loopback or str(peer_ip) in hub_ips):
        last = _ip(forwarded_for.split(",")[-1])
        if last is not None:
            ip = last
    if isinstance(ip, ipaddress.IPv6Address):
        return Source(address=str(ipaddress.ip_network(f"{ip}/64", strict=False)), workspace=False)
    return Source(address=str(ip), workspace=in_workspace(ip))


# ---------------------------------------------------------------- the counts


@dataclass(frozen=True)
class Throttle:
    """What stands before checking an attempt's secrets."""

    locked_until: datetime | None
    delay: float


def throttle_state(
    session: Session,
    username: str,
    source: str,
    *,
    max_failures: int,
    lockout_seconds: int,
    at: datetime | None = None,
) -> Throttle:
    at = at or utc_now()
    key = account_key(username)
    row = session.get(LoginThrottle, (key, source))
    locked = as_utc(row.locked_until) if row is not None else None
    recent = LoginThrottle.last_failure_at >= at - timedelta(seconds=lockout_seconds)
    on_account = session.scalar(
        select(func.coalesce(func.sum(LoginThrottle.failures), 0)).where(
            LoginThrottle.username == key, recent
        )
    )
    from_source = session.scalar(
        select(func.coalesce(func.sum(LoginThrottle.failures), 0)).where(
            LoginThrottle.source == source, recent
        )
    )
    over = max(
        int(on_account or 0) - max_failures + 1,
        int(from_source or 0) - SOURCE_FACTOR * max_failures + 1,
        0,
    )
    return Throttle(
        locked_until=locked if locked is not None and locked > at else None,
        delay=min(MAX_DELAY, float(over)),
    )


def count_failure(
    session: Session, username: str, source: str, *, max_failures: int, lockout_seconds: int
) -> tuple[int, datetime | None]:
    """Count a failure of (account, source): (failures in a row, lock begun now or None).

    The caller records the audit event; attempts while locked are not counted, so
    they do not extend the lock.
    """
    now = utc_now()
    window = timedelta(seconds=lockout_seconds)
    # Rows that neither lock nor slow anything any more go, so that typed names
    # cannot grow the table without end.
    session.execute(
        delete(LoginThrottle).where(
            LoginThrottle.last_failure_at < now - window,
            or_(LoginThrottle.locked_until.is_(None), LoginThrottle.locked_until < now),
        )
    )
    key = account_key(username)
    row = session.get(LoginThrottle, (key, source), with_for_update=True)
    if row is None:
        row = LoginThrottle(username=key, source=source, failures=0, last_failure_at=now)
        session.add(row)
    locked = as_utc(row.locked_until)
    if locked is not None and locked > now:
        return row.failures, None
    if locked is not None:
        row.failures = 0  # the lock has run out: a fresh run of tries
    row.failures = (row.failures or 0) + 1
    row.last_failure_at, row.locked_until = now, None
    if row.failures >= max_failures:
        row.locked_until = now + window
        return row.failures, row.locked_until
    return row.failures, None


def clear(session: Session, username: str, source: str | None = None) -> None:
    """Forget the failures of `username` (from `source` only, when given)."""
    stmt = delete(LoginThrottle).where(LoginThrottle.username == account_key(username))
    if source is not None:
        stmt = stmt.where(LoginThrottle.source == source)
    session.execute(stmt)


def locked_sources(session: Session, username: str, at: datetime | None = None) -> list[str]:
    """The sources `username` is locked from now (for operators)."""
    at = at or utc_now()
    rows = session.scalars(
        select(LoginThrottle).where(LoginThrottle.username == account_key(username))
    )
    return sorted(r.source for r in rows if (as_utc(r.locked_until) or at) > at)
