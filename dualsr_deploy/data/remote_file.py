"""A read-only file object over a remote object, read by range in 4 MiB blocks, for h5py and h5netcdf (which take
file objects): NetCDF and HDF5 scenes in object storage or on HTTP(S) read where they are.

Every range is fetched **in the thread that reads**, by a blocking client (botocore for S3, requests for HTTP),
never through an event loop on another thread. h5py holds its global lock while the HDF5 library calls back into
the file object; a read that waited on fsspec's I/O thread deadlocked as soon as that thread's garbage collection
freed an h5py object, which needs the same lock (seen on a Ray worker: every thread of the process waiting). Read
in the reading thread, a collection there re-enters the lock it holds, and one in any other thread waits for the
read to end.
"""

from __future__ import annotations

import collections
import functools
import io
import os
import threading
from collections.abc import Callable
from typing import Any

from dualsr_deploy.data.remote import _auth_headers, _retrying
from dualsr_deploy.errors import RemoteError
from dualsr_deploy.optional import require

BLOCK_SIZE = 4 << 20
BLOCKS_KEPT = 16  # 64 MiB per object: an HDF5 file's metadata and the chunks of a strip being read

Fetch = Callable[[int, int], bytes]  # (start, stop) → the bytes in [start, stop)


class Blocks:
    """``size`` bytes of one object, fetched by ``fetch`` in blocks of ``block_size``; the last ``kept`` blocks are
    kept (least recently used dropped first) and shared by every :class:`RangeFile` open on the object, so that the
    probe, the reader and the writer's copy of the product's structure fetch a block once, not once each."""

    def __init__(self, url: str, size: int, fetch: Fetch, block_size: int = BLOCK_SIZE, kept: int = BLOCKS_KEPT):
        self.url, self.size, self._fetch = url, size, fetch
        self.block_size, self.kept = block_size, kept
        self._blocks: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self.lock = threading.Lock()
        self.fetched = 0  # bytes fetched, for tests and reports

    def block(self, index: int) -> bytes:
        """Block ``index``, fetched in the calling thread when it is not kept (call with :attr:`lock` held)."""
        block = self._blocks.get(index)
        if block is not None:
            self._blocks.move_to_end(index)
            return block
        start = index * self.block_size
        stop = min(self.size, start + self.block_size)
        block = self._fetch(start, stop)
        if len(block) != stop - start:
            raise RemoteError(f"{self.url}: asked for bytes {start}-{stop - 1}, got {len(block)} bytes")
        self.fetched += len(block)
        self._blocks[index] = block
        while len(self._blocks) > self.kept:
            self._blocks.popitem(last=False)
        return block


class RangeFile(io.RawIOBase):
    """A file object over ``blocks`` with a position of its own (several may be open on one object at once)."""

    def __init__(self, blocks: Blocks) -> None:
        super().__init__()
        self.blocks, self.url, self.size = blocks, blocks.url, blocks.size
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(f"{self.url}: seek before the start")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        blocks = self.blocks
        with blocks.lock:
            start = self._position
            stop = min(self.size, start + len(view))
            done = 0
            while start + done < stop:
                index, offset = divmod(start + done, blocks.block_size)
                block = blocks.block(index)
                take = min(len(block) - offset, stop - start - done)
                view[done : done + take] = block[offset : offset + take]
                done += take
            self._position = start + done
            return done


# What a botocore client is made from: a client is shared by every open made under the same environment
_S3_ENVIRONMENT = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL",
    "AWS_NO_SIGN_REQUEST",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


@functools.lru_cache(maxsize=4)
def _s3_client(environment: tuple[str | None, ...]) -> Any:
    """A botocore S3 client for ``environment`` (the values of :data:`_S3_ENVIRONMENT`): made once, not once per
    open (~86 ms each, and a granule's scene opens its object ~11 times); botocore's clients are thread-safe."""
    import botocore
    import botocore.config
    import botocore.session

    settings = dict(zip(_S3_ENVIRONMENT, environment, strict=True))
    anonymous = (settings["AWS_NO_SIGN_REQUEST"] or "").upper() in ("YES", "TRUE", "1")
    config = botocore.config.Config(
        retries={"max_attempts": 5, "mode": "standard"},
        **({"signature_version": botocore.UNSIGNED} if anonymous else {}),
    )
    endpoint = settings["AWS_ENDPOINT_URL_S3"] or settings["AWS_ENDPOINT_URL"] or None
    return botocore.session.get_session().create_client("s3", endpoint_url=endpoint, config=config)


def _s3_fetcher(url: str) -> tuple[int, str | None, Fetch]:
    """The object's size and a blocking ranged GET for it (botocore's own client: credentials, profile, instance
    role and ``AWS_ENDPOINT_URL`` as the AWS tools read them; ``AWS_NO_SIGN_REQUEST=YES`` for public buckets)."""
    require("botocore", feature="s3:// archives", extra="remote")
    import botocore.exceptions

    bucket, _, key = url.split("://", 1)[1].partition("/")
    client = _s3_client(tuple(os.environ.get(name) for name in _S3_ENVIRONMENT))

    def errors(call: Callable[[], Any]) -> Any:
        try:
            return call()
        except client.exceptions.NoSuchKey:
            raise FileNotFoundError(url) from None
        except botocore.exceptions.ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status in (401, 403):
                raise PermissionError(f"HTTP {status}") from None
            if status == 404:
                raise FileNotFoundError(url) from None
            if status == 412:
                raise RemoteError(f"{url}: the object changed while it was being read") from None
            raise

    head = _retrying(url, lambda: errors(lambda: client.head_object(Bucket=bucket, Key=key)))

    etag = head.get("ETag")
    same = {"IfMatch": etag} if etag else {}  # every range of one version: a replaced object fails, never mixes

    def fetch(start: int, stop: int) -> bytes:
        def get() -> bytes:
            answer = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{stop - 1}", **same)
            return bytes(answer["Body"].read(stop - start + 1))  # a longer answer than asked is told, not read

        return bytes(_retrying(url, lambda: errors(get)))

    return int(head["ContentLength"]), head.get("ETag"), fetch


def _http_fetcher(url: str) -> tuple[int, str | None, Fetch]:
    """The object's size (from a one-byte range's ``Content-Range``) and a blocking ranged GET (``~/.netrc`` and a
    bearer token over HTTPS, as for listings); a server that does not serve ranges is said to."""
    requests = require("requests", feature="http(s):// archives", extra="remote")
    session = requests.Session()  # trust_env by default: ~/.netrc and proxies, as curl
    session.headers.update(_auth_headers(url.split("://", 1)[0].lower()))

    version: dict[str, str] = {}  # If-Range: the first answer's ETag, so that a replaced object is told

    def get(start: int, stop: int) -> bytes:
        """Bytes [start, stop), streamed: a server that answers a range with the whole object is refused before its
        body is read, and an answer longer than asked for is told from one of the right length."""
        headers = {"Range": f"bytes={start}-{stop - 1}", **version}
        with session.get(url, headers=headers, timeout=60, stream=True) as response:
            if response.status_code in (401, 403):
                raise PermissionError(f"HTTP {response.status_code}")
            if response.status_code == 404:
                raise FileNotFoundError(url)
            if response.status_code >= 400:
                error = OSError(f"HTTP {response.status_code}")
                error.status = response.status_code  # type: ignore[attr-defined]
                raise error
            if response.status_code != 206:
                why = "the object changed while it was being read" if version else "the server serves no byte ranges"
                raise RemoteError(f"{url}: {why} (HTTP {response.status_code} to a Range)")
            if not sizes:
                total = response.headers.get("Content-Range", "").rpartition("/")[2]
                sizes.append(int(total) if total.isdigit() else -1)
                identities.append(response.headers.get("ETag") or response.headers.get("Last-Modified"))
                etag = response.headers.get("ETag", "")
                if etag and not etag.startswith("W/"):  # a weak ETag cannot validate bytes
                    version["If-Range"] = etag
            body = response.raw.read(stop - start + 1, decode_content=True)
            return bytes(body)

    sizes: list[int] = []
    identities: list[str | None] = []
    _retrying(url, lambda: get(0, 1))
    if not sizes or sizes[0] < 0:
        raise RemoteError(f"{url}: the server gives no size for the object (no total in Content-Range)")
    return sizes[0], identities[0], lambda start, stop: _retrying(url, lambda: get(start, stop))


_KEPT_OBJECTS = 4  # objects whose blocks are kept at once: a cluster worker's two scenes, with room
_objects: collections.OrderedDict[tuple[str, int, str | None], Blocks] = collections.OrderedDict()
_objects_lock = threading.Lock()


def range_file(url: str) -> RangeFile:
    """A :class:`RangeFile` over the object ``url`` (``s3://`` or ``http(s)://``). Its blocks are shared with the
    files opened on the same object before, as long as its size and ETag are the same (an object replaced meanwhile
    starts afresh), for the last few objects opened."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("s3", "s3a"):
        size, identity, fetch = _s3_fetcher(url)
    elif scheme in ("http", "https"):
        size, identity, fetch = _http_fetcher(url)
    else:
        raise RemoteError(f"{url}: NetCDF/HDF5 are read by range from s3:// and http(s):// only; {scheme}:// is staged")
    key = (url, size, identity)
    with _objects_lock:
        blocks = _objects.get(key)
        if blocks is None or identity is None:  # without an identity, a replaced object cannot be told: not shared
            blocks = _objects[key] = Blocks(url, size, fetch)
        _objects.move_to_end(key)
        while len(_objects) > _KEPT_OBJECTS:
            _objects.popitem(last=False)
    return RangeFile(blocks)


def release(url: str | None = None) -> None:
    """Drop the kept blocks of ``url`` (every object's when None): its scene has ended, or the run."""
    with _objects_lock:
        for key in [k for k in _objects if url is None or k[0] == url]:
            del _objects[key]


__all__ = ["BLOCK_SIZE", "Blocks", "RangeFile", "range_file", "release"]
