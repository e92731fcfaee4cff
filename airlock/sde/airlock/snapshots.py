"""Content-addressed snapshots of files copied out of a workspace's work volume.

The airlock never takes bytes or paths from a client beyond the name the
researcher gives: it opens the file itself beneath the workspace's work
directory on the host, refusing anything that is not a plain, singly-linked,
visible file of an allowed type and size, and copies the bytes once, hashing
them as it goes, into `store/<sha256[:2]>/<sha256>` (read-only). What was
reviewed is then byte-for-byte what is released: `open_verified` re-hashes the
stored copy before it is used, and a change in the workspace after adding never
reaches the store. Every refusal is an `InvalidInput` naming the reason, raised
before anything is left in the store (docs/airlock-checks.md says why each).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import stat
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from sde.core.config import Settings
from sde.core.errors import Conflict, InvalidInput, NotFound
from sde.core.files import sha256_file
from sde.core.validators import parse_size

# What each allowed extension is served as; airlock.file_types picks among these.
MEDIA_TYPES = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "txt": "text/plain",
    "log": "text/plain",
    "md": "text/markdown",
    "json": "application/json",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "svg": "image/svg+xml",
    "html": "text/html",
}

# Archives hide files from checkers; each is refused by its magic bytes, whatever its name.
ARCHIVE_MAGIC: list[tuple[int, bytes, str]] = [
    (0, b"PK\x03\x04", "zip"),
    (0, b"PK\x05\x06", "zip"),
    (0, b"PK\x07\x08", "zip"),
    (0, b"\x1f\x8b", "gzip"),
    (0, b"BZh", "bzip2"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
    (0, b"Rar!\x1a\x07", "rar"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"),
    (0, b"\x04\x22\x4d\x18", "lz4"),
    (0, b"MSCF", "cab"),
    (0, b"!<arch>\n", "ar"),
    (0, b"\x1f\x9d", "compress"),
    (257, b"ustar", "tar"),
]
MAGIC_BYTES = 512  # enough for every signature above (tar's sits at 257)

CHUNK = 4 * 2**20  # one read, hash and write per 4 MiB: large enough that Python is not the cost
INCOMING = ".incoming."  # prefix of a copy in progress: .incoming.PID.RANDOM
MAX_NAME = 1024  # bytes of a whole relative path
MAX_COMPONENT = 255  # bytes of one component (the filesystem limit)

# openat2(2): resolve beneath a directory, refusing every symlink on the way.
_SYS_OPENAT2 = 437  # the same number on every architecture (the unified syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of the range, without waiting for it
_openat2_works: bool | None = None  # None until tried: seccomp or an old kernel say ENOSYS


@dataclass(frozen=True)
class Snapshot:
    """One stored file: the researcher's relative path and what was copied."""

    name: str  # the researcher's relative path, as checked by copy_in
    sha256: str  # hex digest of the stored bytes (also their name in the store)
    size: int  # bytes
    media_type: str  # e.g. text/csv, image/png (from the allowed type of the name)


def stored_path(store: Path, sha256: str) -> Path:
    """Where the bytes with this digest live in the store."""
    return store / sha256[:2] / sha256


def _script(ch: str) -> str | None:
    """The script of a letter from its Unicode name (the stdlib has no script property).

    Han, kana and hangul count as one script, as Japanese and Korean mix them.
    """
    if not unicodedata.category(ch).startswith("L"):
        return None
    word = unicodedata.name(ch, "UNKNOWN").split()[0]
    return "CJK" if word in {"CJK", "HIRAGANA", "KATAKANA", "HANGUL"} else word


def check_name(relpath: str, settings: Settings) -> tuple[list[str], str]:
    """The components of a researcher's path and its type; InvalidInput naming the problem.

    Looked at before the filesystem is touched, so a bad name never reaches open().
    """
    if not relpath:
        raise InvalidInput("empty file name")
    if len(relpath.encode("utf-8", "surrogatepass")) > MAX_NAME:
        raise InvalidInput(f"file name longer than {MAX_NAME} bytes")
    for ch in relpath:
        category = unicodedata.category(ch)
        # Cc: control characters (newlines forge log lines); Cf: invisible ones (bidi
        # overrides make "txt.exe" read as "exe.txt"); Cs: undecodable bytes.
        if category in {"Cc", "Cf", "Cs", "Co", "Cn"}:
            raise InvalidInput(
                f"file name {relpath!r} has a control or invisible character U+{ord(ch):04X}"
            )
    if relpath.startswith("/"):
        raise InvalidInput(f"file name {relpath!r} is absolute: name a path in your workspace")
    if unicodedata.normalize("NFKC", relpath) != relpath:
        raise InvalidInput(
            f"file name {relpath!r} has look-alike characters (it changes under NFKC)"
        )
    parts = relpath.split("/")
    for part in parts:
        if part in {"", ".", ".."}:
            raise InvalidInput(f"file name {relpath!r} has an empty, '.' or '..' component")
        if part.startswith("."):
            raise InvalidInput(f"file name {relpath!r} names a hidden file or folder ({part})")
        if len(part.encode()) > MAX_COMPONENT:
            raise InvalidInput(f"file name {relpath!r} has a component over {MAX_COMPONENT} bytes")
        for word in part.split("."):
            scripts = {s for s in map(_script, word) if s}
            if len(scripts) > 1:
                raise InvalidInput(
                    f"file name {relpath!r} mixes scripts in {word!r} "
                    f"({', '.join(sorted(scripts))}): look-alike letters"
                )
    leaf = parts[-1]
    ext = leaf.rsplit(".", 1)[1].lower() if "." in leaf else ""
    allowed = [t.lower() for t in settings.airlock.file_types]
    if ext not in allowed:
        shown = f".{ext}" if ext else "no extension"
        raise InvalidInput(
            f"file {relpath!r} has type {shown}, which the airlock does not take "
            f"(airlock.file_types: {', '.join(allowed)})"
        )
    return parts, MEDIA_TYPES.get(ext, "application/octet-stream")


def archive_kind(head: bytes) -> str | None:
    """The archive format these first bytes start, or None."""
    for offset, magic, kind in ARCHIVE_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    return None


def _openat2(dir_fd: int, path: str, flags: int) -> int:
    """openat2 beneath `dir_fd` refusing symlinks; -1 when the kernel has no openat2."""
    global _openat2_works
    if _openat2_works is False:
        return -1
    how = _OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    fd = _libc.syscall(
        _SYS_OPENAT2, dir_fd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how)
    )
    if fd >= 0:
        _openat2_works = True
        return int(fd)
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EPERM) and _openat2_works is None:
        _openat2_works = False
        return -1
    raise OSError(err, os.strerror(err), path)


def _open_dir_walk(root_fd: int, parts: list[str]) -> int:
    """The per-component fallback: each folder opened O_NOFOLLOW relative to the last."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            flags = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
            nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _open_parent(root_fd: int, folders: list[str], use_openat2: bool) -> int:
    flags = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
    if use_openat2 and folders:
        fd = _openat2(root_fd, "/".join(folders), flags)
        if fd >= 0:
            return fd
    return _open_dir_walk(root_fd, folders)


def _refuse_kind(relpath: str, st: os.stat_result) -> None:
    mode = st.st_mode
    for test, what in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
    ):
        if test(mode):
            raise InvalidInput(f"{relpath!r} is {what}: only plain files can be added")
    if not stat.S_ISREG(mode):
        raise InvalidInput(f"{relpath!r} is not a plain file")
    if st.st_nlink > 1:
        raise InvalidInput(
            f"{relpath!r} is a hard link ({st.st_nlink} names for one file): copy it instead"
        )


def open_beneath(root: Path, relpath: str, parts: list[str], use_openat2: bool = True) -> int:
    """A read-only fd of the plain file `parts` names beneath `root`; InvalidInput otherwise.

    No symlink is followed in any component (openat2 RESOLVE_NO_SYMLINKS, or the
    O_NOFOLLOW walk); the leaf is looked at before it is opened, so a device or a
    FIFO is never opened, and checked again on the open fd, so a swap in between
    is caught.
    """
    try:
        root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise NotFound(f"workspace folder {root} cannot be opened: {exc.strerror}") from None
    try:
        try:
            dir_fd = _open_parent(root_fd, parts[:-1], use_openat2)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EXDEV):
                raise InvalidInput(
                    f"{relpath!r}: a folder on the way is a symbolic link or not a folder"
                ) from None
            if exc.errno == errno.ENOENT:
                raise NotFound(f"{relpath!r} does not exist in the workspace") from None
            raise InvalidInput(f"{relpath!r} cannot be opened: {exc.strerror}") from None
        try:
            try:
                before = os.stat(parts[-1], dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound(f"{relpath!r} does not exist in the workspace") from None
            _refuse_kind(relpath, before)
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
            try:
                fd = os.open(parts[-1], flags, dir_fd=dir_fd)
            except OSError as exc:
                raise InvalidInput(f"{relpath!r} cannot be opened: {exc.strerror}") from None
        finally:
            os.close(dir_fd)
    finally:
        os.close(root_fd)
    after = os.fstat(fd)
    if (after.st_dev, after.st_ino) != (before.st_dev, before.st_ino):
        os.close(fd)
        raise InvalidInput(f"{relpath!r} was replaced while it was being added: try again")
    try:
        _refuse_kind(relpath, after)
    except InvalidInput:
        os.close(fd)
        raise
    return fd


def _read_into(fd: int, view: memoryview) -> int:
    """Fill `view` as far as the file goes (a short read is not the end of a file)."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            break
        got += n
    return got


def copy_in(root: Path, relpath: str, store: Path, settings: Settings) -> Snapshot:
    """Copy `relpath` from beneath `root` into `store`; InvalidInput naming any refusal.

    Refused: `..` or absolute paths, symlinks (in any component), hard links,
    devices, FIFOs, sockets, dotfiles, control characters or look-alike Unicode
    in names, archives (by magic bytes), types outside `airlock.file_types`,
    files over `airlock.max_file_size`. Idempotent for the same content.
    """
    parts, media_type = check_name(relpath, settings)
    limit = parse_size(settings.airlock.max_file_size)
    fd = open_beneath(root, relpath, parts)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise InvalidInput(
                f"{relpath!r} is {size} bytes, over airlock.max_file_size "
                f"({settings.airlock.max_file_size})"
            )
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        n = _read_into(fd, view)
        kind = archive_kind(bytes(view[: min(n, MAGIC_BYTES)]))
        if kind:
            raise InvalidInput(
                f"{relpath!r} is a {kind} archive: add the files themselves, so that "
                "checkers see what leaves"
            )
        return _store(fd, view, n, relpath, media_type, store, limit, settings)
    finally:
        os.close(fd)


def sweep_incoming(store: Path) -> list[Path]:
    """Remove the half-copied files of processes that died copying (kill -9, a crash).

    A copy in progress is named for its process; one whose process is gone can
    never be finished, and is never named by its digest, so it is only litter.
    """
    removed = []
    for tmp in store.glob(f"{INCOMING}*"):
        try:
            pid = int(tmp.name[len(INCOMING) :].split(".", 1)[0])
            os.kill(pid, 0)
        except ValueError:
            continue  # not one of ours
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        except PermissionError:
            pass  # another user's live process
    return removed


def _store(
    fd: int,
    view: memoryview,
    n: int,
    relpath: str,
    media_type: str,
    store: Path,
    limit: int,
    settings: Settings,
) -> Snapshot:
    """Copy the open file (its first `n` bytes already in `view`) into the store, hashing."""
    store.mkdir(parents=True, exist_ok=True, mode=0o700)
    sweep_incoming(store)
    digest = hashlib.sha256()
    tmp = store / f"{INCOMING}{os.getpid()}.{os.urandom(6).hex()}"
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    total = 0
    try:
        try:
            while n:
                total += n
                if total > limit:  # the file grew while being copied
                    raise InvalidInput(
                        f"{relpath!r} grew over airlock.max_file_size "
                        f"({settings.airlock.max_file_size}) while being added"
                    )
                chunk = view[:n]
                digest.update(chunk)
                written = 0
                while written < n:
                    written += os.write(out, chunk[written:])
                # Start this chunk's writeback now, so the disk writes while the next
                # chunk is read and hashed and the fsync below has little left to wait for.
                _libc.sync_file_range(out, total - n, n, _SYNC_FILE_RANGE_WRITE)
                n = _read_into(fd, view)
            os.fsync(out)  # evidence: the stored bytes must survive a crash once named
        finally:
            os.close(out)
        sha = digest.hexdigest()
        final = stored_path(store, sha)
        final.parent.mkdir(exist_ok=True, mode=0o700)
        os.chmod(tmp, 0o444)
        # link(), not rename: a copy already stored under this digest is kept as it is.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return Snapshot(name=relpath, sha256=sha, size=total, media_type=media_type)


def open_verified(store: Path, sha256: str) -> Path:
    """The stored file for `sha256`, re-hashed first; NotFound if absent, Conflict if changed."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise InvalidInput(f"{sha256!r} is not a SHA-256 digest")
    path = stored_path(store, sha256)
    if not path.is_file() or path.is_symlink():
        raise NotFound(f"no stored file with SHA-256 {sha256}")
    found = sha256_file(path)
    if found != sha256:
        raise Conflict(f"stored file {sha256} has changed (its bytes now hash to {found})")
    return path
