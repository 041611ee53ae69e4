"""CPUs and memory this process may use, under cgroup v1 and v2 limits (fake hierarchies laid out as the kernel
does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dualsr_deploy import resources


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_cgroup_v2_quota_and_memory_tightest_up_the_tree(tmp_path: Path) -> None:
    root, table = tmp_path / "cgroup", tmp_path / "self_cgroup"
    write(root / "cgroup.controllers", "cpu memory")
    write(root / "cpu.max", "max 100000")
    write(root / "slurm" / "cpu.max", "300000 100000")  # 3 CPUs for the job
    write(root / "slurm" / "step" / "cpu.max", "150000 100000")  # 1.5 for the step
    write(root / "slurm" / "step" / "memory.max", str(6 << 30))
    write(root / "slurm" / "memory.max", "max")
    write(table, "0::/slurm/step")
    assert resources.cgroup_cpu_limit(root, table) == 1.5
    assert resources.cgroup_memory_limit(root, table) == 6 << 30


def test_cgroup_v1_quota_and_memory(tmp_path: Path) -> None:
    root, table = tmp_path / "cgroup", tmp_path / "self_cgroup"
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_quota_us", "200000")
    write(root / "cpu,cpuacct" / "docker" / "abc" / "cpu.cfs_period_us", "100000")
    write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1")
    write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000")
    write(root / "memory" / "docker" / "abc" / "memory.limit_in_bytes", str(3 << 30))
    write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712")
    write(table, "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/")
    assert resources.cgroup_cpu_limit(root, table) == 2.0
    assert resources.cgroup_memory_limit(root, table) == 3 << 30


def test_no_limits_and_a_hidden_own_folder(tmp_path: Path) -> None:
    root, table = tmp_path / "cgroup", tmp_path / "self_cgroup"
    write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712")
    write(root / "cpu" / "cpu.cfs_quota_us", "-1")
    write(root / "cpu" / "cpu.cfs_period_us", "100000")
    write(table, "4:memory:/not/visible/here\n1:cpu:/not/visible")  # a namespaced mount: the root is what we see
    assert resources.cgroup_cpu_limit(root, table) is None
    assert resources.cgroup_memory_limit(root, table) is None
    assert resources.cgroup_cpu_limit(root, tmp_path / "missing") is None


def test_usable_cpus_and_memory_follow_the_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda _pid: {0, 1, 2, 3})
    monkeypatch.setattr(resources, "cgroup_cpu_limit", lambda: None)
    assert resources.usable_cpus() == 4
    monkeypatch.setattr(resources, "cgroup_cpu_limit", lambda: 2.5)
    assert resources.usable_cpus() == 2  # a fractional quota rounds down: never more threads than CPU time
    monkeypatch.setattr(resources, "cgroup_cpu_limit", lambda: 0.5)
    assert resources.usable_cpus() == 1
    monkeypatch.setattr(resources, "cgroup_memory_limit", lambda: 1 << 30)
    assert resources.usable_memory() == 1 << 30
