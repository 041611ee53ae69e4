"""How OpenMP's idle threads wait (issue #45): a bounded spin on a quiet machine, passive on a busy one, and what the
user set is kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dualsr_deploy._waiting import others_runnable, wait_policy


def test_busy_machines_wait_passively_and_quiet_ones_spin_briefly(tmp_path: Path) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.50 0.40 0.30 3/412 12345\n")  # this process and two others running
    assert others_runnable(loadavg) == 2
    assert wait_policy(2, 2)[0] == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert wait_policy(2, 1)[0] == {"OMP_WAIT_POLICY": "PASSIVE"}  # half the CPUs taken: busy
    assert wait_policy(2, 0)[0] == {"GOMP_SPINCOUNT": "10000"}
    assert wait_policy(16, 7)[0] == {"GOMP_SPINCOUNT": "10000"}
    loadavg.write_text("garbage")
    assert others_runnable(loadavg) is None
    settings, why = wait_policy(2, None)
    assert settings == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert "could not be read" in why


@pytest.mark.parametrize("mine", [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "5"}])
def test_a_policy_the_user_set_is_kept(mine: dict[str, str]) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")} | mine
    code = (
        "import os, dualsr_deploy; "
        "print(os.environ.get('OMP_WAIT_POLICY'), os.environ.get('GOMP_SPINCOUNT'), os.environ['DUALSR_WAIT_POLICY'])"
    )
    said = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    expected = f"{mine.get('OMP_WAIT_POLICY')} {mine.get('GOMP_SPINCOUNT')} as set in the environment"
    assert said.strip() == expected
