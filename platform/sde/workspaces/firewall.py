"""Host firewall for the workspace bridge: only the hub API and the airlock API.

A container on a Docker *internal* network has no route out, but the host's own
address on the bridge answers every port the host binds to 0.0.0.0 (PostgreSQL,
the proxy, anything). These rules, in chains of their own per bridge (so that
several sites or test runs on one host do not disturb each other) jumped to from INPUT,
let traffic from the bridge reach the bridge address on the allowed TCP ports
only, plus replies to connections the host opened (the hub talking to a
workspace server); everything else addressed to the host from the bridge is
dropped, DNS included. A second chain drops anything the bridge would forward
elsewhere (Docker's internal-network rules do too; this does not depend on them).

Applying is idempotent (the chains are flushed and refilled, the jumps added
once) and `remove` takes every trace away again.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass

from sde.core.errors import SdeError

PREFIX = "SDE-WS-"
FORWARD_PREFIX = "SDE-WSF-"


def input_chain(bridge: str) -> str:
    return PREFIX + bridge


def forward_chain(bridge: str) -> str:
    return FORWARD_PREFIX + bridge


class FirewallError(SdeError):
    """iptables is missing or refused a rule."""


@dataclass(frozen=True)
class Rules:
    bridge: str
    gateway: str
    allowed_ports: tuple[int, ...]

    def input_rules(self) -> list[list[str]]:
        rules = [["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"]]
        for port in self.allowed_ports:
            rules.append(["-p", "tcp", "-d", self.gateway, "--dport", str(port), "-j", "ACCEPT"])
        rules.append(["-j", "DROP"])
        return rules

    def forward_rules(self) -> list[list[str]]:
        return [["!", "-o", self.bridge, "-j", "DROP"]]

    def chains(self) -> list[tuple[str, str, list[list[str]]]]:
        """(parent, chain, rules) for each chain of this bridge."""
        return [
            ("INPUT", input_chain(self.bridge), self.input_rules()),
            ("FORWARD", forward_chain(self.bridge), self.forward_rules()),
        ]


def _iptables() -> str:
    found = shutil.which("iptables")
    if not found:
        raise FirewallError("iptables is not installed (Debian package iptables)")
    return found


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    # -w: wait for the xtables lock, which dockerd takes too.
    result = subprocess.run([_iptables(), "-w", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise FirewallError(f"iptables {' '.join(args)}: {result.stderr.strip()}")
    return result


def _chain_exists(chain: str) -> bool:
    return _run(["-S", chain], check=False).returncode == 0


def apply(rules: Rules) -> None:
    """Install (or refresh) the rules for one workspace bridge."""
    if len(rules.bridge) > 15:
        raise FirewallError(f"bridge name {rules.bridge!r} is longer than 15 characters")
    for parent, chain, body in rules.chains():
        if not _chain_exists(chain):
            _run(["-N", chain])
        _run(["-F", chain])
        for rule in body:
            _run(["-A", chain, *rule])
        jump = ["-i", rules.bridge, "-j", chain]
        if _run(["-C", parent, *jump], check=False).returncode != 0:
            # First in the parent chain, ahead of anything that would accept the traffic.
            _run(["-I", parent, "1", *jump])


def remove(bridge: str) -> None:
    """Remove the jumps and chains of `bridge`; a no-op when there are none."""
    for parent, chain in (("INPUT", input_chain(bridge)), ("FORWARD", forward_chain(bridge))):
        jump = ["-i", bridge, "-j", chain]
        while _run(["-C", parent, *jump], check=False).returncode == 0:
            _run(["-D", parent, *jump])
        if _chain_exists(chain):
            _run(["-F", chain])
            _run(["-X", chain])


def installed(bridge: str) -> bool:
    """Whether the INPUT jump for `bridge` is in place."""
    if not shutil.which("iptables"):
        return False
    jump = ["-C", "INPUT", "-i", bridge, "-j", input_chain(bridge)]
    return _run(jump, check=False).returncode == 0


def listing(bridge: str) -> str:
    """The current rules of the bridge's chains, as `iptables -S` prints them."""
    parts = []
    for chain in (input_chain(bridge), forward_chain(bridge)):
        result = _run(["-S", chain], check=False)
        if result.returncode == 0:
            parts.append(result.stdout.strip())
    return "\n".join(parts)
