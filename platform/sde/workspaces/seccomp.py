"""The seccomp profile of every workspace container: Docker's default, minus a few calls.

Docker's default profile allows ptrace on kernels >= 4.8, and engines before 25.0
allow io_uring as well. Kernel code in a workspace attached to its own Jupyter
server with ptrace (same uid, so no capability is needed), closed its listening
socket and served the workspace's port itself: a page of its choosing on the
workspace's origin. A profile is given to Docker whole (its default applies only
when none is), so this module reproduces Docker's default here, as data, and takes
the calls in `REMOVED` out of it; `security_opt()` is the `--security-opt` value,
the profile inline (the API takes the JSON, not a path).

Reproduced from moby/profiles `seccomp/default.json` v0.2.3 (what moby's master
vendors), keeping its logic: an allowlist with EPERM for everything else; `socket`
for every address family but AF_ALG (38) and AF_VSOCK (40); `clone` only without
namespace flags and `clone3` answering ENOSYS, so that glibc falls back to `clone`
(the flags of `clone3` are in memory, out of seccomp's reach); a few calls on the
architectures that have them. Docker's grants that depend on a capability are left
out: a workspace has none (`hardening.host_config` drops ALL), and without them
granting a capability later can never widen the set of syscalls too. Names the
engine's libseccomp does not know are skipped by runc, so one list serves old and
new engines.
"""

from __future__ import annotations

import json
from typing import Any

# Each removed call, and why a workspace does without it.
REMOVED: dict[str, str] = {
    # Attach to, read and write any process of the workspace's own uid: its Jupyter
    # server (take over the workspace's port and origin), its kernels, their secrets.
    "ptrace": "attaches to other processes of the same uid (the Jupyter server)",
    # The same reach into another process's memory without ptrace's attach.
    "process_vm_readv": "reads another process's memory",
    "process_vm_writev": "writes another process's memory",
    # A large, often-patched kernel interface that also bypasses the filter: calls
    # submitted through its rings are never seen by seccomp.
    "io_uring_setup": "io_uring: kernel attack surface, and its operations bypass seccomp",
    "io_uring_enter": "io_uring: kernel attack surface, and its operations bypass seccomp",
    "io_uring_register": "io_uring: kernel attack surface, and its operations bypass seccomp",
    # Docker allows it for a few values only; analysis code needs none of them, and
    # READ_IMPLIES_EXEC or a changed ABI only help an exploit.
    "personality": "changes the process's execution domain (READ_IMPLIES_EXEC, ABI)",
    # Lets code pause the kernel mid-copy on a page fault: the usual way to win the
    # race of a kernel exploit.
    "userfaultfd": "stalls kernel code on a page fault, a classic race-exploit aid",
}

# Docker's unconditional allowlist (the first rule of default.json), as it is there.
_DOCKER_ALLOWED = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown
chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64
fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv
futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid
geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp
getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
gettimeofday getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init
inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents
io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat
listen listmount listxattr listxattrat llistxattr _llseek lremovexattr lseek lsetxattr
lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret mincore
mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr
mq_notify mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend
mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock
munlockall munmap name_to_handle_at nanosleep newfstatat _newselect open openat openat2
pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll
ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv
recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat
rename renameat renameat2 restart_syscall riscv_hwprobe rmdir rseq rt_sigaction
rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
setuid32 setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd
signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64
statmount statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time
timer_create timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime
timer_settime64 timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime
timerfd_settime64 times tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat
uretprobe utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid
write writev
"""
DOCKER_ALLOWED: tuple[str, ...] = tuple(_DOCKER_ALLOWED.split())

ALLOW = "SCMP_ACT_ALLOW"
# CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET: no new namespaces.
CLONE_NAMESPACE_FLAGS = 0x7E020000
ENOSYS = 38


def _arg(index: int, value: int, op: str) -> dict[str, Any]:
    return {"index": index, "value": value, "op": op}


# Docker's conditional rules, in its order, without the capability grants.
DOCKER_RULES: list[dict[str, Any]] = [
    {"names": DOCKER_ALLOWED, "action": ALLOW},
    {"names": ["process_vm_readv", "process_vm_writev", "ptrace"], "action": ALLOW,
     "includes": {"minKernel": "4.8"}},
    {"names": ["socket"], "action": ALLOW, "args": [_arg(0, 38, "SCMP_CMP_LT")]},
    {"names": ["socket"], "action": ALLOW, "args": [_arg(0, 39, "SCMP_CMP_EQ")]},
    {"names": ["socket"], "action": ALLOW, "args": [_arg(0, 40, "SCMP_CMP_GT")]},
    *(
        {"names": ["personality"], "action": ALLOW, "args": [_arg(0, value, "SCMP_CMP_EQ")]}
        for value in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
    ),
    {"names": ["sync_file_range2", "swapcontext"], "action": ALLOW,
     "includes": {"arches": ["ppc64le"]}},
    {"names": ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint",
               "cacheflush", "set_tls"], "action": ALLOW, "includes": {"arches": ["arm", "arm64"]}},
    {"names": ["arch_prctl"], "action": ALLOW, "includes": {"arches": ["amd64", "x32"]}},
    {"names": ["modify_ldt"], "action": ALLOW, "includes": {"arches": ["amd64", "x32", "x86"]}},
    {"names": ["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"],
     "action": ALLOW, "includes": {"arches": ["s390", "s390x"]}},
    {"names": ["riscv_flush_icache"], "action": ALLOW, "includes": {"arches": ["riscv64"]}},
    # Docker excludes these three for CAP_SYS_ADMIN, which a workspace never has.
    {"names": ["clone"], "action": ALLOW,
     "args": [_arg(0, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ")],
     "excludes": {"arches": ["s390", "s390x"]}},
    {"names": ["clone"], "action": ALLOW,
     "args": [_arg(1, CLONE_NAMESPACE_FLAGS, "SCMP_CMP_MASKED_EQ")],
     "comment": "s390 parameter ordering for clone is different",
     "includes": {"arches": ["s390", "s390x"]}},
    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS},
]  # fmt: skip

ARCH_MAP: list[dict[str, Any]] = [
    {"architecture": arch, "subArchitectures": subs}
    for arch, subs in (
        ("SCMP_ARCH_X86_64", ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
        ("SCMP_ARCH_AARCH64", ["SCMP_ARCH_ARM"]),
        ("SCMP_ARCH_MIPS64", ["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"]),
        ("SCMP_ARCH_MIPS64N32", ["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"]),
        ("SCMP_ARCH_MIPSEL64", ["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"]),
        ("SCMP_ARCH_MIPSEL64N32", ["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"]),
        ("SCMP_ARCH_S390X", ["SCMP_ARCH_S390"]),
        ("SCMP_ARCH_RISCV64", None),
        ("SCMP_ARCH_LOONGARCH64", None),
    )
]


def profile() -> dict[str, Any]:
    """Docker's default rules with every call of `REMOVED` taken out of each."""
    rules = []
    for rule in DOCKER_RULES:
        names = [n for n in rule["names"] if n not in REMOVED]
        if names:
            rules.append({**rule, "names": names})
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,  # EPERM; engines before 23.0 ignore the field and use EPERM
        "archMap": ARCH_MAP,
        "syscalls": rules,
    }


def security_opt() -> str:
    """The profile as Docker's `security_opt` entry (inline JSON)."""
    return "seccomp=" + json.dumps(profile(), separators=(",", ":"))
