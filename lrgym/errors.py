"""The exceptions lrgym raises.

Every error derives from :class:`LrgymError` and also from the builtin exception a caller would
naturally catch, so ``except ValueError`` keeps working for bad arguments.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path


class LrgymError(Exception):
    """Base class of every error raised by lrgym."""


class InvalidConfigError(LrgymError, ValueError):
    """A configuration value (an env argument, a task range, a controller setting) is invalid."""


class InvalidActionError(LrgymError, ValueError):
    """An action passed to ``env.step`` has the wrong shape, dtype or non-finite entries."""


class UnknownSettingError(LrgymError, TypeError):
    """A keyword argument is no setting of the env (a ``TypeError``, as Python raises for an
    unexpected keyword argument); :meth:`naming` builds one whose message names the close
    matches. It takes a message alone, as ``gym.make`` re-raises it with the env id added."""

    @classmethod
    def naming(cls, key: str, known: Sequence[str], owner: str) -> UnknownSettingError:
        """The error for ``key``, naming the close matches among the ``known`` settings of
        ``owner`` (or listing them all when none is close)."""
        matches = difflib.get_close_matches(key, known)
        if matches:
            hint = "did you mean " + " or ".join(repr(m) for m in matches) + "?"
        else:
            hint = f"the settings of {owner} are " + ", ".join(known)
        return cls(f"unknown env setting {key!r}; {hint}")


class DatasetNotFoundError(LrgymError, FileNotFoundError):
    """A dataset's files are missing and could not be downloaded.

    Attributes:
        dataset: the dataset's name.
        searched: every directory that was searched, in order.
        reason: why no download filled the gap.
    """

    def __init__(self, dataset: str, searched: Sequence[Path], reason: str) -> None:
        self.dataset = dataset
        self.searched = tuple(searched)
        self.reason = reason
        paths = "\n".join(f"  - {p}" for p in self.searched)
        super().__init__(
            f"{dataset} data not found. Searched:\n{paths}\n{reason}\n"
            "Fix: put the files in torchvision's layout under one of these roots, pass "
            "data_root=... (or set LRGYM_DATA_DIR) to the folder that holds them, or allow "
            "download=True on a machine with network access."
        )


class DatasetCorruptError(LrgymError, OSError):
    """A dataset's files exist but cannot be read (truncated, wrong format)."""


class MissingPackageError(LrgymError, ImportError):
    """An optional package a feature needs is not installed; the message names the lrgym extra
    that installs it.

    Attributes:
        package: the missing package's import name.
        extra: the lrgym extra that installs it (``pip install 'lrgym[extra]'``).
    """

    def __init__(self, package: str, extra: str, needed_for: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{needed_for} needs the {package!r} package, which is not installed. "
            f"Fix: pip install 'lrgym[{extra}]'",
            name=package,
        )


def choice_error(field: str, value: object, allowed: Iterable[object]) -> InvalidConfigError:
    """Build the error for a value that is not one of a fixed set of choices."""
    options = ", ".join(repr(a) for a in allowed)
    return InvalidConfigError(f"{field}={value!r} is not supported; allowed values: {options}.")
