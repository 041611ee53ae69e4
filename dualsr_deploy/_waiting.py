"""How OpenMP's idle threads wait, chosen once when the package is imported before torch (OpenMP reads it when it
starts), unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` themselves.

Measured on 2 cores (``benchmarks/threads.py``, one 64² × 285 tile of the shipped airborne ×2 weights, 2 threads;
``benchmarks/results/threads_policy_*_2cpu.json``):

| wait | fp32 quiet / beside 2 busy loops | bf16 quiet / beside 2 busy loops |
|---|---|---|
| libgomp's default (spin 300k) | 2.11 / 11.00 s | 1.04 / 2.77 s |
| ``OMP_WAIT_POLICY=PASSIVE`` | 2.45 / 5.82 s | 1.53 / 1.88 s |
| ``GOMP_SPINCOUNT=10000`` | 1.99 / 6.56 s | 0.93 / 3.17 s |
| this choice (spin when quiet, passive beside the loops) | 2.17 / 4.70 s | 0.94 / 2.06 s |

No one setting is best in both: a bounded spin is fastest on a quiet machine (bf16 1.65× faster than passive), and
passive waiting holds up best beside busy neighbours (bf16 1.69× faster than the bounded spin). So the package
looks at the machine when it is imported: other runnable tasks (``/proc/loadavg``'s instantaneous count, less this
process) at or above half the CPUs this process may use mean a busy machine → passive; fewer → the bounded spin.
Where the count cannot be read, passive, the safe choice. Beside two busy loops on two cores a process gets half the
machine at best, so 2× its quiet time is the floor; the choice held 2.17× (fp32) and 2.19× (bf16).
"""

from __future__ import annotations

import os
from pathlib import Path

SPIN = "10000"  # GOMP_SPINCOUNT on a quiet machine: ~a few microseconds of spinning before a thread sleeps
CHOICE_ENV = "DUALSR_WAIT_POLICY"  # what was chosen and why, for the run's records


def others_runnable(loadavg: Path = Path("/proc/loadavg")) -> int | None:
    """Runnable tasks on the machine besides this process (None where it cannot be read)."""
    try:
        running = loadavg.read_text().split()[3].split("/")[0]
        return max(0, int(running) - 1)
    except (OSError, IndexError, ValueError):
        return None


def wait_policy(cpus: int, others: int | None) -> tuple[dict[str, str], str]:
    """The environment to set, and the line that says why."""
    if others is None:
        return {"OMP_WAIT_POLICY": "PASSIVE"}, "passive (the machine's load could not be read)"
    if others * 2 >= cpus:
        return {"OMP_WAIT_POLICY": "PASSIVE"}, f"passive ({others} other runnable tasks on {cpus} CPUs)"
    return {"GOMP_SPINCOUNT": SPIN}, f"spin {SPIN} then sleep ({others} other runnable tasks on {cpus} CPUs)"


def choose() -> None:
    """Set the policy in this process's environment unless the user has."""
    if any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
        os.environ[CHOICE_ENV] = "as set in the environment"
        return
    from dualsr_deploy.resources import usable_cpus

    settings, why = wait_policy(usable_cpus(), others_runnable())
    os.environ.update(settings)
    os.environ[CHOICE_ENV] = why
