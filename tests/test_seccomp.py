"""The job filter as libseccomp builds it (executors/seccomp.py): every arch it names carries every rule."""

from __future__ import annotations

import re
import tempfile

import pyseccomp as sc
import pytest

from executors.seccomp import DENIED, build_filter, seccomp_program


def pseudo_code() -> str:
    with tempfile.TemporaryFile("w+") as out:
        build_filter().export_pfc(out)
        out.seek(0)
        return out.read()


def arch_sections(text: str) -> dict[str, str]:
    parts = re.split(r"^# filter for arch (\S+) .*$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_every_denial_is_in_the_program_for_each_node_arch(arch: str) -> None:
    """On x86_64 and aarch64 nodes alike, each denied call that exists there returns EPERM."""
    section = arch_sections(pseudo_code())[arch]
    number = {"x86_64": sc.Arch.X86_64, "aarch64": sc.Arch.AARCH64}[arch]
    present = [name for name in DENIED if sc.resolve_syscall(number, name) >= 0]
    missing = [name for name in present if f'syscall "{name}"' not in section]
    assert present
    assert missing == []
    assert 'syscall "clone3"' in section
    assert "ERRNO(38)" in section


def test_a_foreign_arch_is_killed() -> None:
    """A call under an ABI the filter does not know (e.g. ppc64) is killed, not let through unfiltered."""
    assert "# invalid architecture action\naction KILL;\n" in pseudo_code()


def test_the_program_is_classic_bpf_within_the_kernel_limit() -> None:
    """The exported program is whole 8-byte instructions, well under the kernel's 4096."""
    program = seccomp_program()
    assert len(program) % 8 == 0
    assert 0 < len(program) // 8 < 4096
