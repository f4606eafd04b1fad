"""A real HTTP webhook receiver on a loopback port that verifies Standard Webhooks signatures."""

import asyncio
import base64
import contextlib
import json
import secrets
import socket
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self, cast

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.servers.ports import LOOPBACK

MAX_BODY_BYTES = 10 * 1024 * 1024  # far above any case event; stops a runaway sender
_POLL_S = 0.02


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST the receiver got, and how it answered it."""

    path: str
    headers: Mapping[str, str]  # names lower-cased, as HTTP treats them
    body: bytes
    json: Any  # the parsed body; None when the request was rejected before parsing
    arrived_at: datetime
    status: int
    verified: bool
    error: str | None = None  # why the request was rejected

    @property
    def event_id(self) -> str | None:
        """The `webhook-id` header: the CloudEvent id, identical across retries."""
        return self.headers.get("webhook-id")


@dataclass(frozen=True, slots=True)
class _Reply:
    """A programmed answer to one verified delivery."""

    status: int
    retry_after: str | None = None
    delay: float = 0.0
    body: bytes = b""


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its receiver and the connections it has open."""

    daemon_threads = True

    allow_reuse_address = True  # a restart binds the port it had again

    def __init__(self, receiver: "WebhookReceiver", port: int = 0) -> None:
        self.receiver = receiver
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__((LOOPBACK, port), _Handler)  # port 0: the kernel picks, no race


class _Handler(BaseHTTPRequestHandler):
    """Reads one request at a time and lets the receiver decide the answer."""

    protocol_version = "HTTP/1.1"  # keep-alive, as real receivers do
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

    def do_POST(self) -> None:
        """Record the delivery and answer as programmed (or 401/400/413 for a bad request)."""
        body = self._read_body()
        if body is None:
            self._answer(_Reply(413))
            return
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self._server.receiver._handle(self.path, headers, body)
        if reply.delay:
            time.sleep(reply.delay)  # a slow receiver, for sender timeout tests
        self._answer(reply)

    def do_GET(self) -> None:
        """Webhooks are POSTs only."""
        self._answer(_Reply(405))

    do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815 - names fixed by the stdlib

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: every request is recorded on the receiver instead of printed."""

    @property
    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def _answer(self, reply: _Reply) -> None:
        self.send_response(reply.status)
        if reply.retry_after is not None:
            self.send_header("Retry-After", reply.retry_after)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        self.wfile.write(reply.body)

    def _read_body(self) -> bytes | None:
        """Read a Content-Length or chunked body; None when it exceeds MAX_BODY_BYTES."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            size = 0
            while chunk_size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                size += chunk_size
                if size > MAX_BODY_BYTES:
                    self.close_connection = True
                    return None
                chunks.append(self.rfile.read(chunk_size))
                self.rfile.readline()  # CRLF after each chunk
            while self.rfile.readline() not in {b"\r\n", b"\n", b""}:
                pass  # trailer fields, unused
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            return None
        return self.rfile.read(length)


class WebhookReceiver:
    """HTTP server on 127.0.0.1 that verifies, records and answers webhook deliveries."""

    def __init__(self, *, secret: str, default_status: int = 200) -> None:
        self._webhook = Webhook(secret)  # validates the secret's base64 now, not at first POST
        self.secret = secret
        self._default = _Reply(_checked_status(default_status))
        self._replies: deque[_Reply] = deque()
        self._changed = threading.Condition()
        self._attempts: list[Delivery] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """Loopback address the receiver listens on."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """TCP port the receiver listens on."""
        if self._server is None:
            raise RuntimeError("webhook receiver is not started")
        port: int = self._server.server_address[1]
        return port

    @property
    def url(self) -> str:
        """URL to subscribe: deliveries to any path on this server are accepted."""
        return f"http://{self.host}:{self.port}/webhook"

    @property
    def attempts(self) -> list[Delivery]:
        """Every POST in arrival order, whatever it was answered."""
        with self._changed:
            return list(self._attempts)

    @property
    def received(self) -> list[Delivery]:
        """Verified deliveries answered 2xx, in arrival order."""
        with self._changed:
            return self._received_locked()

    @property
    def rejected(self) -> list[Delivery]:
        """Requests refused for a bad or missing signature or body, in arrival order."""
        with self._changed:
            return [d for d in self._attempts if not d.verified]

    def respond_with(
        self,
        *statuses: int,
        retry_after: int | str | None = None,
        delay: float = 0.0,
        body: str = "",
    ) -> None:
        """Answer the next verified deliveries with `statuses` in order (each with `body`),
        then the default."""
        if delay < 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        header = None if retry_after is None else str(retry_after)
        replies = [_Reply(_checked_status(s), header, delay, body.encode()) for s in statuses]
        with self._changed:
            self._replies.extend(replies)

    def set_default_status(self, status: int) -> None:
        """Answer verified deliveries with `status` once the queued statuses are used up."""
        with self._changed:
            self._default = _Reply(_checked_status(status))

    def clear(self) -> None:
        """Forget recorded requests and queued statuses."""
        with self._changed:
            self._attempts.clear()
            self._replies.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        """Block until `count` deliveries were received; raise TimeoutError showing what came."""
        with self._changed:
            done = self._changed.wait_for(lambda: len(self._received_locked()) >= count, timeout)
            if not done:
                raise TimeoutError(self._shortfall(count, timeout))
            return self._received_locked()

    async def wait_for_async(
        self,
        count: int,
        timeout: float = 10.0,  # noqa: ASYNC109 - mirrors wait_for; its error lists what came
    ) -> list[Delivery]:
        """Like wait_for, without blocking the event loop a sender under test may run on."""
        deadline = time.monotonic() + timeout
        for _ in range(int(timeout / _POLL_S) + 1):
            received = self.received
            if len(received) >= count:
                return received
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(_POLL_S)
        with self._changed:
            raise TimeoutError(self._shortfall(count, timeout))

    def start(self, port: int = 0) -> None:
        """Serve in a background thread on `port` (0: a free one; a receiver coming back
        after `close` passes the port it had)."""
        if self._server is not None:
            raise RuntimeError(f"webhook receiver already serving at {self.url}")
        self._server = _Server(self, port)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"webhook-receiver-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, end open connections and join the server thread."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        with server.connections_lock:
            # Idle keep-alive connections would otherwise hold their threads until timeout.
            for conn in list(server.connections):
                # OSError: the client closed it already.
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        thread.join(timeout=5.0)

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

    def _handle(self, path: str, headers: dict[str, str], body: bytes) -> _Reply:
        """Verify one request, pick its answer, record it, and wake waiters."""
        arrived_at = datetime.now(UTC)
        payload: Any = None
        error: str | None = None
        reply: _Reply | None = None
        try:
            # The library reads the signature headers, checks the timestamp tolerance (5 min)
            # and compares every `v1,` signature; malformed input raises ValueError subclasses.
            self._webhook.verify(body, headers, json_parse=False)
        except (WebhookVerificationError, ValueError) as err:
            error = f"signature: {type(err).__name__}: {err}"
            reply = _Reply(401)
        else:
            try:
                payload = json.loads(body)
            except ValueError as err:
                error = f"body is not JSON: {err}"
                reply = _Reply(400)
        with self._changed:
            if reply is None:
                # Only verified deliveries use up programmed statuses: a sender bug that
                # breaks signatures must not shift the script of a retry test.
                reply = self._replies.popleft() if self._replies else self._default
            self._attempts.append(
                Delivery(
                    path=path,
                    headers=headers,
                    body=body,
                    json=payload,
                    arrived_at=arrived_at,
                    status=reply.status,
                    verified=error is None,
                    error=error,
                )
            )
            self._changed.notify_all()
        return reply

    def _received_locked(self) -> list[Delivery]:
        return [d for d in self._attempts if d.verified and 200 <= d.status < 300]

    def _shortfall(self, count: int, timeout: float) -> str:
        """Describe, under the lock, what arrived when fewer than `count` deliveries did."""
        statuses = [d.status for d in self._attempts]
        errors = [d.error for d in self._attempts if d.error]
        return (
            f"{len(self._received_locked())} of {count} webhook deliveries received within "
            f"{timeout:.1f} s; statuses of all {len(self._attempts)} attempts: {statuses}; "
            f"rejections: {errors}"
        )


def new_secret() -> str:
    """Return a fresh Standard Webhooks secret: `whsec_` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode("ascii")


def signed_headers(
    secret: str, body: bytes, *, msg_id: str, timestamp: datetime | None = None
) -> dict[str, str]:
    """Return the Standard Webhooks headers a correct sender puts on `body`."""
    timestamp = timestamp or datetime.now(UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, timestamp, body.decode("utf-8")),
        "content-type": "application/cloudevents+json",
    }


def _checked_status(status: int) -> int:
    """Return `status` if it is a final HTTP status code, else raise ValueError."""
    if not 200 <= status <= 599:
        raise ValueError(f"HTTP status must be 200..599, got {status}")
    return status
