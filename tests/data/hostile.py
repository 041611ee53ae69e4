"""Hostile files built as an attacker builds them: small files whose contents point outside the archive, lie about
their own metadata, or are no files at all. Each builder writes into ``archive`` and, where the attack reads another
file, a secret under ``outside`` that must never reach any output."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np

SECRET = b"DUALSR-SECRET-" * 128  # 1792 bytes; no output may hold any run of it


def secret_file(outside: Path, name: str = "secret.bin") -> Path:
    outside.mkdir(parents=True, exist_ok=True)
    path = outside / name
    path.write_bytes(SECRET)
    return path


def hdf5_external_storage(archive: Path, outside: Path) -> Path:
    """A 6×16×16 uint8 ``cube`` whose raw storage is the outside secret, its own ``dualsr_scene`` marking every band
    bad so that the values would be passed through to the output byte for byte."""
    import h5py

    secret = secret_file(outside)
    path = archive / "external.h5"
    count = 6 * 16 * 16
    with h5py.File(path, "w") as handle:
        handle.create_dataset("cube", shape=(6, 16, 16), dtype="u1", external=[(str(secret), 0, count)])
        meta = {"source": "x", "format": "hdf5", "bad_bands": [0, 1, 2, 3, 4]}
        handle["cube"].attrs["dualsr_scene"] = json.dumps(meta)
    return path


def hdf5_virtual(archive: Path, outside: Path) -> Path:
    """A virtual dataset whose every value comes from a file outside the archive."""
    import h5py

    outside.mkdir(parents=True, exist_ok=True)
    source = outside / "source.h5"
    with h5py.File(source, "w") as handle:
        handle["data"] = np.frombuffer(SECRET[: 6 * 16 * 16], np.uint8).reshape(6, 16, 16)
    layout = h5py.VirtualLayout(shape=(6, 16, 16), dtype="u1")
    layout[:] = h5py.VirtualSource(str(source), "data", shape=(6, 16, 16))
    path = archive / "virtual.h5"
    with h5py.File(path, "w") as handle:
        handle.create_virtual_dataset("cube", layout)
    return path


def emit_external_link(archive: Path, outside: Path) -> Path:
    """An EMIT-shaped granule whose root ``reflectance`` is an external link to a cube outside the archive."""
    import h5py

    outside.mkdir(parents=True, exist_ok=True)
    target = outside / "outside.h5"
    with h5py.File(target, "w") as handle:
        values = np.frombuffer(SECRET[: 12 * 10 * 6], np.uint8).reshape(12, 10, 6).astype(np.float32)
        handle["refl"] = values
    path = archive / "EMIT_L2A_RFL_001_20230101T000000_2300101_001.nc"
    with h5py.File(path, "w") as handle:
        handle["reflectance"] = h5py.ExternalLink(str(target.resolve()), "/refl")
        params = handle.create_group("sensor_band_parameters")
        params["wavelengths"] = np.linspace(400, 900, 6).astype(np.float32)
    return path


def envi_data_link(archive: Path, outside: Path) -> Path:
    """An honest ENVI header whose data file ``scene.img`` is a symbolic link to a file outside the archive."""
    secret = secret_file(outside)
    header = archive / "linked.hdr"
    header.write_text(
        "ENVI\nsamples = 16\nlines = 16\nbands = 6\nheader offset = 0\nfile type = ENVI Standard\n"
        "data type = 1\ninterleave = bsq\nbyte order = 0\n"
    )
    (archive / "linked.img").symlink_to(secret)
    return header


def cave_band_link(archive: Path, outside: Path) -> Path:
    """A CAVE scene folder of five band PNGs, the third a symbolic link to a PNG outside the archive."""
    from PIL import Image

    folder = archive / "bandlink_ms"
    folder.mkdir(parents=True)
    outside.mkdir(parents=True, exist_ok=True)
    plane = np.full((16, 16), 1000, np.uint16)
    Image.fromarray(plane).save(outside / "secret.png")
    for band in range(1, 6):
        path = folder / f"bandlink_ms_{band:02d}.png"
        if band == 3:
            path.symlink_to(outside / "secret.png")
        else:
            Image.fromarray(plane).save(path)
    return folder


def ome_multifile(archive: Path, outside: Path) -> Path:
    """An OME-TIFF whose second channel is a plane of another file, named ``../outside/secret.ome.tif``."""
    import tifffile

    outside.mkdir(parents=True, exist_ok=True)
    inside_uuid, outside_uuid = (f"urn:uuid:{uuid.uuid4()}" for _ in range(2))
    relative = os.path.relpath(outside / "secret.ome.tif", archive)

    def ome(own: str) -> str:
        planes = "".join(
            f'<TiffData FirstC="{c}" FirstZ="0" FirstT="0" IFD="0" PlaneCount="1"><UUID FileName="{name}">{u}</UUID>'
            "</TiffData>"
            for c, (name, u) in enumerate([("scene.ome.tif", inside_uuid), (relative, outside_uuid)])
        )
        return (
            '<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/Schemas/OME/2016-06" '
            f'UUID="{own}"><Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYCZT" Type="uint8" SizeX="16" '
            'SizeY="16" SizeC="2" SizeZ="1" SizeT="1"><Channel ID="Channel:0:0" SamplesPerPixel="1"/>'
            f'<Channel ID="Channel:0:1" SamplesPerPixel="1"/>{planes}</Pixels></Image></OME>'
        )

    path = archive / "scene.ome.tif"
    tifffile.imwrite(path, np.full((16, 16), 5, np.uint8), description=ome(inside_uuid), metadata=None)
    secret = np.frombuffer(SECRET[:256], np.uint8).reshape(16, 16)
    tifffile.imwrite(outside / "secret.ome.tif", secret, description=ome(outside_uuid), metadata=None)
    return path


def fifo(archive: Path) -> Path:
    path = archive / "scene.h5"
    os.mkfifo(path)
    return path


READS_OUTSIDE = {
    "external": hdf5_external_storage,
    "virtual": hdf5_virtual,
    "EMIT_L2A_RFL_001_20230101T000000_2300101_001": emit_external_link,
    "linked": envi_data_link,
    "bandlink": cave_band_link,
    "scene.ome": ome_multifile,
}


def holds_secret(folder: Path) -> list[Path]:
    """Files under ``folder`` that hold a 32-byte run of the secret (raw bytes, or as any integer type's values)."""
    needle = SECRET[:32]
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and needle in path.read_bytes():
            found.append(path)
    return found
