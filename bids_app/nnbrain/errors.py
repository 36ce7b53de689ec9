"""Domain errors of nnbrain, each carrying the exit code of the BIDS Apps execution spec.

Every error names the offending path and says what to do; the CLI prints the message and
returns the code (table in ``shared/STYLE.md``).
"""

from __future__ import annotations

from pathlib import Path

EXIT_SUCCESS = 0
EXIT_FAILURE = 1
EXIT_VALIDATION = 16
EXIT_NO_DATA = 18
EXIT_USAGE = 64
EXIT_DATA = 65
EXIT_NO_INPUT = 66
EXIT_CANT_CREATE = 73
EXIT_IO = 74


class NnbrainError(Exception):
    """Base class: a message for the user, an optional path, and an exit code.

    Parameters
    ----------
    message : str
        What is wrong and what to do about it.
    path : str or Path, optional
        The file or directory the message is about; prefixed to the message.
    """

    exit_code: int = EXIT_FAILURE

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.message = message
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class UsageError(NnbrainError):
    """Bad command-line arguments (exit 64)."""

    exit_code = EXIT_USAGE


class BIDSValidationError(NnbrainError):
    """The input dataset failed the official BIDS validator (exit 16)."""

    exit_code = EXIT_VALIDATION


class NoDataError(NnbrainError):
    """The filters (participants, tasks) selected no data (exit 18)."""

    exit_code = EXIT_NO_DATA


class DataError(NnbrainError):
    """Bad content: invalid model spec, inconsistent events, unsafe weights (exit 65)."""

    exit_code = EXIT_DATA


class MissingInputError(NnbrainError):
    """A required input file is missing (exit 66)."""

    exit_code = EXIT_NO_INPUT


class CantCreateError(NnbrainError):
    """The output cannot be created: exists, inside the input, read-only (exit 73)."""

    exit_code = EXIT_CANT_CREATE


class OutputIOError(NnbrainError):
    """An I/O error while writing outputs (exit 74)."""

    exit_code = EXIT_IO


class SpecViolation(NnbrainError):
    """A file was about to be written that ``derivatives_spec/`` does not describe (a bug: exit 1)."""

    exit_code = EXIT_FAILURE
