"""Exceptions with messages meant for the user (one line, naming the bad key or file)."""

from __future__ import annotations


class TwostageError(Exception):
    """Base class of errors reported to the user without a traceback."""


class ConfigError(TwostageError, ValueError):
    """A configuration key or value is invalid."""


class InputFileError(TwostageError, OSError):
    """An input file is missing, unreadable, or not the expected stage's output."""
