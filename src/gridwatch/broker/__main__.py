"""Run the embedded broker until interrupted: `python -m gridwatch.broker --port 1883`."""

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence

from gridwatch.broker._broker import EmbeddedBroker

logger = logging.getLogger("gridwatch.broker")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m gridwatch.broker",
        description="Embedded MQTT 3.1.1 broker for demos and tests: no authentication, "
        "in-memory sessions only.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=1883, help="port, 0 for any free one")
    parser.add_argument(
        "--max-queued-messages",
        type=int,
        default=100_000,
        help="messages queued per client before new ones are dropped (default: %(default)s)",
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser.parse_args(argv)


async def _serve(*, host: str, port: int, max_queued_messages: int) -> None:
    stop = asyncio.Event()
    # Ctrl-C arrives as KeyboardInterrupt via asyncio.run; SIGTERM (supervisors) stops cleanly.
    with contextlib.suppress(NotImplementedError):
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with EmbeddedBroker(
        host=host, port=port, max_queued_messages=max_queued_messages
    ) as broker:
        logger.info("serving until interrupted url=%s", broker.url)
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and serve until Ctrl-C or SIGTERM."""
    args = _parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            _serve(host=args.host, port=args.port, max_queued_messages=args.max_queued_messages)
        )


if __name__ == "__main__":
    main()
