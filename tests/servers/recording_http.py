"""A real HTTP server on a loopback port that records every request and answers as told."""

import contextlib
import gzip
import socket
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast
from urllib.parse import parse_qs, urlsplit

from tests.servers.ports import LOOPBACK

MAX_BODY_BYTES = 64 * 1024 * 1024  # far above any test batch; stops a runaway client


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as it arrived."""

    method: str
    path: str
    query_string: str  # raw, so tests can assert parameter order too
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # names lower-cased, as HTTP treats them
    raw_body: bytes  # as sent on the wire
    body: bytes  # decompressed when Content-Encoding is gzip


@dataclass(frozen=True, slots=True)
class Reply:
    """A programmed answer."""

    status: int = 204
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # wait before answering, for client timeout tests


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its recorder and the connections it has open."""

    daemon_threads = True

    def __init__(self, recorder: "RecordingHTTPServer") -> None:
        self.recorder = recorder
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__((LOOPBACK, 0), _Handler)  # port 0: the kernel picks, no race


class _Handler(BaseHTTPRequestHandler):
    """Records each request and sends the recorder's next programmed reply."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    timeout = 10  # idle keep-alive connections end instead of pinning a thread

    def setup(self) -> None:
        """Register the connection so close() can end it."""
        super().setup()
        with self._server.connections_lock:
            self._server.connections.add(self.connection)

    def finish(self) -> None:
        """Forget the connection."""
        with self._server.connections_lock:
            self._server.connections.discard(self.connection)
        super().finish()

    def _handle(self) -> None:
        raw = self._read_body()
        headers = {name.lower(): value for name, value in self.headers.items()}
        body = gzip.decompress(raw) if headers.get("content-encoding") == "gzip" else raw
        url = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=url.path,
            query_string=url.query,
            query=parse_qs(url.query, keep_blank_values=True),
            headers=headers,
            raw_body=raw,
            body=body,
        )
        reply = self._server.recorder._record(request)
        if reply.delay_s and self._server.recorder._closing.wait(reply.delay_s):
            return  # the server is closing: drop the connection unanswered
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: every request is recorded instead of printed."""

    @property
    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError(f"request body of {length} bytes exceeds {MAX_BODY_BYTES}")
        return self.rfile.read(length)


class RecordingHTTPServer:
    """HTTP server on 127.0.0.1 that records requests and answers 204 unless told otherwise."""

    def __init__(self, *, default: Reply | None = None) -> None:
        self._default = default or Reply()
        self._replies: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """TCP port the server listens on."""
        if self._server is None:
            raise RuntimeError("recording server is not started")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    def answer_next(
        self,
        count: int,
        *,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0.0,
    ) -> None:
        """Answer the next `count` requests this way, then go back to the default."""
        if count < 1 or not 100 <= status <= 599 or delay_s < 0:
            raise ValueError(f"bad programmed reply: {count=} {status=} {delay_s=}")
        reply = Reply(status, body, dict(headers or {}), delay_s)
        with self._lock:
            self._replies.extend([reply] * count)

    def _record(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self._requests.append(request)
            return self._replies.popleft() if self._replies else self._default

    def start(self) -> None:
        """Bind a free loopback port and serve in a background thread."""
        if self._server is not None:
            raise RuntimeError(f"recording server already serving at {self.url}")
        self._closing.clear()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"recording-http-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, end open connections and join the server thread."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        self._closing.set()  # wakes handlers waiting out a delay
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            # Idle keep-alive connections would otherwise hold their threads until timeout.
            for conn in list(server.connections):
                with contextlib.suppress(OSError):  # the client closed it already
                    conn.shutdown(socket.SHUT_RDWR)
        thread.join(timeout=5)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
