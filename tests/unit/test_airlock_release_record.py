"""Release records: built, signed with the checkpoint key, and any change detected."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sde.airlock import release_record
from sde.airlock.checks import run_checks
from sde.airlock.release_record import RecordNotVerified, build, canonical, sign, verify
from sde.audit.checkpoint import CheckpointSigner
from sde.core.config import Settings, load_settings
from sde.core.errors import InvalidInput
from sde.core.files import sha256_file
from tests.support.cli import run_sde

TABLE = b"age_band,count\n20-29,15\n30-39,20\n"


def settings_at(home: Path) -> Settings:
    return load_settings({"SDE_HOME": str(home)})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return settings_at(tmp_path / "home")


@pytest.fixture
def released(tmp_path: Path, settings: Settings) -> tuple[dict[str, Any], Path]:
    """(an unsigned record of one real checked file, the folder holding that file)."""
    folder = tmp_path / "download"
    folder.mkdir()
    path = folder / "table.csv"
    path.write_bytes(TABLE)
    sha = sha256_file(path)
    report = run_checks(path, "table.csv", settings).as_dict()
    record = build(
        {"id": "req-1", "project": "diabetes", "author": "alice", "direction": "egress"},
        [{"name": "table.csv", "size": len(TABLE), "sha256": sha, "group": "g"}],
        [
            {"reviewer": "carol", "decision": "approve", "at": "2026-12-01T10:00:00Z"},
            {"reviewer": "bob", "decision": "approve", "at": "2026-12-01T09:00:00Z"},
        ],
        {sha: report},
    )
    return record, folder


def leaves(value: Any, path: tuple = ()) -> list[tuple]:
    """The path of every scalar in a JSON value."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaves(v, (*path, i))]
    return [path]


def changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return value[:-1] + chr(ord(value[-1]) ^ 1) if value else "x"
    return "x"


def test_build_names_files_checks_thresholds_tools_and_reviews(released):
    record, _ = released
    assert record["format"] == "sde-release-record/1"
    assert record["files"] == [
        {
            "name": "table.csv",
            "size": len(TABLE),
            "sha256": record["files"][0]["sha256"],
            "group": "g",
        }
    ]
    assert record["thresholds"]["airlock.max_csv_rows"] == 5000
    assert {"sde", "python", "check.table_shape"} <= set(record["tools"])
    assert [r["reviewer"] for r in record["reviews"]] == ["bob", "carol"]  # in time order
    [report] = record["checks"].values()
    assert report["status"] == "pass"


def test_canonical_sorted_keys_no_whitespace():
    assert canonical({"b": 1, "a": [1, "é"]}) == '{"a":[1,"é"],"b":1}'.encode()


def test_signed_record_verifies(released, settings):
    record, _ = released
    signed = sign(record, settings)
    verify(signed, settings)
    # Through JSON, as a downloaded record is.
    verify(json.loads(json.dumps(signed)), settings)


def test_signed_record_any_field_changed_fails(released, settings):
    record, _ = released
    signed = sign(record, settings)
    paths = leaves(signed["record"])
    assert len(paths) > 20
    for path in paths:
        tampered = copy.deepcopy(signed)
        node = tampered["record"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = changed(node[path[-1]])
        with pytest.raises(RecordNotVerified):
            verify(tampered, settings)


@pytest.mark.parametrize(
    "change",
    [
        lambda s: s["record"]["files"].append(dict(s["record"]["files"][0], name="extra.csv")),
        lambda s: s["record"]["reviews"].pop(),
        lambda s: s["record"].update(note="added later"),
        lambda s: s["record"]["request"].pop("author"),
        lambda s: s["signature"].update(value=s["signature"]["value"][:-4] + "AAAA"),
        lambda s: s["signature"].update(value="not base64!"),
        lambda s: s["signature"].update(algorithm="none"),
        lambda s: s["signature"].update(key_id="0" * 16),
        lambda s: s.pop("signature"),
        lambda s: s["record"].update(format="sde-release-record/0"),
    ],
)
def test_signed_record_structure_changed_fails(released, settings, change):
    record, _ = released
    signed = sign(record, settings)
    change(signed)
    with pytest.raises(RecordNotVerified):
        verify(signed, settings)


def test_record_signed_with_another_key_fails(released, settings, tmp_path):
    record, _ = released
    ours = sign(record, settings)
    other = sign(record, settings_at(tmp_path / "other-home"))
    with pytest.raises(RecordNotVerified, match="not by this key"):
        verify(other, settings)
    # Claiming this installation's key id does not help: the signature is checked.
    other["signature"]["key_id"] = ours["signature"]["key_id"]
    with pytest.raises(RecordNotVerified, match="does not match"):
        verify(other, settings)


def test_verify_with_an_outside_public_key_file(released, settings, tmp_path):
    record, _ = released
    signed = sign(record, settings)
    pem = tmp_path / "installation.pub"
    pem.write_text(release_record.public_key_pem(settings))
    stranger = settings_at(tmp_path / "stranger-home")  # has no key of its own
    verify(signed, stranger, public_key=pem)
    sign(record, stranger)
    wrong = tmp_path / "wrong.pub"
    wrong.write_text(release_record.public_key_pem(stranger))
    with pytest.raises(RecordNotVerified):
        verify(signed, settings, public_key=wrong)


def test_public_key_derived_from_the_checkpoint_key_without_pub_file(released, settings):
    record, _ = released
    signed = sign(record, settings)
    signer = CheckpointSigner(settings.checkpoint_key_path)
    signer.public_path.unlink()
    verify(signed, settings)


def test_release_signature_is_not_a_checkpoint_signature(released, settings):
    """The same key signs checkpoints: a release signature must not verify as anything else."""
    record, _ = released
    signed = sign(record, settings)
    key = CheckpointSigner(settings.checkpoint_key_path).private_key()
    assert signed["signature"]["value"] != key.sign(canonical(record))


@pytest.mark.parametrize(
    ("files", "reviews", "reason"),
    [
        ([], [], "at least one"),
        ([{"name": "a.csv", "size": 1}], [], "lacks sha256"),
        ([{"name": "a.csv", "size": 1, "sha256": "f" * 64}], [], "no check report"),
        (
            [{"name": "a.csv", "size": 1, "sha256": "a" * 64}] * 2,
            [],
            "named twice",
        ),
        (
            [{"name": "a.csv", "size": 1, "sha256": "a" * 64}],
            [{"reviewer": "bob", "decision": "approve"}],
            "lacks at",
        ),
        (
            [{"name": "a.csv", "size": float("nan"), "sha256": "a" * 64}],
            [],
            "plain JSON",
        ),
    ],
)
def test_build_incomplete_input_refused(files, reviews, reason):
    with pytest.raises(InvalidInput, match=reason):
        build({"id": "r"}, files, reviews, {"a" * 64: {"status": "pass"}})


def test_cli_verify_release_record_and_files(released, settings, tmp_path, monkeypatch, capsys):
    from sde.cli import context

    record, folder = released
    path = tmp_path / "release.json"
    path.write_text(json.dumps(sign(record, settings)))
    monkeypatch.setenv("SDE_HOME", str(settings.home))
    context.reset()
    try:
        result = run_sde(capsys, "airlock", "verify-release", str(path), "--files", str(folder))
        assert result.code == 0 and "verified" in result.out
        pem = tmp_path / "k.pub"
        pem.write_text(run_sde(capsys, "airlock", "public-key").out)
        result = run_sde(capsys, "airlock", "verify-release", str(path), "--public-key", str(pem))
        assert result.code == 0
        (folder / "table.csv").write_bytes(TABLE.replace(b"15", b"16"))
        result = run_sde(capsys, "airlock", "verify-release", str(path), "--files", str(folder))
        assert result.code == 1 and "table.csv: differs" in result.err
        signed = json.loads(path.read_text())
        signed["record"]["files"][0]["size"] += 1
        path.write_text(json.dumps(signed))
        result = run_sde(capsys, "airlock", "verify-release", str(path))
        assert result.code == 1 and "does not match" in result.err
    finally:
        context.reset()


def test_signed_record_verifies_with_the_documented_recipe(released, settings, tmp_path):
    """docs/airlock-checks.md tells outside parties how to verify without sde: it must work."""
    import base64

    from cryptography.hazmat.primitives import serialization

    record, _ = released
    signed = json.loads(json.dumps(sign(record, settings)))
    key = serialization.load_pem_public_key(release_record.public_key_pem(settings).encode())
    message = (
        b"sde-release-record\n"
        + json.dumps(
            signed["record"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode()
    )
    key.verify(base64.b64decode(signed["signature"]["value"]), message)
