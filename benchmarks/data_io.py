"""Read throughput of the scene readers and the time to build a patch store.

    python benchmarks/data_io.py                         # ../shared/data/cave (or --cave PATH)
    python benchmarks/data_io.py --prepare --scale 4     # also build a ×4 patch store from all CAVE scenes

Throughput is the float32 cube size (C·H·W·4 bytes) over the wall time of ``read_scene`` (read + normalise),
best of ``--repeats``, with the files in the page cache after the first repeat.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from dualsr_deploy.data import open_archive, read_scene, write_scene
from dualsr_deploy.data.patches import PatchRecipe, prepare_patches

REPO = Path(__file__).resolve().parents[1]


def best_read_seconds(path: Path, repeats: int) -> tuple[float, int]:
    times = []
    nbytes = 0
    for _ in range(repeats):
        start = time.perf_counter()
        scene = read_scene(path)
        times.append(time.perf_counter() - start)
        nbytes = scene.cube.nbytes
    return min(times), nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cave", type=Path, default=REPO.parent / "shared" / "data" / "cave")
    parser.add_argument("--scene", default="beads_ms")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prepare", action="store_true")
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args()

    cave_scene = args.cave / args.scene
    seconds, nbytes = best_read_seconds(cave_scene, args.repeats)
    print(f"CAVE PNG folder {args.scene}: {nbytes / 1e6:.1f} MB in {seconds:.3f} s = {nbytes / 1e6 / seconds:.0f} MB/s")
    with tempfile.TemporaryDirectory() as tmp:
        scene = read_scene(cave_scene)
        for suffix in (".h5", ".npy", ".mat", ".tif"):
            path = write_scene(Path(tmp) / f"cube{suffix}", scene)
            seconds, nbytes = best_read_seconds(path, args.repeats)
            size = path.stat().st_size / 1e6
            print(f"{suffix:5s} float32 cube ({size:.0f} MB on disk): {nbytes / 1e6 / seconds:.0f} MB/s")
        if args.prepare:
            archive = open_archive(args.cave)
            start = time.perf_counter()
            info = prepare_patches(archive, Path(tmp) / "store.h5", PatchRecipe(scale=args.scale))
            elapsed = time.perf_counter() - start
            size = (Path(tmp) / "store.h5").stat().st_size / 1e9
            print(
                f"prepare ×{args.scale}: {len(archive)} scenes → {info.patches} patches "
                f"({info.samples} augmented samples), {size:.2f} GB, {elapsed:.1f} s"
            )


if __name__ == "__main__":
    main()
