"""Free loopback TCP ports and bounded waits for a port to accept connections."""

import socket
import time

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on `host` that nothing listens on right now."""
    # The kernel picks an unused ephemeral port; another process may still take it before the
    # caller binds it, so servers that start on it retry with a new port when the bind fails.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_accepts(host: str, port: int, *, timeout: float = 0.2) -> bool:
    """Tell whether a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_until_free(host: str, port: int, *, timeout: float = 5.0, interval: float = 0.05) -> None:
    """Wait until host:port can be bound again; raise TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    for _ in range(max(1, int(timeout / interval) + 1)):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # SO_REUSEADDR as servers set it: TIME_WAIT leftovers of closed clients do not count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError:
                pass
            else:
                return
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise TimeoutError(f"{host}:{port} still in use after {timeout:.1f} s")
