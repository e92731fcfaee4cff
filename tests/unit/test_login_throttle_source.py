"""Where a sign-in comes from (sde.hub.throttle.login_source), case by case."""

from __future__ import annotations

from sde.hub.throttle import Source, login_source

SUBNET = "10.213.0.0/24"
HUB = {"10.213.0.1"}


def test_login_source_is_the_proxys_last_forwarded_entry_when_the_peer_is_the_host():
    got = login_source("127.0.0.1", "6.6.6.6, 192.0.2.7", SUBNET, HUB)
    assert got == Source("192.0.2.7", workspace=False)
    # The bridge address is the hub's own: its proxy connects from there.
    assert login_source("10.213.0.1", "192.0.2.7", SUBNET, HUB) == Source("192.0.2.7", False)


def test_login_source_ignores_forwarded_headers_from_any_other_peer():
    assert login_source("192.0.2.9", "127.0.0.1", SUBNET, HUB) == Source("192.0.2.9", False)


def test_login_source_workspace_peer_or_forwarded_address_is_a_workspace():
    assert login_source("10.213.0.5", "192.0.2.7", SUBNET, HUB).workspace
    assert login_source("127.0.0.1", "10.213.0.5", SUBNET, HUB).workspace
    assert login_source("127.0.0.1", "::ffff:10.213.0.5", SUBNET, HUB).workspace


def test_login_source_ipv6_counts_as_its_64():
    got = login_source("127.0.0.1", "2001:db8:1:2:aaaa::1", SUBNET, HUB)
    assert got == Source("2001:db8:1:2::/64", workspace=False)
