"""Files other programs read while we write them: replaced in one step, never half-written."""

import os
import tempfile
from pathlib import Path


def write_file_atomically(path: Path, text: str, *, mode: int = 0o640) -> None:
    """Replace `path` in one step: a reader (a broker on SIGHUP) never sees half a file."""
    # Not world-readable by default: Mosquitto 2.1 warns about world-readable password files.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        Path(temporary).chmod(mode)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
