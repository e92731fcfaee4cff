"""A private ClamAV daemon for the tests: its own socket and a signature file we write.

ClamAV cannot download signatures here, and the system's clamd (if any) is not
ours to use: `start(root)` writes a config and a one-signature database (an
extended signature, .ndb, matching the EICAR test string anywhere in a file)
under `root`, runs `clamd` in the foreground on a Unix socket there, and waits
until it answers PING.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

# The EICAR anti-virus test file: harmless, and what every scanner must flag.
EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
SIGNATURE = "Sde-Test-Eicar"


def find_clamd() -> str | None:
    return shutil.which("clamd") or (
        "/usr/sbin/clamd" if Path("/usr/sbin/clamd").is_file() else None
    )


@dataclass
class Clamd:
    socket: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def ping(path: str, timeout: float = 2.0) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(b"zPING\0")
            return sock.recv(16).startswith(b"PONG")
    except OSError:
        return False


def start(binary: str, root: Path, timeout: float = 120.0) -> Clamd:
    db = root / "db"
    db.mkdir(parents=True)
    (db / "sde-test.ndb").write_text(f"{SIGNATURE}:0:*:{EICAR.hex()}\n")
    sock, log = root / "clamd.sock", root / "clamd.log"
    conf = root / "clamd.conf"
    conf.write_text(
        f"LocalSocket {sock}\nDatabaseDirectory {db}\nForeground yes\n"
        f"LogFile {log}\nTemporaryDirectory {root}\n"
    )
    process = subprocess.Popen(
        [binary, f"--config-file={conf}"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
    found = Clamd(str(sock), process, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"clamd exited: {log.read_text() if log.exists() else ''}")
        if ping(str(sock)):
            return found
        time.sleep(0.2)
    found.stop()
    raise RuntimeError(f"clamd did not answer within {timeout} s")
