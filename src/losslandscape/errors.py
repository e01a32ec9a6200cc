"""Errors the user caused and can fix: a setting, an input file, a full disk.

``run.py`` prints them as one line each and exits with code 2, without a traceback
(``HYDRA_FULL_ERROR=1`` shows it); every other exception is a bug and keeps its traceback.
They derive from ``ValueError`` so code that caught the plain ``ValueError`` of a bad setting still does.
"""

from __future__ import annotations


class UserError(ValueError):
    """Something the user can fix; the message names it and what would be right."""


class ConfigError(UserError):
    """One or more bad settings, each one line ``key=value: what would be right``."""

    def __init__(self, *problems: str):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StorageError(UserError):
    """A result could not be written (disk full, no permission); the message says what was kept."""
