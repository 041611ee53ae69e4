"""``--cluster auto`` and ``--cluster ray://HOST:PORT`` against a Ray head started with ``ray start --head``, as a
user would start one (marked slow: it starts a whole Ray cluster; the local-cluster tests run in the suite)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dualsr_deploy.data import read_scene
from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.infer import InferOptions, run_archive
from tests.infer.conftest import REPO, lr_scene


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, dict[str, str]]]:
    """A Ray head of 2 CPUs in the foreground (``--block``), stopped with it: (GCS address, client address, env)."""
    pytest.importorskip("ray", reason="needs Ray: pip install 'dualsr-deploy[cluster]'")
    ray_cli = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    gcs, client = free_port(), free_port()
    # ray start --head turns token authentication on (Ray ≥ 2.59); a Ray Client driver must be told to send it
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    command = [ray_cli, "start", "--head", "--block", f"--port={gcs}", f"--ray-client-server-port={client}"]
    command += ["--num-cpus=2", "--include-dashboard=false", "--node-ip-address=127.0.0.1"]
    log = tmp_path_factory.mktemp("ray-head") / "head.log"
    with log.open("w") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 90
    while "Ray runtime started" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"ray start --head did not start: {log.read_text()[-2000:]}")
        time.sleep(0.5)
    yield f"127.0.0.1:{gcs}", f"ray://127.0.0.1:{client}", env
    os.killpg(process.pid, 15)  # --block: stopping it stops what it started
    process.wait(timeout=60)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("head-archive")
    for index in range(4):
        write_scene(folder / "lr" / f"s{index}.h5", lr_scene(index, 20, 5 if index % 2 else 31))
    assert run_archive(folder / "lr", folder / "single", InferOptions(tile=16)).exit_code == 0
    return folder / "lr", folder / "single"


@pytest.mark.slow
@pytest.mark.parametrize("form", ["auto", "client"])
def test_infer_on_a_started_ray_cluster(
    form: str, head: tuple[str, str, dict[str, str]], scenes: tuple[Path, Path], tmp_path: Path
) -> None:
    gcs, client, env = head
    archive, single = scenes
    out = tmp_path / "out"
    cluster = "auto" if form == "auto" else client
    env = {**env, "RAY_ADDRESS": gcs} if form == "auto" else env  # how `auto` finds this cluster among others
    command = [sys.executable, "-m", "dualsr_deploy", "infer", str(archive), "-o", str(out), "--tile", "16"]
    done = subprocess.run(
        [*command, "--cluster", cluster], cwd=REPO, env={**env, "COLUMNS": "200"}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"Ray cluster {cluster}: 1 worker(s) on 1 node(s), 2 CPU(s) each" in done.stdout
    for index in range(4):
        name = f"s{index}.h5"
        assert np.array_equal(read_scene(out / name).cube, read_scene(single / name).cube)
