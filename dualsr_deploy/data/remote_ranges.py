"""Remote objects read by range where they are (see :mod:`dualsr_deploy.data.remote`): GDAL's virtual paths
(``/vsis3/``, ``/vsicurl/``…) name them in an archive's entries; GeoTIFFs are opened by GDAL through them, NetCDF and
HDF5 by h5py over a block-cached file object (:mod:`dualsr_deploy.data.remote_file`)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

VSI_PREFIXES = ("/vsis3/", "/vsicurl/", "/vsigs/", "/vsiaz/")
# read by range where they are, never downloaded whole: GeoTIFFs by GDAL's windows, HDF5/NetCDF by h5py over a file
# object with a block cache (s3:// and http(s)://)
RANGE_SUFFIXES = (".tif", ".tiff", ".nc", ".nc4", ".h5", ".hdf5", ".he5")
BLOCK_SIZE = 4 << 20


def is_vsi(path: object) -> bool:
    """Whether ``path`` is a GDAL virtual path to a remote object (what a ranged scene's entry holds)."""
    return str(path).startswith(VSI_PREFIXES)


def vsi_path(url: str) -> Path:
    """The GDAL virtual path of ``url``: ``/vsis3/bucket/key``, ``/vsicurl/https:/host/key`` (GDAL restores the
    second slash a path collapses), ``/vsigs/``, ``/vsiaz/``."""
    scheme, rest = url.split("://", 1)
    prefix = {"s3": "/vsis3/", "s3a": "/vsis3/", "gs": "/vsigs/", "gcs": "/vsigs/", "az": "/vsiaz/"}.get(scheme.lower())
    if prefix is None:
        return Path(f"/vsicurl/{url}")
    return Path(prefix + rest)


VSI_OPEN = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}  # around a remote open only: no folder listing, no sidecar


def url_of_vsi(path: object) -> str:
    """The URL a GDAL virtual path names (the inverse of :func:`vsi_path`)."""
    text = str(path)
    for prefix, scheme in (("/vsis3/", "s3"), ("/vsigs/", "gs"), ("/vsiaz/", "az")):
        if text.startswith(prefix):
            return f"{scheme}://{text[len(prefix) :]}"
    rest = text[len("/vsicurl/") :]
    return re.sub(r"^(https?):/(?!/)", r"\1://", rest)


def open_binary(path: object) -> Any:
    """A read-only file object over the remote object a GDAL virtual path names, reading 4 MiB blocks by range in
    the reading thread and keeping the last ones (for h5py and h5netcdf, which take file objects; see
    :mod:`dualsr_deploy.data.remote_file` for why not fsspec's)."""
    from dualsr_deploy.data.remote_file import range_file

    return range_file(url_of_vsi(path))


def hdf5_source(path: Path) -> Any:
    """What h5py opens for ``path``: the path itself, or for a remote object read by range its file object."""
    return open_binary(path) if is_vsi(path) else path


GDAL_SET = "DUALSR_GDAL_SET"  # the settings this package put in the environment (JSON), seen by child processes too


def gdal_environment() -> dict[str, str]:
    """GDAL's settings for reading objects by range: an S3-compatible endpoint from ``AWS_ENDPOINT_URL`` (as boto3
    reads it) and retries on transient errors."""
    settings = {"GDAL_HTTP_MAX_RETRY": "4", "GDAL_HTTP_RETRY_DELAY": "1"}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        parts = urlsplit(endpoint)
        settings["AWS_S3_ENDPOINT"] = parts.netloc or parts.path
        settings["AWS_HTTPS"] = "NO" if parts.scheme == "http" else "YES"
        settings["AWS_VIRTUAL_HOSTING"] = "FALSE"
    return settings


def apply_gdal_environment() -> None:
    """Put :func:`gdal_environment` in the process's environment (GDAL reads it at every read, and it touches nothing
    but GDAL's network file systems), made again from the current ``AWS_ENDPOINT_URL`` at each run. A setting the
    user made is kept; one this package made earlier (in this process, or in the parent that started it: a Ray
    worker) is replaced or, when its source is gone, removed — not left to point GDAL at an endpoint of the past.
    (:data:`VSI_OPEN` is applied around each remote open alone: process-wide, it would hide a local file's sidecars
    from GDAL.)"""
    try:
        ours = {str(k): str(v) for k, v in json.loads(os.environ.get(GDAL_SET, "{}")).items()}
    except (ValueError, AttributeError):
        ours = {}
    wanted = gdal_environment()
    for key, value in wanted.items():
        if key not in os.environ or ours.get(key) == os.environ[key]:
            os.environ[key] = ours[key] = value
    for key in [k for k in ours if k not in wanted]:
        if os.environ.get(key) == ours.pop(key):
            del os.environ[key]
    os.environ[GDAL_SET] = json.dumps({k: v for k, v in ours.items() if os.environ.get(k) == v}, sort_keys=True)


__all__ = [
    "BLOCK_SIZE",
    "RANGE_SUFFIXES",
    "VSI_OPEN",
    "VSI_PREFIXES",
    "apply_gdal_environment",
    "gdal_environment",
    "hdf5_source",
    "is_vsi",
    "open_binary",
    "url_of_vsi",
    "vsi_path",
]
