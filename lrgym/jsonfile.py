"""Small JSON documents on disk: atomic writes and format/version-checked reads.

Controller files (:mod:`lrgym.controllers.files`) and the training workflow's checkpoints
(:mod:`lrgym_agents.rundir`) are both JSON objects with a ``"format"`` name and an integer
``"version"``; :func:`read_document` does the checks they share, so a damaged or foreign file
gets the same clear error everywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from lrgym.errors import LrgymError


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file's bytes, as hex (what controller files and checkpoints record)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_atomic(path: Path, content: str | bytes) -> None:
    """Write ``content`` (text or bytes) to ``path`` so that a crash at any moment leaves either
    the old content or the new one: write a temporary file beside it, flush it to disk, rename
    it over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(temporary, "wb" if isinstance(content, bytes) else "w") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_document(
    path: Path,
    *,
    format: str,
    versions: range,
    what: str,
    error: type[LrgymError],
    hint: str = "",
) -> dict[str, Any]:
    """Read the JSON object at ``path`` and check its ``"format"`` and ``"version"``.

    Args:
        format: the expected ``"format"`` value.
        versions: the versions this lrgym reads.
        what: how errors name the file (e.g. ``"controller file"``).
        error: the exception class to raise.
        hint: appended to the errors about a damaged or foreign file (what to do).

    Raises:
        error: the file is missing, not readable JSON, not an object of ``format``, or of a
            version outside ``versions``.
    """
    name = str(path)
    suffix = f" {hint}" if hint else ""
    try:
        content = json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} {name!r} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{what} {name!r} is partial or not readable JSON ({exc}).{suffix}") from None
    if not isinstance(content, dict) or content.get("format") != format:
        raise error(f'{name!r} is not an lrgym {what} (no "format": "{format}").{suffix}')
    version = content.get("version")
    if not isinstance(version, int) or version not in versions:
        newer = isinstance(version, int) and version >= versions.stop
        raise error(
            f"{what} {name!r} has format version {version!r}; this lrgym reads versions "
            f"{versions.start} to {versions.stop - 1}"
            + (": upgrade lrgym" if newer else f".{suffix}")
        )
    return content
