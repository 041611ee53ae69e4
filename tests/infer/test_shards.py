"""``--shard I/N|auto`` and ``dualsr manifest merge``: parts that together are the whole run, each scene once, side
by side in one folder; and the scheduler recipes of docs/how-to/schedulers.md run as written."""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from dualsr_deploy.cli.main import app
from dualsr_deploy.data import read_scene
from dualsr_deploy.data.formats import write_scene
from dualsr_deploy.errors import InputError, RunError
from dualsr_deploy.infer import InferOptions, run_archive
from dualsr_deploy.infer.lock import output_lock
from dualsr_deploy.infer.shards import Shard, parse_shard, shard_of
from tests.infer.conftest import lr_scene

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
RECIPES = REPO / "docs" / "how-to" / "schedulers.md"


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def six(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six small scenes (one in a sub-folder) and the outputs of one whole run over them at ×2."""
    folder = tmp_path_factory.mktemp("six")
    for seed in range(6):
        write_scene(folder / "lr" / ("deep/" if seed == 5 else "") / f"g{seed}.h5", lr_scene(seed, 16, 31, scale=2))
    report = run_archive(folder / "lr", folder / "whole", InferOptions(scale=2, tile=16))
    assert report.exit_code == 0
    return folder / "lr", folder / "whole"


def test_parse_shard_reads_each_scheduler() -> None:
    assert parse_shard("2/8") == Shard(2, 8)
    slurm = {
        "SLURM_ARRAY_TASK_ID": "7",
        "SLURM_ARRAY_TASK_MIN": "1",
        "SLURM_ARRAY_TASK_STEP": "2",
        "SLURM_ARRAY_TASK_COUNT": "4",
    }  # --array=1-7:2: tasks 1, 3, 5, 7
    shard = parse_shard("auto", slurm)
    assert (shard.index, shard.count) == (4, 4)
    assert parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "3"}).index == 1
    batch = parse_shard("auto", {"AWS_BATCH_JOB_ARRAY_INDEX": "0", "AWS_BATCH_JOB_ARRAY_SIZE": "10"})
    assert (batch.index, batch.count) == (1, 10)
    kube = parse_shard("auto", {"JOB_COMPLETION_INDEX": "4", "DUALSR_SHARD_COUNT": "5"})
    assert (kube.index, kube.count) == (5, 5)
    given = parse_shard("auto/6", {"JOB_COMPLETION_INDEX": "5"})
    assert (given.index, given.count, given.origin) == (6, 6, "JOB_COMPLETION_INDEX=5, --shard auto/6")


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("0/3", {}, "1 ≤ I ≤ N"),
        ("4/3", {}, "1 ≤ I ≤ N"),
        ("two", {}, "give I/N"),
        ("auto", {}, "no array index"),
        ("auto", {"JOB_COMPLETION_INDEX": "1"}, "DUALSR_SHARD_COUNT"),
        (
            "auto",
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_STEP": "2",
                "SLURM_ARRAY_TASK_COUNT": "4",
            },
            "not on the array's range",
        ),
        ("auto", {"AWS_BATCH_JOB_ARRAY_INDEX": "10", "AWS_BATCH_JOB_ARRAY_SIZE": "10"}, "1 ≤ I ≤ N"),
        ("auto", {"AWS_BATCH_JOB_ARRAY_INDEX": "x"}, "not a whole number"),
    ],
)
def test_bad_shards_are_one_line_errors(text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)):
        parse_shard(text, env)


def test_a_scenes_part_depends_on_its_name_alone() -> None:
    names = [f"EMIT_L2A_RFL_001_2024{day:04d}T0{day % 7}1234_2421{day:03d}_00{day % 5}" for day in range(2000)]
    parts = {name: shard_of(name, 7) for name in names}
    shuffled = random.Random(0).sample(names, len(names))
    assert {name: shard_of(name, 7) for name in shuffled} == parts  # the listing's order does not matter
    assert {name: shard_of(name, 7) for name in names[:50]} == {n: parts[n] for n in names[:50]}  # nor the others
    counts = np.bincount(list(parts.values()), minlength=8)[1:]
    assert counts.sum() == len(names)
    assert counts.min() > 0
    assert np.abs(counts - len(names) / 7).max() < 4 * np.sqrt(len(names) / 7)  # balanced as a hash is


def test_three_shards_side_by_side_are_the_whole_run(six: tuple[Path, Path], tmp_path: Path) -> None:
    archive, whole = six
    out = tmp_path / "sr"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "dualsr_deploy", "infer", str(archive), "-o", str(out), "--scale", "2",
             "--tile", "16", "--shard", f"{i}/3"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for i in (1, 2, 3)
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300)[0].decode() for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], outputs
    names: list[str] = []
    for i in (1, 2, 3):
        part = records(out / f"manifest.shard-{i}-of-3.jsonl")
        assert all(r["status"] == "ok" and shard_of(str(r["name"]), 3) == i for r in part)
        names += [str(r["name"]) for r in part]
        assert f"shard {i}/3: {len(part)} of 6 scenes" in " ".join(outputs[i - 1].split())
    assert sorted(names) == sorted(str(r["name"]) for r in records(whole / "manifest.jsonl"))  # each scene once
    for name in names:
        assert np.array_equal(read_scene(out / f"{name}.h5").cube, read_scene(whole / f"{name}.h5").cube)
    assert not (out / "manifest.jsonl").exists()

    merged = runner.invoke(app, ["manifest", "merge", str(out)], terminal_width=200)
    assert merged.exit_code == 0, merged.output
    assert "6 scenes (6 ok, 0 failed)" in merged.output
    assert sorted(str(r["name"]) for r in records(out / "manifest.jsonl")) == sorted(names)
    assert not list(out.glob("manifest.shard-*"))
    assert not list(out.glob(".dualsr.shard-*"))
    again = runner.invoke(app, ["infer", str(archive), "-o", str(out), "--scale", "2", "--tile", "16", "--resume"])
    assert again.exit_code == 0, again.output
    assert "0 done, 0 failed, 6 skipped" in " ".join(again.output.split())


def test_a_part_resumes_and_a_missing_part_is_named(six: tuple[Path, Path], tmp_path: Path) -> None:
    archive, _ = six
    out = tmp_path / "sr"
    args = ["infer", str(archive), "-o", str(out), "--scale", "2", "--tile", "16", "--shard", "2/2"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2
    assert "--resume" in refused.output
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0
    assert "0 done" in " ".join(resumed.output.split())
    merged = runner.invoke(app, ["manifest", "merge", str(out)], terminal_width=200)
    assert merged.exit_code == 1
    assert "no part from shard(s) 1/2" in " ".join(merged.output.split())


def test_locks_keep_parts_apart_from_whole_runs(tmp_path: Path) -> None:
    with output_lock(tmp_path, shard=Shard(1, 2)), output_lock(tmp_path, shard=Shard(2, 2)):
        with pytest.raises(RunError, match="shard 1/2 is running already"), output_lock(tmp_path, shard=Shard(1, 2)):
            pass
        with pytest.raises(RunError, match="shard runs: shard-1-of-2"), output_lock(tmp_path):
            pass
        assert runner.invoke(app, ["manifest", "merge", str(tmp_path)]).exit_code == 2
    with output_lock(tmp_path), pytest.raises(RunError, match="a whole run"), output_lock(tmp_path, shard=Shard(1, 2)):
        pass


def _blocks(language: str) -> list[str]:
    text = RECIPES.read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def _run_parts(commands: list[tuple[list[str], dict[str, str]]]) -> list[str]:
    """Every part at once, each in its own process, as the scheduler starts them."""
    bin_dir = str(Path(sys.executable).parent)  # where `dualsr` is installed
    processes = [
        subprocess.Popen(
            command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OMP_NUM_THREADS": "1", **env},
        )
        for command, env in commands
    ]  # fmt: skip
    outputs = [p.communicate(timeout=300)[0].decode() for p in processes]
    assert [p.returncode for p in processes] == [0] * len(processes), outputs
    return outputs


def _check_whole(out: Path, whole: Path, count: int) -> None:
    parts = sorted(out.glob(f"manifest.shard-*-of-{count}.jsonl"))
    names = [str(r["name"]) for part in parts for r in records(part)]
    assert sorted(names) == sorted(str(r["name"]) for r in records(whole / "manifest.jsonl"))
    assert runner.invoke(app, ["manifest", "merge", str(out)]).exit_code == 0


def test_the_slurm_recipe_runs_as_written(six: tuple[Path, Path], tmp_path: Path) -> None:
    archive, whole = six
    (script,) = [block for block in _blocks("bash") if "#SBATCH" in block]
    array = re.search(r"#SBATCH --array=(\d+)-(\d+)", script)
    assert array is not None
    assert array[1] == "0"
    path = tmp_path / "dualsr-array.sbatch"
    path.write_text(script)
    count = 3  # the recipe's array, made small: sbatch --array=0-2 dualsr-array.sbatch
    env = {"ARCHIVE": str(archive), "OUT": str(tmp_path / "sr"), "SLURM_ARRAY_TASK_MIN": "0",
           "SLURM_ARRAY_TASK_MAX": str(count - 1), "SLURM_ARRAY_TASK_STEP": "1", "SLURM_ARRAY_TASK_COUNT": str(count),
           "SLURM_CPUS_PER_TASK": "1"}  # fmt: skip
    _run_parts([(["bash", str(path)], {**env, "SLURM_ARRAY_TASK_ID": str(i)}) for i in range(count)])
    _check_whole(tmp_path / "sr", whole, count)


def test_the_aws_batch_recipe_runs_as_written(six: tuple[Path, Path], tmp_path: Path) -> None:
    archive, whole = six
    (text,) = _blocks("json")
    definition = json.loads(text)
    given = {**definition["parameters"], "archive": str(archive), "out": str(tmp_path / "sr")}  # submit-job's
    command = [
        given[word[5:]] if word.startswith("Ref::") else word for word in definition["containerProperties"]["command"]
    ]
    count = 3
    _run_parts(
        [(command, {"AWS_BATCH_JOB_ARRAY_INDEX": str(i), "AWS_BATCH_JOB_ARRAY_SIZE": str(count)}) for i in range(count)]
    )
    _check_whole(tmp_path / "sr", whole, count)


def test_the_kubernetes_recipe_runs_as_written(six: tuple[Path, Path], tmp_path: Path) -> None:
    archive, whole = six
    (text,) = _blocks("yaml")
    job = yaml.safe_load(text)
    assert job["spec"]["completionMode"] == "Indexed"
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["DUALSR_SHARD_COUNT"] == str(job["spec"]["completions"])
    count = 3  # the recipe's Job, made small: completions 3, DUALSR_SHARD_COUNT "3"
    env.update(ARCHIVE=str(archive), OUT=str(tmp_path / "sr"), DUALSR_SHARD_COUNT=str(count))
    command = [re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], word) for word in container["command"]]  # as the kubelet
    assert shlex.join(command).count(str(archive)) == 1
    _run_parts([(command, {**env, "JOB_COMPLETION_INDEX": str(i)}) for i in range(count)])
    _check_whole(tmp_path / "sr", whole, count)
