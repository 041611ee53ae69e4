"""Servers the remote-archive tests talk to, on 127.0.0.1 only: an S3 API server (moto's server mode, in its own
process) and an HTTP server over a folder with range requests (honouring ``If-Range``), which counts the bytes it
sends, answers 403 for any name holding ``forbidden`` and ignores ranges for any name holding ``norange``."""

from __future__ import annotations

import contextlib
import http.server
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 API server for the block; yields its endpoint URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("the S3 API server did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@dataclass
class HttpLog:
    """What the HTTP server sent: bytes of bodies, requests (method, path, range) and Authorization headers."""

    sent: int = 0
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(folder: Path, log: HttpLog) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _target(self) -> Path | None:
            relative = self.path.split("?", 1)[0].lstrip("/")
            path = (folder / relative).resolve()
            return path if path.is_relative_to(folder.resolve()) and path.is_file() else None

        def _answer(self, body: bool) -> None:
            header = self.headers.get("Range")
            with log.lock:
                log.requests.append((self.command, self.path, header))
                if self.headers.get("Authorization"):
                    log.authorizations.append(self.headers["Authorization"])
            if "forbidden" in self.path:
                self.send_error(403)
                return
            path = self._target()
            where = (folder / self.path.split("?", 1)[0].lstrip("/")).resolve()
            if path is None and where.is_dir() and where.is_relative_to(folder.resolve()):
                self._listing(where, body)  # an index page of links, as web servers list folders
                return
            if path is None:
                self.send_error(404)
                return
            size = path.stat().st_size
            etag = f'"{int(path.stat().st_mtime_ns)}-{size}"'
            start, stop = 0, size
            match = re.fullmatch(r"bytes=(\d+)-(\d*)", header or "")
            if "norange" in self.path or self.headers.get("If-Range", etag) != etag:
                match = None  # a server without ranges, or an object changed since If-Range's ETag: all of it
            if match:
                start, stop = int(match[1]), min(size, int(match[2]) + 1 if match[2] else size)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{stop - 1}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(stop - start))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("ETag", etag)
            self.end_headers()
            if body:
                with path.open("rb") as handle:
                    handle.seek(start)
                    data = handle.read(stop - start)
                with log.lock:  # counted before it is written: a client holds the body only after it is counted
                    log.sent += len(data)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # a client that stopped reading
                    self.wfile.write(data)

        def _listing(self, where: Path, body: bool) -> None:
            names = sorted(f"{p.name}/" if p.is_dir() else p.name for p in where.iterdir())
            page = "".join(f'<a href="{name}">{name}</a><br>\n' for name in names).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            if body:
                self.wfile.write(page)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

    return Handler


@contextlib.contextmanager
def http_server(folder: Path) -> Iterator[tuple[str, HttpLog]]:
    """Serve ``folder`` over HTTP on 127.0.0.1 for the block; yields its base URL and its log."""
    log = HttpLog()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(folder, log))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", log
    finally:
        server.shutdown()
        server.server_close()
