"""Data files of the domain (calendars, deadline policies): read, validated, errors that point."""

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Document = TypeVar("Document", bound=BaseModel)


class DataFileError(ValueError):
    """A data file that cannot be used, naming the field (and the file) at fault."""

    def __init__(self, reason: str, *, field: str | None = None, path: Path | None = None) -> None:
        self.reason = reason
        self.field = field
        self.path = path
        where = [str(part) for part in (path, field) if part is not None]
        super().__init__(": ".join([*where, reason]))


def read_document(
    path: Path, model: type[Document], *, error: type[DataFileError], shape: str
) -> Document:
    """The YAML mapping at `path` validated as `model`; `error` names the file and field.

    `shape` says what the file must be when it is not a mapping at all.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise error(f"cannot be read ({err.strerror})", path=path) from err
    # PyYAML raises a bare ValueError for an impossible date such as 2026-13-01.
    except (yaml.YAMLError, ValueError) as err:
        raise error(f"is not valid YAML ({err})", path=path) from err
    if not isinstance(document, dict):
        raise error(f"must be {shape}", path=path)
    try:
        return model.model_validate(document)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or None
        raise error(first["msg"], field=where, path=path) from err
