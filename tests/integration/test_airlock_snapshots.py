"""Snapshots out of a real directory tree: every refusal made real, and nothing stored by one.

The tree stands for a workspace's work folder on the host (`work/`) beside a
fake project data folder (`data/`) that a symlink or hard link tries to reach.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import socket
import stat
import subprocess
import tarfile
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from sde.airlock import snapshots
from sde.airlock.snapshots import copy_in, open_beneath, open_verified, stored_path
from sde.core.config import Settings, load_settings
from sde.core.errors import Conflict, InvalidInput, NotFound
from tests.conftest import require_service

TABLE = b"age_band,count\n20-29,15\n30-39,20\n"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"SDE_HOME": str(tmp_path / "home")})


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(work, data, store): a work folder with one table, a secret beside it, an empty store."""
    work, data = tmp_path / "work", tmp_path / "data"
    (work / "outputs").mkdir(parents=True)
    data.mkdir()
    (work / "outputs" / "table.csv").write_bytes(TABLE)
    (data / "person.csv").write_bytes(b"nhs_number,dob\n9434765919,1970-01-01\n")
    return work, data, tmp_path / "store"


def assert_nothing_stored(store: Path) -> None:
    assert not store.exists() or list(store.rglob("*")) == []


def refused(work: Path, name: str, store: Path, settings: Settings, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        copy_in(work, name, store, settings)
    assert_nothing_stored(store)


def test_copy_in_plain_file_stored_read_only_under_its_hash(tree, settings):
    work, _, store = tree
    snap = copy_in(work, "outputs/table.csv", store, settings)
    assert snap.sha256 == hashlib.sha256(TABLE).hexdigest()
    assert (snap.name, snap.size, snap.media_type) == ("outputs/table.csv", len(TABLE), "text/csv")
    path = stored_path(store, snap.sha256)
    assert path.read_bytes() == TABLE
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert [p.name for p in store.rglob("*") if p.is_file()] == [snap.sha256]


def test_copy_in_same_content_twice_stores_one_copy(tree, settings):
    work, _, store = tree
    (work / "again.csv").write_bytes(TABLE)
    first = copy_in(work, "outputs/table.csv", store, settings)
    second = copy_in(work, "again.csv", store, settings)
    assert first.sha256 == second.sha256 and second.name == "again.csv"
    assert len([p for p in store.rglob("*") if p.is_file()]) == 1


def test_copy_in_pure_non_latin_name_accepted(tree, settings):
    work, _, store = tree
    (work / "отчёт.csv").write_bytes(TABLE)
    assert copy_in(work, "отчёт.csv", store, settings).name == "отчёт.csv"


def test_copy_in_symlink_into_data_refused(tree, settings):
    work, data, store = tree
    (work / "leak.csv").symlink_to(data / "person.csv")
    refused(work, "leak.csv", store, settings, "symbolic link")


def test_copy_in_symlink_in_a_middle_component_refused(tree, settings):
    work, data, store = tree
    (work / "shared").symlink_to(data)
    refused(work, "shared/person.csv", store, settings, "symbolic link")


def test_copy_in_symlink_to_a_folder_inside_the_work_folder_refused(tree, settings):
    work, _, store = tree
    (work / "alias").symlink_to(work / "outputs")
    refused(work, "alias/table.csv", store, settings, "symbolic link")


@pytest.mark.parametrize("use_openat2", [True, False], ids=["openat2", "nofollow-walk"])
def test_open_beneath_symlinks_refused_either_way(tree, use_openat2):
    work, data, _ = tree
    (work / "shared").symlink_to(data)
    (work / "leak.csv").symlink_to(data / "person.csv")
    for name in ("shared/person.csv", "leak.csv"):
        with pytest.raises(InvalidInput, match="symbolic link"):
            open_beneath(work, name, name.split("/"), use_openat2=use_openat2)
    fd = open_beneath(work, "outputs/table.csv", ["outputs", "table.csv"], use_openat2)
    try:
        assert os.read(fd, 100) == TABLE
    finally:
        os.close(fd)
    if use_openat2:  # this kernel has openat2: the fallback must not have stood in for it
        assert snapshots._openat2_works is True


def test_copy_in_hard_link_refused(tree, settings):
    work, data, store = tree
    os.link(data / "person.csv", work / "person.csv")
    refused(work, "person.csv", store, settings, "hard link")


def test_copy_in_fifo_refused_without_blocking(tree, settings):
    work, _, store = tree
    os.mkfifo(work / "pipe.csv")
    refused(work, "pipe.csv", store, settings, "FIFO")


def test_copy_in_socket_refused(tree, settings):
    work, _, store = tree
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(work / "s.csv"))
        refused(work, "s.csv", store, settings, "socket")
    finally:
        sock.close()


def test_copy_in_device_node_refused(tree, settings):
    require_service("root", os.geteuid() == 0, "making a device node needs root")
    work, _, store = tree
    os.mknod(work / "null.csv", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    refused(work, "null.csv", store, settings, "device")


def test_copy_in_folder_refused(tree, settings):
    work, _, store = tree
    (work / "dir.csv").mkdir()
    refused(work, "dir.csv", store, settings, "folder")


@pytest.mark.parametrize("name", [".secret.csv", ".hidden/table.csv", "outputs/.x.csv"])
def test_copy_in_dotfile_refused(tree, settings, name):
    work, _, store = tree
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_bytes(TABLE)
    refused(work, name, store, settings, "hidden")


@pytest.mark.parametrize(
    "name", ["../data/person.csv", "outputs/../../data/person.csv", "./outputs/table.csv"]
)
def test_copy_in_dot_dot_refused(tree, settings, name):
    work, _, store = tree
    refused(work, name, store, settings, r"'\.' or '\.\.'")


@pytest.mark.parametrize("name", ["/etc/passwd", "//etc/hosts.txt"])
def test_copy_in_absolute_path_refused(tree, settings, name):
    work, _, store = tree
    refused(work, name, store, settings, "absolute")


@pytest.mark.parametrize(
    "name",
    ["a\nb.csv", "tab\tle.csv", "esc\x1b[31m.csv", "rtl\u202ecsv.txt", "zero\u200bwidth.csv"],
    ids=["newline", "tab", "escape", "bidi-override", "zero-width"],
)
def test_copy_in_control_character_refused(tree, settings, name):
    work, _, store = tree
    (work / name).write_bytes(TABLE)
    refused(work, name, store, settings, "control or invisible character")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("\uff52esults.csv", "NFKC"),  # fullwidth r
        ("ﬁgure.csv", "NFKC"),  # the fi ligature
        ("r\u0435sults.csv", "mixes scripts"),  # Cyrillic ie among Latin letters
        ("p\u0430yroll/table.csv", "mixes scripts"),  # Cyrillic a in a folder name
    ],
)
def test_copy_in_look_alike_unicode_refused(tree, settings, name, reason):
    work, _, store = tree
    (work / name).parent.mkdir(parents=True, exist_ok=True)
    (work / name).write_bytes(TABLE)
    refused(work, name, store, settings, reason)


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("person.csv", "nhs_number\n9434765919\n")
    return buf.getvalue()


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("person.csv")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"1,2\n"))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("results.csv", _zip(), "zip"),
        ("notes.txt", gzip.compress(TABLE), "gzip"),
        ("run.log", _tar(), "tar"),
        ("data.json", b"7z\xbc\xaf\x27\x1c" + bytes(32), "7z"),
    ],
)
def test_copy_in_archive_disguised_refused(tree, settings, name, content, kind):
    work, _, store = tree
    (work / name).write_bytes(content)
    refused(work, name, store, settings, f"{kind} archive")


def test_copy_in_oversized_file_refused(tree, settings):
    work, _, store = tree
    small = replace(settings, airlock=replace(settings.airlock, max_file_size="1K"))
    (work / "big.csv").write_bytes(b"x\n" * 600)
    refused(work, "big.csv", store, small, "over airlock.max_file_size")
    (work / "fits.csv").write_bytes(b"x\n" * 512)
    assert copy_in(work, "fits.csv", store, small).size == 1024


@pytest.mark.parametrize("name", ["model.pkl", "data.parquet", "script.sh", "README", "x.html"])
def test_copy_in_unknown_type_refused(tree, settings, name):
    work, _, store = tree
    (work / name).write_bytes(TABLE)
    refused(work, name, store, settings, "does not take")


def test_copy_in_missing_file_not_found(tree, settings):
    work, _, store = tree
    with pytest.raises(NotFound):
        copy_in(work, "outputs/nope.csv", store, settings)
    assert_nothing_stored(store)


def test_copy_in_file_changed_after_adding_keeps_the_added_bytes(tree, settings):
    work, _, store = tree
    snap = copy_in(work, "outputs/table.csv", store, settings)
    (work / "outputs" / "table.csv").write_bytes(b"age_band,count\n20-29,3\n")
    path = open_verified(store, snap.sha256)
    assert path.read_bytes() == TABLE


def test_open_verified_stored_copy_changed_conflict(tree, settings):
    work, _, store = tree
    snap = copy_in(work, "outputs/table.csv", store, settings)
    path = stored_path(store, snap.sha256)
    path.chmod(0o644)
    path.write_bytes(TABLE.replace(b"15", b"14"))
    with pytest.raises(Conflict, match="has changed"):
        open_verified(store, snap.sha256)


def test_open_verified_absent_or_malformed_digest_refused(tree):
    _, _, store = tree
    with pytest.raises(NotFound):
        open_verified(store, "0" * 64)
    with pytest.raises(InvalidInput):
        open_verified(store, "../../etc/passwd")


def test_copy_in_growing_file_leaves_nothing(tree, settings, monkeypatch):
    """A file that grows past the limit while it is copied (the size check saw it small)."""
    work, _, store = tree
    small = replace(settings, airlock=replace(settings.airlock, max_file_size="1K"))
    (work / "grow.csv").write_bytes(b"x\n" * 100)
    real = snapshots._read_into
    calls = {"n": 0}

    def read_then_grow(fd, view):
        calls["n"] += 1
        if calls["n"] == 1:
            with open(work / "grow.csv", "ab") as fh:
                fh.write(b"y\n" * 2000)
        return real(fd, view)

    monkeypatch.setattr(snapshots, "_read_into", read_then_grow)
    monkeypatch.setattr(snapshots, "CHUNK", 256)
    refused(work, "grow.csv", store, small, "grew over")


def test_copy_in_sweeps_copies_left_by_a_dead_process(tree, settings):
    work, _, store = tree
    store.mkdir()
    child = subprocess.Popen(["true"])
    child.wait()  # a process id that is no longer running
    dead = store / f"{snapshots.INCOMING}{child.pid}.abc"
    alive = store / f"{snapshots.INCOMING}{os.getpid()}.def"
    dead.write_bytes(b"half a co")
    alive.write_bytes(b"a copy in progress")
    copy_in(work, "outputs/table.csv", store, settings)
    assert not dead.exists()
    assert alive.exists()
