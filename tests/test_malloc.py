"""glibc's malloc set at import (issue #45): freed maps stay with the process instead of being faulted in again at
every band step, and what the user chose is kept."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dualsr_deploy._malloc import THRESHOLD_VARIABLES, left_alone

GLIBC = (os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else "") or ""

# What a band step does to the heap: several maps of a few MiB allocated, written, freed, then again. Prints the minor
# page faults of the rounds after the first (the first maps the memory in either way).
CHURN = """
import ctypes, os, resource, sys
if sys.argv[1] == "package":
    import dualsr_deploy
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size, maps = 8 << 20, 6
def step():
    blocks = [libc.malloc(size) for _ in range(maps)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in reversed(blocks):
        libc.free(block)
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(env: dict[str, str], mode: str) -> int:
    run = subprocess.run([sys.executable, "-c", CHURN, mode], env=env, capture_output=True, text=True, check=True)
    return int(run.stdout.split()[-1])


def _clean_env(**extra: str) -> dict[str, str]:
    drop = {*THRESHOLD_VARIABLES, "GLIBC_TUNABLES", "LD_PRELOAD", "DUALSR_MALLOC"}
    return {k: v for k, v in os.environ.items() if k not in drop} | extra


@pytest.mark.skipif(not GLIBC.startswith("glibc"), reason="the setting is glibc's")
def test_importing_the_package_stops_the_heap_being_faulted_in_again_at_every_step() -> None:
    pages = 4 * 6 * (8 << 20) // os.sysconf("SC_PAGE_SIZE")  # every page of the later rounds
    # glibc's defaults: the freed top of the heap (48 MiB) exceeds the trim threshold the 8 MiB maps set (16 MiB), so
    # it is given back and faulted in again each round. This shows the test can see the difference.
    assert _faults(_clean_env(), "bare") > pages // 2
    assert _faults(_clean_env(DUALSR_MALLOC="system"), "package") > pages // 2
    assert _faults(_clean_env(), "package") < pages // 20


def test_a_choice_the_user_made_is_kept() -> None:
    glibc = "glibc 2.36"
    assert left_alone({}, glibc) is None
    assert left_alone({"MALLOC_ARENA_MAX": "2"}, glibc) is None  # not a threshold
    for name in THRESHOLD_VARIABLES:
        why = left_alone({name: "1000"}, glibc)
        assert why is not None
        assert name in why
    assert left_alone({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}, glibc) is not None
    assert left_alone({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX2"}, glibc) is None
    assert left_alone({"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"}, glibc) is not None
    assert left_alone({"DUALSR_MALLOC": "system"}, glibc) is not None
    assert left_alone({"DUALSR_MALLOC": "off"}, glibc) is not None  # not guessed to mean "set it"
    assert left_alone({"DUALSR_MALLOC": "auto"}, glibc) is None
    assert left_alone({}, "musl") is not None
    assert left_alone({}, None) is not None
