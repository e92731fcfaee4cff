"""The `sde ingest` and `sde optout` commands as an operator runs them."""

from __future__ import annotations

import csv
import json

from tests.support.cli import run_sde


def _create_project(capsys, slug: str) -> None:
    assert (
        run_sde(
            capsys,
            "projects",
            "create",
            slug,
            "--title",
            "P",
            "--start",
            "2020-01-01",
            "--end",
            "2099-01-01",
        ).code
        == 0
    )


def test_ingest_cli_prints_summary_and_manifest(sde_home, synthetic_source, capsys):
    result = run_sde(
        capsys,
        "ingest",
        str(synthetic_source),
        "--dataset",
        "ehr",
        "--suppress-to-k",
        "2",
        "--reference-year",
        "2025",
    )
    assert result.code == 0, result.err
    assert "Published ehr@1" in result.out
    assert "k after" in result.out and "manifest sha256" in result.out
    shown = run_sde(capsys, "datasets", "show", "ehr", "--json")
    tables = {r["table"] for r in json.loads(shown.out)}
    assert "identifiers" not in tables and "person" in tables
    again = run_sde(
        capsys,
        "ingest",
        str(synthetic_source),
        "--dataset",
        "ehr",
        "--free-text",
        "drop",
        "--json",
    )
    assert again.code == 0
    manifest = json.loads(again.out)
    assert manifest["version"] == 2 and manifest["free_text"]["mode"] == "drop"


def test_ingest_cli_optout_load_show_exempt_revoke(sde_home, synthetic_source, capsys, tmp_path):
    with open(synthetic_source / "identifiers.csv", newline="") as f:
        numbers = [r["nhs_number"] for r in list(csv.DictReader(f))[:3]]
    listed = tmp_path / "optout.txt"
    listed.write_text("\n".join(numbers) + "\n")
    loaded = run_sde(capsys, "optout", "load", str(listed))
    assert loaded.code == 0, loaded.err
    assert "v1: 3 people" in loaded.out
    _create_project(capsys, "p1")
    assert run_sde(capsys, "optout", "exempt", "p1", "--reason", "s251 CAG 1").code == 0
    twice = run_sde(capsys, "optout", "exempt", "p1", "--reason", "again")
    assert twice.code == 2 and "already exempt" in twice.err
    shown = json.loads(run_sde(capsys, "optout", "show", "--json").out)
    assert {(r["kind"], r["name"]) for r in shown} == {("list", "v1"), ("exemption", "p1")}
    assert not any(n in json.dumps(shown) for n in numbers)
    assert run_sde(capsys, "optout", "revoke", "p1", "--reason", "lapsed").code == 0
    missing = run_sde(capsys, "optout", "revoke", "p1", "--reason", "lapsed")
    assert missing.code == 2 and "no opt-out exemption" in missing.err
    ingested = run_sde(capsys, "ingest", str(synthetic_source), "--dataset", "ehr", "--json")
    assert json.loads(ingested.out)["optout"] == {"list_version": 1, "removed_persons": 3}
    trail = run_sde(capsys, "audit", "log", "--action", "optout", "--json")
    assert trail.code == 0, trail.err
    actions = [json.loads(line)["action"] for line in trail.out.splitlines() if line.strip()]
    assert actions == ["optout.list.load", "optout.exempt", "optout.exempt.revoke"]


def test_ingest_cli_bad_optout_file_exits_2(sde_home, tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("9434765919\n1234567890\n")
    result = run_sde(capsys, "optout", "load", str(bad))
    assert result.code == 2
    assert "line 2: not a valid NHS number" in result.err
    assert "1234567890" not in result.err
    assert not (sde_home / "optout").exists() or not list((sde_home / "optout").glob("v*"))
