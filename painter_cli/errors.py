"""The one domain exception type. ``cli.py`` turns it into a one-line message and exit code 1."""

from __future__ import annotations


class PainterError(Exception):
    """A user-facing error: ``message`` says what is wrong (naming the file), ``hint`` what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"
