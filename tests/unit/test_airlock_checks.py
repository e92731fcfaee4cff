"""The check-runner, its plug-in interface and the basic checks, on real files."""

from __future__ import annotations

import json
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from sde.airlock.checks import (
    CheckStatus,
    Finding,
    check,
    registered_checks,
    run_checks,
)
from sde.airlock.checks.basic import file_type, size, table_shape
from sde.core.config import Settings, load_settings
from tests.support.cli import run_sde

PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"SDE_HOME": str(tmp_path / "home")})


def write(tmp_path: Path, name: str, content: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def statuses(findings: list[Finding]) -> list[str]:
    return [str(f.status) for f in findings]


def test_registered_checks_are_the_entry_points():
    names = [getattr(c, "check_name", "") for c in registered_checks()]
    assert names == ["file_type", "malware_scan", "size", "table_shape"]


def test_run_checks_egress_skips_the_ingress_malware_scan(tmp_path, settings):
    path = write(tmp_path, "t.csv", "age_band,count\n20-29,15\n")
    for direction in (None, "egress"):
        report = run_checks(path, "t.csv", settings, direction=direction)
        assert "malware_scan" not in [f.name for f in report.findings]
    ingress = run_checks(path, "t.csv", settings, direction="ingress")
    assert "malware_scan" in [f.name for f in ingress.findings]


def test_run_checks_good_csv_passes_and_records_thresholds_and_versions(tmp_path, settings):
    path = write(tmp_path, "t.csv", "age_band,count\n20-29,15\n30-39,20\n")
    report = run_checks(path, "outputs/t.csv", settings)
    assert report.status == CheckStatus.PASS
    assert statuses(report.findings) == ["pass", "pass", "pass"]
    assert report.thresholds == {
        "airlock.file_types": list(settings.airlock.file_types),
        "airlock.max_file_size": "16M",
        "airlock.max_csv_rows": 5000,
    }
    assert {"sde", "python", "check.file_type", "check.size", "check.table_shape"} <= set(
        report.versions
    )
    json.dumps(report.as_dict())  # stored with the request and in the release record


def test_run_checks_worst_status_wins(tmp_path, settings):
    path = write(tmp_path, "t.txt", "hello\n")

    @check("always_review")
    def always_review(p, n, s):
        return [Finding("always_review", CheckStatus.REVIEW, "a person must look")]

    @check("always_fail")
    def always_fail(p, n, s):
        return [Finding("always_fail", CheckStatus.FAIL, "no", ["line 1"])]

    assert run_checks(path, "t.txt", settings, [file_type]).status == CheckStatus.PASS
    assert run_checks(path, "t.txt", settings, [file_type, always_review]).status == "review"
    report = run_checks(path, "t.txt", settings, [always_fail, always_review, file_type])
    assert report.status == CheckStatus.FAIL
    assert report.findings[0].locations == ["line 1"]


def test_run_checks_crashing_check_fails_not_passes(tmp_path, settings):
    path = write(tmp_path, "t.txt", "hello\n")

    @check("broken", reads=("airlock.max_csv_rows",))
    def broken(p, n, s):
        raise ZeroDivisionError("division by zero")

    report = run_checks(path, "t.txt", settings, [broken])
    assert report.status == CheckStatus.FAIL
    assert "ZeroDivisionError" in report.findings[0].reason
    assert report.thresholds == {"airlock.max_csv_rows": 5000}


def test_run_checks_no_checks_pass_empty(tmp_path, settings):
    path = write(tmp_path, "t.txt", "hello\n")
    report = run_checks(path, "t.txt", settings, [])
    assert (report.status, report.findings) == (CheckStatus.PASS, [])


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("fig.png", b"GIF89a" + bytes(20), "not a PNG image"),
        ("fig.jpg", PNG, "not a JPG image"),
        ("t.csv", PNG, "NUL byte"),
        ("t.txt", b"caf\xe9\n", "not UTF-8"),
        ("d.json", "{'single': quotes}", "not valid JSON"),
        ("f.svg", '<svg xmlns="http://www.w3.org/2000/svg"><script>x()</script></svg>', "script"),
        ("f.svg", '<svg><rect onload="x()"/></svg>', "script"),
        ("f.svg", "just text", "no <svg>"),
        ("model.pkl", b"\x80\x04", "not one the airlock takes"),
        ("README", "text", "no extension"),
    ],
)
def test_file_type_content_not_matching_name_fails(tmp_path, settings, name, content, reason):
    path = write(tmp_path, name.replace("/", "_"), content)
    [finding] = file_type(path, name, settings)
    assert finding.status == CheckStatus.FAIL
    assert reason in finding.reason


def test_file_type_zip_named_csv_fails(tmp_path, settings):
    path = tmp_path / "t.csv"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("inner.csv", "a\n1\n")
    [finding] = file_type(path, "t.csv", settings)
    assert (finding.status, finding.reason) == (CheckStatus.FAIL, "the content is a zip archive")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("fig.png", PNG),
        ("fig.jpeg", b"\xff\xd8\xff\xe0" + bytes(20)),
        ("d.json", '{"a": [1, 2]}'),
        ("f.svg", '<svg xmlns="http://www.w3.org/2000/svg"><rect width="1"/></svg>'),
        ("notes.md", "# Results\n\nCounts rounded to 5.\n"),
        ("run.log", "ok\n"),
    ],
)
def test_file_type_matching_content_passes(tmp_path, settings, name, content):
    path = write(tmp_path, name, content)
    assert statuses(file_type(path, name, settings)) == ["pass"]


def test_file_type_type_not_in_settings_fails(tmp_path, settings):
    path = write(tmp_path, "fig.png", PNG)
    no_images = replace(settings, airlock=replace(settings.airlock, file_types=["csv"]))
    assert statuses(file_type(path, "fig.png", no_images)) == ["fail"]


def test_size_over_limit_fails(tmp_path, settings):
    small = replace(settings, airlock=replace(settings.airlock, max_file_size="1K"))
    assert statuses(size(write(tmp_path, "a.txt", "x" * 1024), "a.txt", small)) == ["pass"]
    [finding] = size(write(tmp_path, "b.txt", "x" * 1025), "b.txt", small)
    assert finding.status == CheckStatus.FAIL and "1025 bytes" in finding.reason


def test_table_shape_inconsistent_columns_fails_with_lines(tmp_path, settings):
    path = write(tmp_path, "t.csv", "a,b,c\n1,2,3\n4,5\n6,7,8,9\n10,11,12\n")
    [finding] = table_shape(path, "t.csv", settings)
    assert finding.status == CheckStatus.FAIL
    assert "2 row(s)" in finding.reason
    assert finding.locations == ["line 3", "line 4"]


def test_table_shape_quoted_newlines_counted_as_lines(tmp_path, settings):
    path = write(tmp_path, "t.csv", 'a,b\n"multi\nline",2\n3\n')
    [finding] = table_shape(path, "t.csv", settings)
    assert finding.locations == ["line 4"]


def test_table_shape_parse_error_names_the_line(tmp_path, settings):
    path = write(tmp_path, "t.csv", 'a,b\n1,2\n"x"y,3\n')
    [finding] = table_shape(path, "t.csv", settings)
    assert finding.status == CheckStatus.FAIL
    assert "does not parse as CSV" in finding.reason
    assert finding.locations == ["line 3"]


def test_table_shape_rows_over_limit_fails(tmp_path, settings):
    few = replace(settings, airlock=replace(settings.airlock, max_csv_rows=3))
    ok = write(tmp_path, "ok.csv", "n\n1\n2\n3\n\n")
    assert statuses(table_shape(ok, "ok.csv", few)) == ["pass"]
    over = write(tmp_path, "over.csv", "n\n1\n2\n3\n4\n")
    [finding] = table_shape(over, "over.csv", few)
    assert finding.status == CheckStatus.FAIL
    assert "4 rows, more than airlock.max_csv_rows (3)" in finding.reason


def test_table_shape_tsv_uses_tabs(tmp_path, settings):
    path = write(tmp_path, "t.tsv", "a\tb\n1\t2\n3,4\n")
    [finding] = table_shape(path, "t.tsv", settings)
    assert finding.locations == ["line 3"]


def test_table_shape_empty_table_fails(tmp_path, settings):
    path = write(tmp_path, "t.csv", "")
    assert statuses(table_shape(path, "t.csv", settings)) == ["fail"]


def test_table_shape_not_a_table_has_no_findings(tmp_path, settings):
    path = write(tmp_path, "notes.txt", "a,b\n1\n")
    assert table_shape(path, "notes.txt", settings) == []


def test_cli_airlock_check_exit_codes_and_json(tmp_path, monkeypatch, capsys):
    from sde.cli import context

    monkeypatch.setenv("SDE_HOME", str(tmp_path / "home"))
    context.reset()
    good = write(tmp_path, "good.csv", "a,b\n1,2\n")
    bad = write(tmp_path, "bad.csv", "a,b\n1\n")
    try:
        result = run_sde(capsys, "airlock", "check", str(good))
        assert result.code == 0
        assert "pass" in result.out and "table_shape" in result.out
        result = run_sde(capsys, "airlock", "check", str(good), str(bad))
        assert result.code == 1
        assert "line 2" in result.out
        result = run_sde(capsys, "airlock", "check", "--json", str(bad))
        assert result.code == 1
        out = json.loads(result.out)
        assert out["status"] == "fail"
        assert out["files"][str(bad)]["findings"][2]["locations"] == ["line 2"]
        result = run_sde(capsys, "airlock", "check", str(tmp_path / "missing.csv"))
        assert result.code == 2 and "is not a file" in result.err
    finally:
        context.reset()
