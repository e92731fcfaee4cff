"""`sde.keycloak.sync.diff`: the registry's accounts against Keycloak's, in memory."""

from __future__ import annotations

from sde.keycloak.sync import ROLE_GROUPS, Account, Realm, diff, split_name


def _account(name: str, enabled: bool = True, groups: set[str] | None = None) -> Account:
    return Account(
        name,
        name.title(),
        name.title(),
        f"{name}@example.org",
        enabled,
        frozenset(groups or set()),
        () if enabled else ("user is left",),
    )


def _realm(*accounts: Account) -> Realm:
    groups = {g: f"id{g}" for g in ("/projects", "/roles", "/projects/p1", *ROLE_GROUPS)}
    return Realm(
        {a.username: a for a in accounts}, {a.username: a.username for a in accounts}, groups
    )


def test_keycloak_sync_diff_in_step_is_empty():
    alice = _account("alice", groups={"/projects/p1"})
    assert diff({"alice": alice}, _realm(alice)) == []


def test_keycloak_sync_diff_disables_first_and_never_deletes():
    alice = _account("alice", groups={"/projects/p1"})
    lapsed = _account("alice", enabled=False, groups={"/projects/p1", "/projects/p2"})
    stranger = _account("mallory", groups={"/projects/p1"})
    changes = diff({"alice": lapsed}, _realm(alice, stranger))
    assert [(c.kind, c.name) for c in changes] == [
        ("user.disable", "alice"),
        ("user.disable", "mallory"),
        ("group.create", "/projects/p2"),
        ("group.leave", "mallory"),
        ("group.join", "alice"),
    ]
    assert changes[1].details == {"reasons": ["not in the registry"]}
    assert not any(c.kind.endswith("delete") for c in changes)


def test_keycloak_sync_diff_names_the_fields_that_changed():
    old = _account("bob")
    new = Account("bob", "Bob", "Jones", "bj@example.org", True, frozenset())
    (change,) = diff({"bob": new}, _realm(old))
    assert change.kind == "user.update"
    assert change.details["fields"] == {
        "lastName": ("Bob", "Jones"),
        "email": ("bob@example.org", "bj@example.org"),
    }


def test_keycloak_sync_split_name_keeps_both_parts_filled():
    assert split_name("Alice  Mary Smith ") == ("Alice Mary", "Smith")
    assert split_name("Madonna") == ("Madonna", "Madonna")
