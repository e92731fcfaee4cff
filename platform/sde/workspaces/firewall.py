"""Host firewall for the workspace bridge: only the hub API gate and the airlock API.

A container on a Docker *internal* network has no route out, but the host's own
address on the bridge answers every port the host binds to 0.0.0.0 (PostgreSQL,
the proxy, anything). These rules, in chains of their own per bridge (so that
several sites or test runs on one host do not disturb each other):

- `SDE-WS-<bridge>` (INPUT, traffic entering from the bridge): the bridge address
  on the allowed TCP ports only, plus replies to connections the host opened (the
  hub talking to a workspace server); everything else dropped, DNS included.
- `SDE-WSA-<bridge>` (INPUT, traffic addressed to the bridge address): dropped
  unless it enters from the bridge or loopback. The host accepts packets for any
  of its addresses on any interface, so without it a container on another network
  (Docker's default bridge, say) reaches the gate on the bridge address.
- `SDE-WSF-<bridge>` (FORWARD, both directions): drops anything the bridge would
  forward elsewhere and anything forwarded into it from elsewhere (Docker's
  internal-network rules do too; this does not depend on them).

The jumps to these chains must come first in INPUT and FORWARD, above Docker's
own chains (DOCKER-USER, where a site rule could accept workspace traffic) and any
other rule; only other sde jumps may sit above them. Docker moves DOCKER-USER back
to the top whenever it creates a network, and a firewall reload drops everything:
`Guard` checks on a poll and repairs. `apply` writes the chains and moves the jumps
to the top in one `iptables-restore` transaction, so there is never a moment with
an empty chain or a missing jump; `remove` takes every trace away again.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from typing import Any

from sde.core.errors import SdeError

PREFIX = "SDE-WS-"
ADDRESS_PREFIX = "SDE-WSA-"
FORWARD_PREFIX = "SDE-WSF-"
PARENTS = ("INPUT", "FORWARD")


def input_chain(bridge: str) -> str:
    return PREFIX + bridge


def address_chain(bridge: str) -> str:
    return ADDRESS_PREFIX + bridge


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

    def address_rules(self) -> list[list[str]]:
        return [
            ["-i", "lo", "-j", "RETURN"],
            ["-i", self.bridge, "-j", "RETURN"],
            ["-j", "DROP"],
        ]

    def forward_rules(self) -> list[list[str]]:
        return [["!", "-o", self.bridge, "-j", "DROP"], ["!", "-i", self.bridge, "-j", "DROP"]]

    def chains(self) -> list[tuple[str, list[list[str]]]]:
        """(chain, rules) for each chain of this bridge."""
        return [
            (input_chain(self.bridge), self.input_rules()),
            (address_chain(self.bridge), self.address_rules()),
            (forward_chain(self.bridge), self.forward_rules()),
        ]

    def jumps(self) -> list[tuple[str, str]]:
        """(parent, jump) in the order they sit at the top of the parent, as `-S` prints them."""
        gw = f"{self.gateway}/32"
        return [
            ("INPUT", f"-i {self.bridge} -j {input_chain(self.bridge)}"),
            ("INPUT", f"-d {gw} -j {address_chain(self.bridge)}"),
            ("FORWARD", f"-i {self.bridge} -j {forward_chain(self.bridge)}"),
            ("FORWARD", f"-o {self.bridge} -j {forward_chain(self.bridge)}"),
        ]


def _tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        raise FirewallError(f"{name} is not installed (Debian package iptables)")
    return found


def _run(args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    # -w: wait for the xtables lock, which dockerd takes too.
    result = subprocess.run(
        [_tool("iptables"), "-w", *args], capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise FirewallError(f"iptables {' '.join(args)}: {result.stderr.strip()}")
    return result


def _chain_exists(chain: str) -> bool:
    return _run(["-S", chain], check=False).returncode == 0


def parent_rules(parent: str) -> list[str]:
    """The rules of a built-in chain without the `-A PARENT ` prefix, in order."""
    lines = _run(["-S", parent]).stdout.splitlines()
    prefix = f"-A {parent} "
    return [line[len(prefix) :] for line in lines if line.startswith(prefix)]


def _restore_script(rules: Rules) -> str:
    script = ["*filter"]
    # Declaring a chain with --noflush creates it, or flushes it when it exists.
    script += [f":{chain} - [0:0]" for chain, _ in rules.chains()]
    for chain, body in rules.chains():
        script += [f"-A {chain} " + " ".join(rule) for rule in body]
    for parent in PARENTS:
        present = parent_rules(parent)
        ours = [jump for p, jump in rules.jumps() if p == parent]
        for jump in ours:
            script += [f"-D {parent} {jump}"] * present.count(jump)
        script += [f"-I {parent} 1 {jump}" for jump in reversed(ours)]
    script.append("COMMIT")
    return "\n".join(script) + "\n"


def apply(rules: Rules) -> None:
    """Install (or refresh) the rules for one workspace bridge, its jumps first; atomic."""
    if len(rules.bridge) > 15:
        raise FirewallError(f"bridge name {rules.bridge!r} is longer than 15 characters")
    for _ in range(3):
        result = subprocess.run(
            [_tool("iptables-restore"), "-w", "--noflush"],
            input=_restore_script(rules),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0:
            return
        # A jump deleted by someone else between reading and restoring fails the
        # whole transaction (nothing changed): read again and retry.
    raise FirewallError(f"iptables-restore for {rules.bridge}: {result.stderr.strip()}")


def remove(bridge: str) -> None:
    """Remove the jumps and chains of `bridge`; a no-op when there are none."""
    chains = (input_chain(bridge), address_chain(bridge), forward_chain(bridge))
    for parent in PARENTS:
        for rule in parent_rules(parent):
            if rule.split()[-1] in chains:
                _run(["-D", parent, *rule.split()])
    for chain in chains:
        if _chain_exists(chain):
            _run(["-F", chain])
            _run(["-X", chain])


def installed(bridge: str) -> bool:
    """Whether the INPUT jump for `bridge` is in place."""
    if not shutil.which("iptables"):
        return False
    jump = ["-C", "INPUT", "-i", bridge, "-j", input_chain(bridge)]
    return _run(jump, check=False).returncode == 0


def _is_sde_jump(rule: str) -> bool:
    parts = rule.split()
    return len(parts) >= 2 and parts[-2] == "-j" and parts[-1].startswith(PREFIX[:-1])


def order(rules: Rules) -> dict[str, Any]:
    """Where the bridge's jumps sit in INPUT and FORWARD (1-based) and whether they are first.

    First means: nothing but sde jumps (of this or another bridge) above them.
    """
    found: dict[str, Any] = {}
    first = True
    for parent in PARENTS:
        present = parent_rules(parent)
        positions = []
        for p, jump in rules.jumps():
            if p != parent:
                continue
            at = [i for i, rule in enumerate(present) if rule == jump]
            positions += [i + 1 for i in at]
            if len(at) != 1 or not all(_is_sde_jump(r) for r in present[: at[0]]):
                first = False
        found[parent] = {"positions": sorted(positions), "of": len(present)}
    found["first"] = first
    return found


def order_problems(rules: Rules) -> list[str]:
    """What is wrong with the jumps of the bridge: missing, doubled, or not first."""
    problems = []
    for parent in PARENTS:
        present = parent_rules(parent)
        for p, jump in rules.jumps():
            if p != parent:
                continue
            at = [i for i, rule in enumerate(present) if rule == jump]
            if not at:
                problems.append(f"{parent}: jump `{jump}` missing")
                continue
            if len(at) > 1:
                problems.append(f"{parent}: jump `{jump}` present {len(at)} times")
            above = [r for r in present[: at[0]] if not _is_sde_jump(r)]
            if above:
                problems.append(f"{parent}: `{above[0]}` sits above sde's `{jump}`")
    return problems


def chain_listing(chain: str) -> str:
    result = _run(["-S", chain], check=False)
    return result.stdout.strip() if result.returncode == 0 else ""


def listing(bridge: str) -> str:
    """The current rules of the bridge's chains, as `iptables -S` prints them."""
    chains = (input_chain(bridge), address_chain(bridge), forward_chain(bridge))
    return "\n".join(part for part in map(chain_listing, chains) if part)


class Guard:
    """Keeps one bridge's rules in place and first; `repair` on a poll.

    The chains' expected contents are what iptables printed right after this
    guard's own `apply` (how iptables spells a rule varies between versions).
    """

    def __init__(self, rules: Rules) -> None:
        self.rules = rules
        self._expected: dict[str, str] = {}

    def problems(self) -> list[str]:
        found = order_problems(self.rules)
        for chain, _ in self.rules.chains():
            now = chain_listing(chain)
            if not now:
                found.append(f"chain {chain} missing")
            elif chain in self._expected and now != self._expected[chain]:
                found.append(f"chain {chain} changed")
        return found

    def repair(self) -> list[str]:
        """Put everything back when anything is off; the problems found (empty: all in order)."""
        found = self.problems()
        if found or not self._expected:
            apply(self.rules)
            self._expected = {chain: chain_listing(chain) for chain, _ in self.rules.chains()}
        return found
