"""glibc's malloc, set once when the package is imported, so that a torch call's maps are not handed back to the
kernel and faulted in again, page by page, at every band step.

torch's CPU tensors come from the C library's ``malloc``. glibc serves a block above its mmap threshold with a fresh
mapping, and gives the free top of its heap back to the kernel once that exceeds its trim threshold; both start at
128 KiB and follow the largest mapped block freed, up to 32 MiB. A torch call runs one band plane at a time through
~48-channel maps (4.9 MiB each in a 160² window): between band steps, what was freed crossed the trim threshold and
was given back, and the next step faulted it in again. One 160² × 285 window of the shipped airborne ×2 weights took
2.8 M minor faults and 7.5 s of kernel time in a 19 s call (2-core AMD EPYC; ``docs/results/performance.md``).

So the mmap threshold is fixed at glibc's maximum (:data:`MMAP_THRESHOLD`: blocks up to it come from the heap, larger
ones, such as a tile's whole result, are still mapped) and the heap keeps up to :data:`TRIM_THRESHOLD` free at its
top. That memory stays with the process between steps instead of being given back and taken again. It is reused,
so a run's peak grows little: 1-4 % on the granule slice (2.22-2.30 against 2.30-2.34 GiB).

Left alone where the user chose: one of glibc's threshold variables (:data:`THRESHOLD_VARIABLES`, or
``glibc.malloc.*`` in ``GLIBC_TUNABLES``) set, another allocator in ``LD_PRELOAD``, or ``DUALSR_MALLOC`` set to
anything but ``auto`` (``system``, say); and where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Mapping

MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems: mallopt refuses more
TRIM_THRESHOLD = 256 << 20  # free heap top kept: a 352² window's band step holds ~190 MiB of maps in fp32
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
# glibc's own variables for what configure() sets, and for what it rests on
THRESHOLD_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_MAX_")
OPT_OUT = "DUALSR_MALLOC"  # any value but "auto" (e.g. "system"): leave glibc's defaults


def left_alone(environ: Mapping[str, str], libc: str | None) -> str | None:
    """Why the allocator is left as it is (``libc``: ``os.confstr("CS_GNU_LIBC_VERSION")``), or None to set it."""
    asked = environ.get(OPT_OUT, "").strip()
    if asked and asked.lower() != "auto":  # "system", or a word meant as "off": nothing is set on a guess
        return f"left alone ({OPT_OUT}={asked})"
    if not (libc or "").startswith("glibc"):
        return "left alone (the C library is not glibc)"
    chosen = sorted(name for name in THRESHOLD_VARIABLES if name in environ)
    if "glibc.malloc." in environ.get("GLIBC_TUNABLES", ""):
        chosen.append("GLIBC_TUNABLES")
    if chosen:
        return f"left alone (set in the environment: {', '.join(chosen)})"
    preload = environ.get("LD_PRELOAD", "")
    if any(name in preload for name in ("jemalloc", "tcmalloc", "mimalloc")):
        return "left alone (another allocator is preloaded)"
    return None


def configure() -> str:
    """Set glibc's thresholds unless :func:`left_alone` says not to; returns what was done."""
    try:
        libc_version: str | None = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        libc_version = None
    why = left_alone(os.environ, libc_version)
    if why is None:
        try:
            mallopt = ctypes.CDLL(None).mallopt
            done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        except (AttributeError, OSError):
            done = False
        why = (
            f"mmap threshold {MMAP_THRESHOLD >> 20} MiB, trim threshold {TRIM_THRESHOLD >> 20} MiB"
            if done
            else "left alone (mallopt refused)"
        )
    return why
