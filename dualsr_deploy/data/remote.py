"""Archives where they live: object storage (``s3://``, ``gs://``, ``az://``) and HTTP(S), through fsspec.

- **Listing.** Every input form a local archive has: a folder (a prefix: every object under it), a glob, a list
  file (one URL or relative path a line, inside the list's folder) and a single file. What the objects are is decided
  by the same rules as a local folder's: the listing is laid out as a *skeleton* (an empty file per object, under
  the object's relative path) and walked by :func:`~dualsr_deploy.data.archive.open_archive`'s own walk, so a
  mask granule, an ENVI data file or an EnMAP metadata file is read with its scene here exactly as it is there.
- **Names are claims.** An object's key names a local file only when it is a plain relative path: a key with an
  empty, ``.`` or ``..`` part, a backslash or a control character is that object's recorded failure, never a path.
- **Staging.** A scene is read from a local copy of its objects (:func:`stage`: the scene file and the objects read
  with it), made in a folder the run owns, removed when the scene has ended; the run bounds how much is staged.
- **Credentials** the usual way: S3 through botocore's chain (environment, profile, instance role; an S3-compatible
  endpoint from ``AWS_ENDPOINT_URL``; ``AWS_NO_SIGN_REQUEST=YES`` for public buckets), GCS and Azure through gcsfs and
  adlfs, HTTPS with ``~/.netrc`` or a bearer token (``DUALSR_BEARER_TOKEN``, or ``EARTHDATA_TOKEN``), sent over
  HTTPS only. A refusal (403), a missing object (404) and missing credentials are each one line naming the URL;
  transient errors (connection, timeout, 5xx) are retried with back-off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dualsr_deploy.errors import RemoteError
from dualsr_deploy.optional import require

REMOTE_SCHEMES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "http", "https"})
RETRIES = 4  # attempts of a transient failure, with back-off 0.5, 1, 2 s between
TOKEN_VARIABLES = ("DUALSR_BEARER_TOKEN", "EARTHDATA_TOKEN")
_LIST_SUFFIXES = (".txt", ".lst", ".list")

T = TypeVar("T")


def is_url(spec: object) -> bool:
    """Whether ``spec`` names a remote location this package reads and writes (``s3://``, ``https://`` …)."""
    if not isinstance(spec, str):
        return False
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", spec)
    return bool(match) and match[1].lower() in REMOTE_SCHEMES  # type: ignore[index]


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower()


@dataclass(frozen=True)
class RemoteObject:
    """One object of a listing: its ``url``, its path ``relative`` to the archive's folder, its ``size`` and
    ``identity`` (the ETag, else the modification time: what says it changed), when the server gives them."""

    url: str
    relative: str
    size: int | None = None
    identity: str | None = None


@dataclass
class RemoteListing:
    """What :meth:`Remote.listing` found: ``base``, the archive's folder (a URL ending in ``/``); ``objects``; and
    ``refused``: (url, why) for objects whose keys cannot name a local file or that lie outside the folder."""

    base: str
    objects: list[RemoteObject] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


def key_problem(relative: str) -> str | None:
    """Why an object's relative key cannot name a local file, or None."""
    if not relative:
        return "an empty key"
    if "\\" in relative:
        return "its key holds a backslash"
    if any(ord(char) < 32 or char == "\x7f" for char in relative):
        return "its key holds a control character"
    if relative.startswith("/") or any(part in ("", ".", "..") for part in relative.split("/")):
        return "its key has an empty, '.' or '..' part"
    if any(len(part.encode()) > 255 for part in relative.split("/")):
        return "a part of its key is longer than a file name may be"
    return None


def _describe(url: str, error: BaseException) -> str:
    """One line for a failed remote call: what the server said, in the user's terms."""
    name = type(error).__name__
    text = str(error).splitlines()[0] if str(error) else name
    status = _status(error)
    if isinstance(error, FileNotFoundError) or status == 404:
        return f"{url}: not found (404)"
    if name in ("NoCredentialsError", "PartialCredentialsError", "NoAuthTokenError", "DefaultCredentialsError"):
        return (
            f"{url}: no credentials ({text}); set them the usual way (environment, profile, instance role; "
            "AWS_NO_SIGN_REQUEST=YES for a public bucket)"
        )
    if isinstance(error, PermissionError) or status in (401, 403):
        return f"{url}: access refused ({status or 403}): check the credentials and the object's permissions"
    return f"{url}: {name}: {text}"


def _status(error: BaseException) -> int | None:
    for attribute in ("status", "code", "status_code"):
        value = getattr(error, attribute, None)
        if isinstance(value, int):
            return value
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if isinstance(code, int):
            return code
    match = re.search(r"\b(40[134]|50[0-4])\b", str(error))
    return int(match[1]) if match else None


def _transient(error: BaseException) -> bool:
    if isinstance(error, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return False
    status = _status(error)
    if status is not None:
        return status >= 500 or status in (408, 429)
    name = type(error).__name__
    return isinstance(error, (ConnectionError, TimeoutError)) or any(
        word in name for word in ("Connection", "Timeout", "ServerDisconnected", "EndpointConnection")
    )


def _retrying(url: str, call: Callable[[], T], *, attempts: int = RETRIES) -> T:
    """``call()``, again after 0.5, 1, 2 … s while it fails transiently; a :class:`RemoteError` in the end."""
    for attempt in range(attempts):
        try:
            return call()
        except RemoteError:
            raise
        except Exception as error:
            if attempt + 1 < attempts and _transient(error):
                time.sleep(0.5 * 2**attempt)
                continue
            raise RemoteError(_describe(url, error)) from None
    raise AssertionError("unreachable")


def _filesystem(scheme: str) -> Any:
    fsspec = require("fsspec", feature=f"{scheme}:// archives", extra="remote")
    if scheme in ("s3", "s3a"):
        require("s3fs", feature="s3:// archives", extra="remote")
        anonymous = os.environ.get("AWS_NO_SIGN_REQUEST", "").upper() in ("YES", "TRUE", "1")
        return fsspec.filesystem("s3", anon=anonymous, skip_instance_cache=True)
    if scheme in ("gs", "gcs"):
        require("gcsfs", feature="gs:// archives", extra="remote", hint="(and pip install gcsfs)")
        return fsspec.filesystem("gs", skip_instance_cache=True)
    if scheme in ("az", "abfs", "abfss"):
        require("adlfs", feature="az:// archives", extra="remote", hint="(and pip install adlfs)")
        return fsspec.filesystem("az", skip_instance_cache=True)
    require("aiohttp", feature="http(s):// archives", extra="remote")
    headers = _auth_headers(scheme)
    return fsspec.filesystem(
        "https" if scheme == "https" else "http",
        client_kwargs={"trust_env": True, "headers": headers},  # trust_env: ~/.netrc and proxies, as curl
        skip_instance_cache=True,
    )


def _auth_headers(scheme: str) -> dict[str, str]:
    """A bearer token from the environment, for HTTPS only (never sent in the clear)."""
    token = next((os.environ[name] for name in TOKEN_VARIABLES if os.environ.get(name)), None)
    return {"Authorization": f"Bearer {token}"} if token and scheme == "https" else {}


class Remote:
    """One remote file system (by scheme), with the calls a run makes of it, each retried and explained."""

    def __init__(self, scheme: str) -> None:
        self.scheme = scheme
        self.fs = _filesystem(scheme)
        self.http = scheme in ("http", "https")

    @classmethod
    def of(cls, url: str) -> Remote:
        return cls(scheme_of(url))

    def path(self, url: str) -> str:
        """What fsspec calls the object: the URL itself over HTTP, ``bucket/key`` elsewhere."""
        return url if self.http else url.split("://", 1)[1]

    def url(self, path: str) -> str:
        if self.http or "://" in path:
            return path
        return f"{self.scheme}://{path}"

    def stat(self, url: str) -> tuple[int | None, str | None] | None:
        """(size, identity) of an object, None when there is none."""
        if self.http:
            return _retrying(url, lambda: self._head(url))
        try:
            info = _retrying(url, lambda: self.fs.info(self.path(url)))
        except RemoteError as error:
            if str(error).endswith("not found (404)"):
                return None
            raise
        if info.get("type") == "directory":
            return None
        return _size(info), _identity(info)

    def _head(self, url: str) -> tuple[int | None, str | None] | None:
        """HTTP's stat by a HEAD request of our own, so that a 403 is told from a 404 (fsspec says 'not found'
        for both)."""
        requests = require("requests", feature="http(s):// archives", extra="remote")
        response = requests.head(url, allow_redirects=True, timeout=60, headers=_auth_headers(self.scheme))
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            error = OSError(f"HTTP {response.status_code}")
            error.status = response.status_code  # type: ignore[attr-defined]
            if response.status_code in (401, 403):
                raise PermissionError(f"HTTP {response.status_code}")
            raise error
        length = response.headers.get("Content-Length")
        identity = response.headers.get("ETag") or response.headers.get("Last-Modified")
        return (int(length) if length and length.isdigit() else None), (identity.strip('"') if identity else None)

    def is_folder(self, url: str) -> bool:
        if url.endswith("/"):
            return True
        if self.http:
            return False
        with contextlib.suppress(RemoteError):
            return bool(_retrying(url, lambda: self.fs.isdir(self.path(url))))
        return False

    def listing(self, spec: str) -> RemoteListing:
        """The objects of an archive given as a folder (prefix), glob, list file or single file."""
        parts = urlsplit(spec)
        if any(char in parts.path for char in "*?["):
            base = _glob_base(spec)
            found = _retrying(spec, lambda: self.fs.glob(self.path(spec), detail=True))
            objects = [(self.url(path), info) for path, info in dict(found).items() if info.get("type") != "directory"]
            if not objects:
                raise RemoteError(f"{spec}: the pattern matches no objects")
            return self._relative(base, objects)
        if self.is_folder(spec):
            base = spec if spec.endswith("/") else spec + "/"
            found = _retrying(spec, lambda: self.fs.find(self.path(base), detail=True))
            objects = [(self.url(path), info) for path, info in dict(found).items() if info.get("type") != "directory"]
            if not objects:
                raise RemoteError(f"{spec}: no objects under this prefix")
            return self._relative(base, objects)
        stat = self.stat(spec)
        if stat is None:
            raise RemoteError(f"{spec}: not found (404)")
        base = spec.rsplit("/", 1)[0] + "/"
        if spec.lower().endswith(_LIST_SUFFIXES):
            return self._listed(spec, base)
        listing = RemoteListing(base, [RemoteObject(spec, spec[len(base) :], *stat)])
        listing.objects.extend(self._companions(spec, base, {spec}))
        return listing

    def _relative(self, base: str, objects: list[tuple[str, dict[str, Any]]]) -> RemoteListing:
        listing = RemoteListing(base)
        for url, info in sorted(objects):
            if not url.startswith(base):
                listing.refused.append((url, f"outside the archive's folder {base}"))
                continue
            relative = url[len(base) :]
            problem = key_problem(relative)
            if problem is not None:
                listing.refused.append((url, problem))
                continue
            listing.objects.append(RemoteObject(url, relative, _size(info), _identity(info)))
        return listing

    def _listed(self, spec: str, base: str) -> RemoteListing:
        text = self.read_text(spec)
        entries = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        if not entries:
            raise RemoteError(f"{spec}: the list file names no scenes")
        listing = RemoteListing(base)
        for entry in entries:
            url = entry if "://" in entry else base + entry
            if "://" in entry and scheme_of(entry) != self.scheme:
                listing.refused.append((entry, f"another scheme than the list's ({self.scheme}://)"))
                continue
            normal = _normalise(url)
            if normal is None or not normal.startswith(base):
                listing.refused.append((entry, f"outside the list's folder {base}"))
                continue
            try:
                stat = self.stat(normal)
            except RemoteError as error:  # this scene's failure (403 …), not the listing's
                listing.refused.append((normal, str(error).removeprefix(f"{normal}: ")))
                continue
            if stat is None:
                listing.refused.append((normal, "not found (404)"))
                continue
            relative = normal[len(base) :]
            problem = key_problem(relative)
            if problem is not None:
                listing.refused.append((normal, problem))
                continue
            listing.objects.append(RemoteObject(normal, relative, *stat))
            listing.objects.extend(self._companions(normal, base, {o.url for o in listing.objects}))
        return listing

    def _companions(self, url: str, base: str, known: set[str]) -> list[RemoteObject]:
        """The objects a reader may open beside the named one, where a listing of its folder cannot be had (a list
        file, a single file): an ENVI header's data file, GDAL's ``.aux.xml``, a product's twin granule."""
        found = []
        from dualsr_deploy.data.remote_scenes import companion_names

        for candidate in companion_names(url):
            if candidate in known:
                continue
            with contextlib.suppress(RemoteError):
                stat = self.stat(candidate)
                if stat is not None and key_problem(candidate[len(base) :]) is None:
                    found.append(RemoteObject(candidate, candidate[len(base) :], *stat))
                    known.add(candidate)
        return found

    def read_text(self, url: str, limit: int = 64 << 20) -> str:
        data = self.read_bytes(url, limit)
        try:
            return data.decode()
        except UnicodeDecodeError:
            raise RemoteError(f"{url}: not text (UTF-8)") from None

    def read_bytes(self, url: str, limit: int = 64 << 20) -> bytes:
        """A small object whole (a list file, a manifest, a lock); more than ``limit`` bytes is refused."""
        stat = self.stat(url)
        if stat is None:
            raise RemoteError(f"{url}: not found (404)")
        if stat[0] is not None and stat[0] > limit:
            raise RemoteError(f"{url}: {stat[0]} bytes, more than the {limit} a list or manifest may have")
        return bytes(_retrying(url, lambda: self.fs.cat_file(self.path(url))))[: limit + 1]

    def fetch(self, obj: RemoteObject, target: Path) -> None:
        """Download ``obj`` to ``target`` (a temporary name first); its size must be what the listing said."""
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        _retrying(obj.url, lambda: self.fs.get_file(self.path(obj.url), str(partial)))
        size = partial.stat().st_size
        if obj.size is not None and size != obj.size:
            partial.unlink(missing_ok=True)
            raise RemoteError(f"{obj.url}: {size} bytes arrived, the listing said {obj.size} (changed while read?)")
        os.replace(partial, target)

    def put(self, local: Path, url: str) -> dict[str, Any]:
        """Upload ``local`` to ``url`` (one PUT, or a multipart upload completed at once: the object appears
        whole or not at all) and return what the store then says of it: url, bytes, sha256, etag."""
        if self.http:
            raise RemoteError(f"{url}: outputs go to object storage (s3://, gs://, az://), not to HTTP")
        digest = _sha256(local)
        _retrying(url, lambda: self.fs.put_file(str(local), self.path(url)))
        self.fs.invalidate_cache(self.path(url))
        stat = self.stat(url)
        if stat is None or stat[0] != local.stat().st_size:
            raise RemoteError(f"{url}: the upload did not arrive whole ({stat and stat[0]} of {local.stat().st_size})")
        return {"url": url, "bytes": stat[0], "sha256": digest, "etag": stat[1]}

    def write_bytes(self, url: str, data: bytes, *, create: bool = False) -> None:
        """Write a small object; ``create``: only if none is there (a ``FileExistsError`` otherwise)."""
        if create:
            try:
                self.fs.pipe_file(self.path(url), data, mode="create")
            except FileExistsError:
                raise
            except TypeError:  # a file system without exclusive writes: look, then write
                if self.stat(url) is not None:
                    raise FileExistsError(url) from None
                _retrying(url, lambda: self.fs.pipe_file(self.path(url), data))
            self.fs.invalidate_cache(self.path(url))
            return
        _retrying(url, lambda: self.fs.pipe_file(self.path(url), data))
        self.fs.invalidate_cache(self.path(url))

    def remove(self, url: str) -> None:
        with contextlib.suppress(FileNotFoundError, RemoteError):
            _retrying(url, lambda: self.fs.rm_file(self.path(url)))
        self.fs.invalidate_cache(self.path(url))

    def glob(self, pattern: str) -> list[str]:
        found = _retrying(pattern, lambda: self.fs.glob(self.path(pattern)))
        return [self.url(path) for path in found]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _size(info: dict[str, Any]) -> int | None:
    size = info.get("size", info.get("Size"))
    return int(size) if isinstance(size, int) else None


def _identity(info: dict[str, Any]) -> str | None:
    for key in ("ETag", "etag", "md5Hash", "content_settings", "LastModified", "last_modified", "mtime", "updated"):
        value = info.get(key)
        if value is not None and not isinstance(value, dict):
            return str(value).strip('"')
    return None


def _glob_base(spec: str) -> str:
    head, _, _ = spec.partition("://")
    rest = spec[len(head) + 3 :]
    fixed = []
    for part in rest.split("/"):
        if any(char in part for char in "*?["):
            break
        fixed.append(part)
    return f"{head}://{'/'.join(fixed)}/"


def _normalise(url: str) -> str | None:
    """``url`` with ``.`` and ``..`` parts of its path resolved; None when ``..`` climbs above its root."""
    head, _, rest = url.partition("://")
    authority, _, path = rest.partition("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part == ".":
            continue
        if part == "..":
            if not parts:
                return None
            parts.pop()
        else:
            parts.append(part)
    return f"{head}://{authority}/{'/'.join(parts)}"


__all__ = [
    "REMOTE_SCHEMES",
    "Remote",
    "RemoteError",
    "RemoteListing",
    "RemoteObject",
    "is_url",
    "key_problem",
]
