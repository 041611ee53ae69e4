"""Shared by the infer tests: a mixed archive of small LR scenes (several formats, band counts 5, 31 and 48, one
corrupt file), an archive of eight with its reference outputs, and ``dualsr infer`` run as a separate process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dualsr_deploy.data import read_scene
from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.data.scene import Scene
from dualsr_deploy.data.synth import synthesize
from dualsr_deploy.infer import InferOptions, run_archive
from dualsr_deploy.ops.imresize import imresize

REPO = Path(__file__).resolve().parents[2]


def lr_scene(seed: int, size: int, bands: int, scale: int = 4) -> Scene:
    import torch

    hr = synthesize(seed, size=size * scale, bands=bands)
    lr = imresize(torch.from_numpy(hr.cube).double(), 1 / scale).clamp(0, 1).float().numpy()
    return Scene(hr.name, lr, hr.meta)


@pytest.fixture(scope="module")
def mixed_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("archive")
    write_scene(folder / "a.h5", lr_scene(0, 24, 31))
    write_scene(folder / "b.npy", lr_scene(1, 24, 31))
    write_scene(folder / "sub" / "c.mat", lr_scene(2, 20, 5))
    write_scene(folder / "d.tif", lr_scene(3, 16, 48))
    write_scene(folder / "e.hdr", lr_scene(4, 16, 31))
    (folder / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # an HDF5 signature, then nothing
    return folder


def infer_process(archive: Path, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dualsr_deploy", "infer", str(archive), "-o", str(out), "--tile", "16", *extra]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_for_ok(out: Path, process: subprocess.Popen[bytes], count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        path = out / "manifest.jsonl"
        if path.is_file() and path.read_text().count('"status": "ok"') >= count:
            return
        time.sleep(0.05)
    pytest.fail(f"no {count} finished scenes before the run ended: {process.communicate()[0].decode()[-2000:]}")


@pytest.fixture(scope="module")
def archive_of_eight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Eight scenes and the outputs of one uninterrupted run over them."""
    folder = tmp_path_factory.mktemp("eight")
    for seed in range(8):
        write_scene(folder / "lr" / f"s{seed}.h5", lr_scene(seed, 32, 31))
    report = run_archive(folder / "lr", folder / "reference", InferOptions(tile=16))
    assert report.exit_code == 0
    return folder / "lr", folder / "reference"


def interrupt_after_first_scene(archive: Path, out: Path, *extra: str) -> list[str]:
    """Run ``dualsr infer`` as a process, send SIGINT once a scene is done, check it exits 130 saying how to
    continue with part of the archive done, and return the scenes it finished."""
    process = infer_process(archive, out, *extra)
    wait_for_ok(out, process, 1)
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0].decode()
    assert process.returncode == 130, output[-2000:]
    assert "--resume" in output
    lines = (out / "manifest.jsonl").read_text().splitlines()
    finished = [str(record["name"]) for record in map(json.loads, lines) if record["status"] == "ok"]
    assert 1 <= len(finished) < len(list(archive.iterdir()))
    return finished


# --- object storage: an S3 API server on 127.0.0.1 (tests/servers.py) -------------------------------------------


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    from tests.servers import s3_server

    with s3_server() as url:
        yield url


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh bucket on the S3 API server, with the environment a user would set for it."""
    import s3fs

    from tests.servers import S3_ENV

    for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
        monkeypatch.setenv(name, value)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    bucket = f"b{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    fs.bucket = bucket
    return fs


def upload(fs: Any, local: Path, prefix: str) -> str:
    """``local``'s tree under ``prefix`` in the bucket; its URL."""
    fs.put(str(local) + "/", f"{fs.bucket}/{prefix}/", recursive=True)
    return f"s3://{fs.bucket}/{prefix}/"


def same_output(fs: Any, key: str, local: Path, tmp: Path, *, attrs: bool = True) -> None:
    """The object's cube and attributes equal the local output's, but for where the scene was read from
    (``attrs=False``: the cube alone, for an input read without a sidecar the local one had)."""
    folder, _, name = key.rpartition("/")
    stem = name.split(".", 1)[0]
    fetched_dir = tmp / uuid.uuid4().hex
    fetched_dir.mkdir()
    for found in fs.glob(f"{folder}/{stem}*"):  # an ENVI output is its header, data file and sidecar
        fs.get(found, str(fetched_dir / found.rpartition("/")[2]))
    fetched = fetched_dir / name
    remote, here = read_scene(fetched), read_scene(local)
    assert np.array_equal(remote.cube, here.cube)
    assert remote.meta.wavelengths == here.meta.wavelengths
    if not attrs:
        return
    paths = ("dualsr_scene", "origin_source")  # where the scene was read from: a URL here, a path there
    assert {k: v for k, v in remote.meta.attrs.items() if k not in paths} == {
        k: v for k, v in here.meta.attrs.items() if k not in paths
    }
