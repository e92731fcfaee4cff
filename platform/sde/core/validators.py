"""Checks of setting values, declared with each setting in sde.core.config.

A check takes the setting's value and the whole Settings (a few settings are
bounded by others) and returns the problem as text, or None when the value is
fine. `load_settings` runs every check and raises `ConfigError("section.name:
problem")`, so `sde config show`, the CLI and the hub refuse the same values with
the same message before anything starts. The parsers here (`parse_size`,
`ipv4_subnet_of`) are what the use sites call to read a value already checked.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

Check = Callable[[Any, Any], str | None]

SIZE_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"\s*(\d+)\s*([KMGT]?)B?\s*", re.I)


def parse_size(raw: str) -> int:
    """Bytes of a size such as 10G, 512M or 1t; ValueError when it is not one."""
    found = _SIZE.fullmatch(raw)
    if not found:
        raise ValueError(f"not a size: {raw!r}")
    return int(found.group(1)) * SIZE_UNITS[found.group(2).upper()]


def ipv4_subnet_of(raw: str) -> ipaddress.IPv4Network:
    """The subnet `raw` names; ValueError (with the reason) when it names none."""
    return ipaddress.IPv4Network(raw)


def _other(settings: Any, dotted: str) -> Any:
    section, name = dotted.split(".")
    return getattr(getattr(settings, section), name)


def at_least(low: int, below: str | None = None) -> Check:
    """An integer of `low` or more and, with `below` ("section.name"), less than that setting."""

    def check(value: int, settings: Any) -> str | None:
        limit = _other(settings, below) if below else None
        if value >= low and (limit is None or value < limit):
            return None
        bound = f" and less than {below} ({limit})" if below else ""
        return f"must be {low} or more{bound}, got {value}"

    return check


def more_than(low: int) -> Check:
    def check(value: int, settings: Any) -> str | None:
        return None if value > low else f"must be more than {low}, got {value}"

    return check


def positive_number(what: str) -> Check:
    """A text holding a number above 0 (Docker's CPU limit is given as such text)."""

    def check(value: str, settings: Any) -> str | None:
        try:
            number = float(value)
        except ValueError:
            return f"expected a number of {what}, got {value!r}"
        return f"must be positive, got {value!r}" if number <= 0 else None

    return check


def absolute_path(value: str, settings: Any) -> str | None:
    # Docker resolves bind sources against its own working directory, not ours.
    return None if os.path.isabs(value) else f"must be an absolute path, got {value!r}"


def size(minimum: str) -> Check:
    """A size with an optional K, M, G or T (powers of 1024), at least `minimum`."""
    least = parse_size(minimum)

    def check(value: str, settings: Any) -> str | None:
        try:
            found = parse_size(value)
        except ValueError:
            return f"expected a size such as 10G or 512M, got {value!r}"
        return None if found >= least else f"must be at least {minimum}, got {value!r}"

    return check


def ipv4_subnet(min_addresses: int) -> Check:
    def check(value: str, settings: Any) -> str | None:
        try:
            net = ipv4_subnet_of(value)
        except ValueError as exc:
            return f"not an IPv4 subnet: {exc}"
        if net.num_addresses < min_addresses:
            return f"{value} is too small for workspaces"
        return None

    return check


def length(low: int, high: int) -> Check:
    def check(value: str, settings: Any) -> str | None:
        return None if low <= len(value) <= high else f"{value!r} must be {low}-{high} characters"

    return check


def web_origin(value: str, settings: Any) -> str | None:
    """Empty (the default) or scheme://host[:port], the host a name rather than an address."""
    if not value:
        return None
    parts = urlsplit(value)
    problem = None
    if parts.scheme not in ("http", "https"):
        problem = "the scheme must be http or https"
    elif not parts.hostname:
        problem = "it names no host"
    elif parts.path not in ("", "/") or parts.query or parts.fragment:
        problem = "it must be scheme://host[:port] with no path"
    else:
        try:
            ipaddress.ip_address(parts.hostname)
            # Each workspace is served on a host of its own under it (sde.hub.origins).
            problem = "workspaces need host names under it (e.g. sde.localhost), not an address"
        except ValueError:
            pass
    return f"{value!r}: {problem}" if problem else None
