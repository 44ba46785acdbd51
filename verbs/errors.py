"""Typed errors of document parsing: where a problem is (line, column, element) and what it is.

A parser collects every problem of a document as an `ErrorDetail` and raises one exception whose
`.errors` lists them all; the exception's own line/column/element/message are the first one's.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ErrorDetail:
    """One problem found in a document."""
    message: str
    line: int = 0
    column: int = 0
    element: str | None = None
    location: str | None = None     # SWML: "sections.main[2]"
    not_supported: bool = False     # valid input that callfork cannot run (yet)

    def __str__(self) -> str:
        return format_error(self.line, self.column, self.element, self.location, self.message)


def format_error(line, column, element, location, message) -> str:
    parts = [f"line {line}:{column}"]
    if element:
        parts.append(f"<{element}>")
    if location:
        parts.append(location)
    parts.append(message)
    return ": ".join(parts)


class DocumentError(Exception):
    """A document (Vobiz XML or SWML) that cannot be used. `.errors` lists every problem found."""

    def __init__(self, message: str = "", line: int = 0, column: int = 0, element: str | None = None,
                 errors: list[ErrorDetail] | None = None, location: str | None = None):
        if errors:
            first = errors[0]
            message, line, column = first.message, first.line, first.column
            element, location = first.element, first.location
        self.message = message
        self.line = line
        self.column = column
        self.element = element
        self.location = location
        self.errors = list(errors) if errors else [ErrorDetail(message, line, column, element, location)]
        super().__init__(str(self))

    def __str__(self) -> str:
        return format_error(self.line, self.column, self.element, self.location, self.message)

    def describe(self) -> str:
        """Every error, one per line."""
        return "\n".join(str(e) for e in self.errors)

    @property
    def section(self) -> str | None:
        """SWML: the section of the first error (from its location "sections.<name>[i]")."""
        return _split_location(self.location)[0]

    @property
    def index(self) -> int | None:
        """SWML: the step index of the first error in its section."""
        return _split_location(self.location)[1]


def _split_location(location):
    if not location or not location.startswith("sections."):
        return None, None
    rest = location[len("sections."):]
    name, _, idx = rest.partition("[")
    try:
        return name, int(idx.split("]")[0])
    except ValueError:
        return name, None


class XMLError(DocumentError):
    """An invalid Vobiz XML document."""


class SWMLError(DocumentError):
    """An invalid SWML document."""


class NotSupportedError(DocumentError, NotImplementedError):
    """Valid input that callfork cannot run (yet): Dial, Conference, SWML connect to a number, ...

    Raised at parse time (every problem of the document is of this kind) or by `Verb.run`.
    """
