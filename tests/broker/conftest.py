"""Fixtures: a running embedded broker and raw clients closed at teardown."""

from collections.abc import AsyncIterator

import pytest

from gridwatch.broker import EmbeddedBroker
from tests.broker.clients import OpenRaw, RawClient


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    async with EmbeddedBroker() as running:
        yield running


@pytest.fixture
async def open_raw(broker: EmbeddedBroker) -> AsyncIterator[OpenRaw]:
    opened: list[RawClient] = []

    async def _open() -> RawClient:
        client = await RawClient.open(broker.port)
        opened.append(client)
        return client

    yield _open
    for client in opened:
        await client.close()
