"""EmbeddedBroker: the listening socket and the lifetime of every connection task."""

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Self

from gridwatch.broker._connection import Connection
from gridwatch.broker._router import BrokerStats, Router

logger = logging.getLogger("gridwatch.broker")


class EmbeddedBroker:
    """An in-memory MQTT 3.1.1 broker for demos and tests, run as an async context manager.

    It has no authentication (user names and passwords are accepted and ignored), so it binds
    to loopback by default, and it keeps sessions and retained messages in memory only: they
    are lost when it stops. Production deployments use Mosquitto with persistence instead.
    """

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, max_queued_messages: int = 100_000
    ) -> None:
        if not host:
            raise ValueError("host must not be empty")
        if not 0 <= port <= 0xFFFF:
            raise ValueError(f"port must be in 0..65535, got {port}")
        if max_queued_messages < 1:
            raise ValueError(f"max_queued_messages must be positive, got {max_queued_messages}")
        self._host = host
        self._port = port
        self._router = Router(max_queued_messages=max_queued_messages)
        self._started = False
        self._closing = False
        self._server: asyncio.Server | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._connection_tasks: set[asyncio.Task[None]] = set()
        self._exit_stack = contextlib.AsyncExitStack()

    @property
    def host(self) -> str:
        """The address the broker binds to."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port (the free port picked by the OS when constructed with port 0)."""
        if self._port == 0:
            raise RuntimeError("the port is known once the broker has started")
        return self._port

    @property
    def url(self) -> str:
        """The broker's address as an mqtt:// URL."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"mqtt://{host}:{self.port}"

    @property
    def stats(self) -> BrokerStats:
        """A snapshot of connected clients, sessions and message counters."""
        return self._router.stats()

    async def __aenter__(self) -> Self:
        """Bind the listening socket and start accepting clients."""
        if self._started:
            raise RuntimeError("an EmbeddedBroker can only be started once")
        self._started = True
        stack = contextlib.AsyncExitStack()
        self._tasks = await stack.enter_async_context(asyncio.TaskGroup())
        # Registered after the task group, so it runs first on exit: the group then only has
        # to await connection tasks that are already cancelled.
        stack.push_async_callback(self._shutdown)
        try:
            self._server = await asyncio.start_server(self._accept, self._host, self._port)
        except BaseException:
            await stack.aclose()
            raise
        self._exit_stack = stack
        self._port = self._server.sockets[0].getsockname()[1]
        logger.info("embedded broker listening url=%s", self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close every connection and wait for every task to end."""
        # Not handing the body's exception to the task group, which would wrap it in an
        # ExceptionGroup: the caller's own error propagates unchanged.
        await self._exit_stack.aclose()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._closing or self._tasks is None:
            writer.transport.abort()
            return
        connection = Connection(reader, writer, self._router)
        peer = writer.get_extra_info("peername")
        task = self._tasks.create_task(self._serve(connection), name=f"mqtt-connection-{peer}")
        self._connection_tasks.add(task)
        task.add_done_callback(self._connection_tasks.discard)

    async def _serve(self, connection: Connection) -> None:
        try:
            await connection.run()
        except Exception:
            # The isolation boundary: a bug hit by one connection must not fail the task group
            # and with it every other client's connection. Peer errors never get here.
            logger.exception("connection failed client_id=%s", connection.client_id)

    async def _shutdown(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task in self._connection_tasks:
            task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            logger.info("embedded broker stopped url=%s", self.url)
