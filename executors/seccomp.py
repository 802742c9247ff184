"""The system-call filter every sandboxed job runs under, built here with libseccomp (``pyseccomp``).

The node never needs libseccomp: the filter is exported once as a classic BPF program, uploaded next
to the wrapper, and handed to bwrap (``--seccomp FD``), which loads it just before the job's command.
Each rule and the reason for it: docs/admin-guide.md, "Sandbox: system calls".
"""

from __future__ import annotations

import errno
import functools
import tempfile

import pyseccomp as sc

# One program for every node: the arch check at its head picks the right syscall numbers; any other
# architecture (or ABI) is killed rather than let through unfiltered.
ARCHES = (sc.Arch.X86_64, sc.Arch.X86, sc.Arch.X32, sc.Arch.AARCH64, sc.Arch.ARM)

# Kernel surfaces a job has no use for and that keep turning up in privilege escalations (Docker's
# default profile denies each of them to an unprivileged container).
DENIED = (
    # kernel keyrings are not namespaced: a key added by one job is readable by the next in its slot
    "add_key", "keyctl", "request_key",
    # io_uring, eBPF, perf, userfaultfd: large attack surfaces with a long CVE history
    "io_uring_setup", "io_uring_enter", "io_uring_register", "bpf", "perf_event_open", "userfaultfd",
    # the kernel itself: modules, kexec, reboot, swap, accounting, the kernel log, quotas
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "create_module",
    "get_kernel_syms", "query_module", "reboot", "swapon", "swapoff", "acct", "syslog", "quotactl",
    "quotactl_fd", "lookup_dcookie", "nfsservctl", "uselib", "ustat", "sysfs", "_sysctl", "vhangup",
    # mounts and namespaces: the sandbox's view of the filesystem is fixed once bwrap has built it
    "mount", "umount", "umount2", "pivot_root", "unshare", "setns", "move_mount", "fsopen", "fsconfig",
    "fsmount", "fspick", "open_tree", "mount_setattr",
    # file handles bypass the mount namespace (the "shocker" escape)
    "open_by_handle_at", "name_to_handle_at",
    # the clock is the host's, shared with every other job
    "settimeofday", "clock_settime", "clock_adjtime", "stime",
    # raw I/O ports and the x86 vm86 mode
    "ioperm", "iopl", "vm86", "vm86old",
    # watching whole filesystems (and the host's files through them)
    "fanotify_init",
)  # fmt: skip

# clone's flags (its first argument on every arch above) must ask for no new namespace.
CLONE_NEW_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)

# personality(): Docker's allowed values (PER_LINUX, PER_LINUX32, UNAME26 variants, and the query).
PERSONALITIES = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)

EPERM = sc.ERRNO(errno.EPERM)


def build_filter() -> sc.SyscallFilter:
    """Allow by default; deny the rules above with EPERM (clone3 with ENOSYS, so libc falls back to clone)."""
    rules = sc.SyscallFilter(sc.ALLOW)
    for arch in ARCHES:
        if not rules.exist_arch(arch):
            rules.add_arch(arch)
    for name in DENIED:
        rules.add_rule(EPERM, name)
    rules.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")  # its flags live in memory a filter cannot read
    for flag in CLONE_NEW_FLAGS:
        rules.add_rule(EPERM, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    # Anything but the allowed values is denied; the exact values win over the denial (libseccomp
    # checks equalities first). LOG, not ALLOW, only because ALLOW is the default action and
    # libseccomp refuses a rule that repeats it; LOG lets the call through.
    rules.add_rule(EPERM, "personality", sc.Arg(0, sc.NE, 0))
    for value in PERSONALITIES[1:]:
        rules.add_rule(sc.LOG, "personality", sc.Arg(0, sc.EQ, value))
    return rules


@functools.cache
def seccomp_program() -> bytes:
    """The filter as the BPF program bwrap's ``--seccomp`` reads (built once per server process)."""
    with tempfile.TemporaryFile() as out:
        build_filter().export_bpf(out)
        out.seek(0)
        return out.read()
