"""Shards: one deterministic part of an archive per job of a batch scheduler's array (``--shard I/N`` or ``auto``).

A scene belongs to shard ``1 + H(name) mod N``, ``H`` the first 8 bytes of the SHA-256 of its name in the archive:
the part a scene falls in depends on its name alone, not on the order of the listing nor on the other scenes, so two
jobs that list a bucket a minute apart (new granules arriving between) still never share a scene, and a scene added
later joins the shard it would always have joined. Shards are balanced as a hash is: ``n/N ± √(n/N)`` scenes each.

Each shard keeps its own manifest part (``OUT/manifest.shard-I-of-N.jsonl``) and its own lock beside the folder's
(``fcntl`` shared on the folder's lock, exclusive on its own), so the N jobs of one array write to one folder side by
side; :func:`merge_parts` (``dualsr manifest merge OUT``) joins the parts into ``manifest.jsonl`` once they end.

``auto`` reads the index and count the scheduler sets: Slurm array jobs (``SLURM_ARRAY_TASK_ID``, ``_MIN``,
``_STEP``, ``_COUNT``), AWS Batch array jobs (``AWS_BATCH_JOB_ARRAY_INDEX``, ``_SIZE``), Kubernetes Indexed Jobs
(``JOB_COMPLETION_INDEX``; the count from ``DUALSR_SHARD_COUNT``, as Kubernetes sets none, or ``auto/N``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from dualsr_deploy.errors import InputError

COUNT_VARIABLE = "DUALSR_SHARD_COUNT"  # the count where the scheduler sets none (Kubernetes Indexed Jobs)
PART_PATTERN = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.jsonl$")


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (1-based) of ``count``; ``origin`` says where the numbers came from (for messages)."""

    index: int
    count: int
    origin: str = ""

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise InputError(f"--shard {self.index}/{self.count}: give I/N with 1 ≤ I ≤ N{self._from()}")

    def _from(self) -> str:
        return f" (from {self.origin})" if self.origin else ""

    @property
    def text(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def tag(self) -> str:
        """``shard-002-of-100``: the index padded to the count's width, so that parts sort in order."""
        return f"shard-{self.index:0{len(str(self.count))}d}-of-{self.count}"

    @property
    def manifest_name(self) -> str:
        return f"manifest.{self.tag}.jsonl"

    @property
    def lock_name(self) -> str:
        return f".dualsr.{self.tag}.lock"

    def owns(self, name: str) -> bool:
        """Whether the scene called ``name`` in the archive belongs to this shard."""
        return shard_of(name, self.count) == self.index


def shard_of(name: str, count: int) -> int:
    """The shard (1-based) of ``count`` that the scene called ``name`` belongs to."""
    return 1 + int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % count


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """``I/N`` (1-based), ``auto`` or ``auto/N``; see the module docstring for what ``auto`` reads."""
    env = os.environ if environ is None else environ
    value = text.strip()
    match = re.fullmatch(r"(\d+)\s*/\s*(\d+)", value)
    if match:
        return Shard(int(match[1]), int(match[2]))
    match = re.fullmatch(r"auto(?:\s*/\s*(\d+))?", value)
    if not match:
        raise InputError(f"--shard {text!r}: give I/N (1-based, e.g. 2/8), auto, or auto/N")
    return _from_scheduler(env, int(match[1]) if match[1] else None)


def _integer(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise InputError(f"--shard auto: {name}={raw!r} is not a whole number")
    return int(raw)


def _from_scheduler(env: Mapping[str, str], count: int | None) -> Shard:
    slurm = _integer(env, "SLURM_ARRAY_TASK_ID")
    if slurm is not None:
        low = _integer(env, "SLURM_ARRAY_TASK_MIN") or 0
        step = _integer(env, "SLURM_ARRAY_TASK_STEP") or 1
        total = count or _integer(env, "SLURM_ARRAY_TASK_COUNT") or _integer(env, COUNT_VARIABLE)
        origin = f"SLURM_ARRAY_TASK_ID={slurm}, _MIN={low}, _STEP={step}, _COUNT={total}"
        if total is None:
            raise InputError(f"--shard auto: Slurm set no SLURM_ARRAY_TASK_COUNT; give --shard auto/N ({origin})")
        if slurm < low or (slurm - low) % step:
            raise InputError(
                f"--shard auto: task {slurm} is not on the array's range (min {low}, step {step}); submit with "
                f"--array=0-{total - 1} or pass --shard I/N ({origin})"
            )
        return Shard(1 + (slurm - low) // step, total, origin)
    batch = _integer(env, "AWS_BATCH_JOB_ARRAY_INDEX")
    if batch is not None:
        total = count or _integer(env, "AWS_BATCH_JOB_ARRAY_SIZE") or _integer(env, COUNT_VARIABLE)
        origin = f"AWS_BATCH_JOB_ARRAY_INDEX={batch}, AWS_BATCH_JOB_ARRAY_SIZE={total}"
        if total is None:
            raise InputError("--shard auto: AWS Batch set no AWS_BATCH_JOB_ARRAY_SIZE; give --shard auto/N")
        return Shard(batch + 1, total, origin)
    kubernetes = _integer(env, "JOB_COMPLETION_INDEX")
    if kubernetes is not None:
        total = count or _integer(env, COUNT_VARIABLE)
        if total is None:
            raise InputError(
                f"--shard auto: a Kubernetes Indexed Job sets JOB_COMPLETION_INDEX but not the count; set "
                f"{COUNT_VARIABLE} to the Job's completions in its env, or pass --shard auto/N"
            )
        where = f"--shard auto/{count}" if count else f"{COUNT_VARIABLE}={total}"
        return Shard(kubernetes + 1, total, f"JOB_COMPLETION_INDEX={kubernetes}, {where}")
    raise InputError(
        "--shard auto: no array index in the environment (SLURM_ARRAY_TASK_ID, AWS_BATCH_JOB_ARRAY_INDEX, "
        "JOB_COMPLETION_INDEX); pass --shard I/N"
    )


__all__ = ["COUNT_VARIABLE", "PART_PATTERN", "Shard", "parse_shard", "shard_of"]
