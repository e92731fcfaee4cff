"""Probes run inside a workspace: the syscalls its seccomp profile removes, its routes.

The same code runs in a container (`python3 -c`) and in a workspace's kernel, so
each takes its arguments as literals substituted in, and prints one JSON object.

`syscall_probe(target)`: `"child"` ptraces a child it forks (a process of its own
uid), `"parent"` its parent (in a kernel: the Jupyter server it would take over);
each call's errno, 0 where it succeeded (a successful attach is detached at once,
anything opened is closed).

`route_probe(api_url)`: the default routes (none expected), how many routes, and
the HTTP status the hub API answers with (the control: the on-link route serves).
"""

from __future__ import annotations

import json
from typing import Any

_PROBE = r"""
import ctypes, json, os, platform, signal, time

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.ptrace.restype = ctypes.c_long
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
libc.personality.restype = ctypes.c_int
libc.personality.argtypes = [ctypes.c_ulong]
libc.process_vm_readv.restype = ctypes.c_ssize_t
PTRACE_ATTACH, PTRACE_DETACH, WALL = 16, 17, 0x40000000
READ_IMPLIES_EXEC, QUERY = 0x0400000, 0xFFFFFFFF
NR = {"x86_64": {"io_uring_setup": 425, "userfaultfd": 323},
      "aarch64": {"io_uring_setup": 425, "userfaultfd": 282}}[platform.machine()]


def errno_of(ret):
    return 0 if ret >= 0 else ctypes.get_errno()


def attach(pid):
    ctypes.set_errno(0)
    if libc.ptrace(PTRACE_ATTACH, pid, None, None) != 0:
        return ctypes.get_errno()
    os.waitpid(pid, WALL)
    libc.ptrace(PTRACE_DETACH, pid, None, None)
    return 0


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def vm_readv():
    src, dst = ctypes.create_string_buffer(b"secret", 16), ctypes.create_string_buffer(16)
    local = Iovec(ctypes.cast(dst, ctypes.c_void_p), 16)
    remote = Iovec(ctypes.cast(src, ctypes.c_void_p), 16)
    ctypes.set_errno(0)
    ret = libc.process_vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return errno_of(ret)


def fd_call(nr, *args):
    ctypes.set_errno(0)
    ret = libc.syscall(nr, *args)
    if ret >= 0:
        os.close(ret)
    return errno_of(ret)


def personality(value):
    ctypes.set_errno(0)
    ret = libc.personality(value)
    if ret >= 0 and value != QUERY:
        libc.personality(ret)
    return errno_of(ret)


target = __TARGET__
child = 0
if target == "child":
    child = os.fork()
    if child == 0:
        time.sleep(60)
        os._exit(0)
    pid = child
else:
    pid = os.getppid()
uid_line = [l for l in open(f"/proc/{pid}/status") if l.startswith("Uid:")][0]
result = {
    "same_uid": int(uid_line.split()[1]) == os.getuid(),
    "ptrace_attach": attach(pid),
    "process_vm_readv": vm_readv(),
    "io_uring_setup": fd_call(NR["io_uring_setup"], 1, ctypes.create_string_buffer(120)),
    "personality_read_implies_exec": personality(READ_IMPLIES_EXEC),
    "personality_query": personality(QUERY),
    # UFFD_USER_MODE_ONLY | O_CLOEXEC: the one form unprivileged code may ask for.
    "userfaultfd": fd_call(NR["userfaultfd"], 1 | 0o2000000),
}
if child:
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
print(json.dumps(result))
"""

CALLS = (
    "ptrace_attach",
    "process_vm_readv",
    "io_uring_setup",
    "personality_read_implies_exec",
    "personality_query",
    "userfaultfd",
)


def syscall_probe(target: str) -> str:
    """The probe's Python source, aimed at `target` ("child" or "parent")."""
    if target not in ("child", "parent"):
        raise ValueError(f"target must be 'child' or 'parent', got {target!r}")
    return _PROBE.replace("__TARGET__", repr(target))


_ROUTES = r"""
import json, os, urllib.error, urllib.request
routes = [line.split() for line in open("/proc/net/route").read().splitlines()[1:]]
url = __API_URL__ or os.environ["JUPYTERHUB_API_URL"] + "/user"
token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
req = urllib.request.Request(url, headers={"Authorization": "token " + token} if token else {})
try:
    status = urllib.request.urlopen(req, timeout=10).status
except urllib.error.HTTPError as exc:
    status = exc.code
print(json.dumps({"default": [r for r in routes if r[1] == "00000000"],
                  "routes": len(routes), "hub": status}))
"""


def route_probe(api_url: str = "") -> str:
    """The route probe's source; without `api_url`, the kernel's own hub API (`/user`)."""
    return _ROUTES.replace("__API_URL__", repr(api_url))


def parse(output: str) -> dict[str, Any]:
    """A probe's JSON line (the last line of `output`)."""
    result: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return result
