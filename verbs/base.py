"""The verb base class and the declarative attribute specs every verb uses.

A verb class lists its attributes as a table of `Attr(xml_name, python_name, type, default, ...)`;
`Verb.read_attributes` turns the raw attribute values of a document (strings from XML, JSON values
from SWML) into typed Python values, collecting every problem instead of stopping at the first.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar
from urllib.parse import urlsplit, urlunsplit


class AttrError(ValueError):
    """A raw attribute value that its type refuses. The message says why."""


class NotSupportedValue(AttrError):
    """A valid value that callfork cannot run (yet), e.g. SWML codec PCMA."""


def _show(raw) -> str:
    text = raw if isinstance(raw, str) else repr(raw)
    if len(text) > 60:
        text = text[:57] + "..."
    return f'"{text}"'


class Bool:
    """true/false, case-insensitive (a JSON boolean is taken as is)."""
    def parse(self, raw, warnings):
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false"):
            return raw.strip().lower() == "true"
        raise AttrError(f"{_show(raw)} is not a boolean; use true or false")

    def describe(self):
        return "true|false"


class Int:
    """An integer in [minimum, maximum]. `clamp`: out-of-range values are clamped and non-integers
    become `minimum` (with a warning) instead of being errors. `words`: accepted non-numeric words."""
    def __init__(self, minimum=None, maximum=None, clamp=False, words=()):
        self.minimum, self.maximum, self.clamp, self.words = minimum, maximum, clamp, tuple(words)

    def parse(self, raw, warnings):
        if isinstance(raw, str) and raw.strip().lower() in self.words:
            return raw.strip().lower()
        value = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, float) and raw.is_integer():
            value = int(raw)
        elif isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d{1,18}\s*", raw):
            value = int(raw)
        elif isinstance(raw, str) and re.fullmatch(r"\s*[+-]?\d+\s*", raw):   # too many digits
            if not self.clamp:
                raise AttrError(f"{_show(raw)} is too large")
            value = -10 ** 18 if raw.strip().startswith("-") else 10 ** 18
        if value is None:
            if self.clamp:
                warnings.append(f"{_show(raw)} is not an integer; using {self.minimum}")
                return self.minimum
            words = "".join(f" or {w}" for w in self.words)
            raise AttrError(f"{_show(raw)} is not an integer{words}")
        low_bad = self.minimum is not None and value < self.minimum
        high_bad = self.maximum is not None and value > self.maximum
        if low_bad or high_bad:
            if self.clamp:
                fixed = self.minimum if low_bad else self.maximum
                warnings.append(f"{_show(raw)} is out of range {self.describe()}; clamped to {fixed}")
                return fixed
            raise AttrError(f"{_show(raw)} is out of range; allowed: {self.describe()}")
        return value

    def describe(self):
        if self.minimum is not None and self.maximum is not None:
            rng = f"{self.minimum}..{self.maximum}"
        elif self.minimum is not None:
            rng = f">= {self.minimum}"
        elif self.maximum is not None:
            rng = f"<= {self.maximum}"
        else:
            rng = "integer"
        return rng + "".join(f" or {w}" for w in self.words)


class Float:
    """A number in [minimum, maximum]."""
    def __init__(self, minimum=None, maximum=None):
        self.minimum, self.maximum = minimum, maximum

    def parse(self, raw, warnings):
        value = None
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            value = float(raw)
        elif isinstance(raw, str) and re.fullmatch(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)\s*", raw):
            value = float(raw)
        if value is None or not math.isfinite(value):
            raise AttrError(f"{_show(raw)} is not a number")
        if (self.minimum is not None and value < self.minimum) or (self.maximum is not None and value > self.maximum):
            raise AttrError(f"{raw} is out of range; allowed: {self.describe()}")
        return value

    def describe(self):
        return f"{self.minimum}..{self.maximum}"


class Enum:
    """One of a fixed set of strings; the canonical spelling is returned."""
    def __init__(self, *values, case_insensitive=False, aliases=None):
        self.values, self.case_insensitive = tuple(values), case_insensitive
        self.aliases = dict(aliases or {})

    def parse(self, raw, warnings):
        if isinstance(raw, str):
            key = raw.strip()
            for value in self.values:
                if key == value or (self.case_insensitive and key.lower() == value.lower()):
                    return value
            for alias, value in self.aliases.items():
                if key == alias or (self.case_insensitive and key.lower() == alias.lower()):
                    return value
        raise AttrError(f"{_show(raw)} is not allowed; allowed: {self.describe()}")

    def describe(self):
        return ", ".join(v if v else '""' for v in self.values)


class Url:
    """An absolute URL: trimmed, `#fragment` stripped, scheme in `schemes`, with a host."""
    def __init__(self, schemes=("http", "https")):
        self.schemes = tuple(schemes)

    def parse(self, raw, warnings):
        if not isinstance(raw, str):
            raise AttrError(f"{_show(raw)} is not a URL")
        return check_url(raw, self.schemes)

    def describe(self):
        return "/".join(self.schemes) + " URL"


def check_url(raw: str, schemes) -> str:
    """Trim, strip the fragment, check scheme and host; return the clean URL or raise AttrError."""
    text = raw.strip()
    if not text:
        raise AttrError("the URL is empty")
    if "${" in text or "%{" in text:
        raise AttrError(f"{_show(text)}: variables (${{...}}) are not supported by callfork yet")
    if any(c.isspace() for c in text):
        raise AttrError(f"{_show(text)} is not a URL (it contains whitespace)")
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        raise AttrError(f"{_show(text)} is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        allowed = ", ".join(s + "://" for s in schemes)
        got = f"scheme {scheme}://" if scheme else "no scheme"
        raise AttrError(f"{_show(text)} has {got}; allowed: {allowed}")
    if not parts.hostname:
        raise AttrError(f"{_show(text)} has no host")
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


class Text:
    """A string, optionally with a length limit (bytes, UTF-8) and a full-match pattern."""
    def __init__(self, max_bytes=None, pattern=None, pattern_desc=None, strip=True, nonempty=False):
        self.max_bytes, self.strip, self.nonempty = max_bytes, strip, nonempty
        self.pattern = re.compile(pattern) if pattern else None
        self.pattern_desc = pattern_desc or pattern

    def parse(self, raw, warnings):
        if isinstance(raw, bool) or not isinstance(raw, (str, int, float)):
            raise AttrError(f"{_show(raw)} is not a string")
        text = str(raw)
        if self.strip:
            text = text.strip()
        if self.nonempty and not text:
            raise AttrError("must not be empty")
        if self.max_bytes is not None and len(text.encode("utf-8")) > self.max_bytes:
            raise AttrError(f"is {len(text.encode('utf-8'))} bytes; the limit is {self.max_bytes}")
        if self.pattern and not self.pattern.fullmatch(text):
            raise AttrError(f"{_show(text)} is not valid: {self.pattern_desc}")
        return text

    def describe(self):
        return "string"


class Custom:
    """A value read by a function `fn(raw, warnings) -> value` that raises AttrError."""
    def __init__(self, fn: Callable, description="value"):
        self.fn, self.description = fn, description

    def parse(self, raw, warnings):
        return self.fn(raw, warnings)

    def describe(self):
        return self.description


@dataclass(frozen=True)
class Attr:
    """One attribute of a verb: its name in the document, its Python name, type, default."""
    xml: str
    py: str
    type: Any
    default: Any = None
    required: bool = False
    aliases: tuple = ()
    ignored: str | None = None   # accepted but has no effect: the reason, recorded as a warning


@dataclass
class ReadResult:
    values: dict = field(default_factory=dict)
    present: set = field(default_factory=set)
    errors: list = field(default_factory=list)      # messages
    unsupported: list = field(default_factory=list)  # messages about valid values callfork cannot run
    failed: set = field(default_factory=set)         # Python names whose value was refused
    warnings: list = field(default_factory=list)


class Verb:
    """Base of every verb: name, source position, typed attributes, children, text, warnings."""
    name: ClassVar[str] = "Verb"
    ATTRIBUTES: ClassVar[tuple] = ()
    FIXED: ClassVar[dict] = {}          # Python attributes with a fixed value for this class

    def __init__(self, line: int = 0, column: int = 0, text: str = "", children=None, **values):
        self.line = line
        self.column = column
        self.text = text
        self.children = list(children or [])
        self.warnings: list[str] = []
        self.present: set[str] = set()   # Python names of the attributes the document gave
        self.failed: set[str] = set()    # Python names of attributes the document gave wrongly
        for key, value in self.FIXED.items():
            setattr(self, key, value)
        for spec in self.ATTRIBUTES:
            setattr(self, spec.py, spec.default)
        known = {s.py for s in self.ATTRIBUTES} | set(self.FIXED)
        for key, value in values.items():
            if key not in known:
                raise TypeError(f"{type(self).__name__} has no attribute {key!r}")
            setattr(self, key, value)
            self.present.add(key)

    @classmethod
    def attribute_names(cls) -> list[str]:
        return [s.xml for s in cls.ATTRIBUTES]

    @classmethod
    def read_attributes(cls, raw: dict) -> ReadResult:
        """Typed values for the raw attributes `raw` (document name -> raw value)."""
        result = ReadResult()
        by_name = {}
        for spec in cls.ATTRIBUTES:
            by_name[spec.xml] = spec
            for alias in spec.aliases:
                by_name[alias] = spec
        seen: dict[str, str] = {}
        for name, value in raw.items():
            spec = by_name.get(name) if isinstance(name, str) else None
            if spec is None:
                result.errors.append(unknown_name_message("attribute", str(name), cls.attribute_names()))
                continue
            if spec.py in seen:
                result.errors.append(f"{name} and {seen[spec.py]} are the same attribute; give only one")
                continue
            seen[spec.py] = name
            if spec.ignored:
                result.warnings.append(f"{name} is ignored: {spec.ignored}")
            notes: list[str] = []
            try:
                result.values[spec.py] = spec.type.parse(value, notes)
                result.present.add(spec.py)
            except NotSupportedValue as exc:
                result.unsupported.append(f"{name}: {exc}")
                result.failed.add(spec.py)
            except AttrError as exc:
                result.errors.append(f"{name}: {exc}")
                result.failed.add(spec.py)
            result.warnings.extend(f"{name}: {n}" for n in notes)
        for spec in cls.ATTRIBUTES:
            if spec.required and spec.py not in seen:
                result.errors.append(f"{spec.xml} is required")
                result.failed.add(spec.py)
        return result

    def apply(self, result: ReadResult) -> None:
        for key, value in result.values.items():
            setattr(self, key, value)
        self.present |= result.present
        self.failed |= result.failed
        self.warnings.extend(result.warnings)

    def ok(self, *names: str) -> bool:
        """True when none of these attributes was refused (so a rule across them can be checked)."""
        return not self.failed.intersection(names)

    def check(self) -> list[str]:
        """Rules across attributes, text and children; returns error messages (may add warnings).
        Rules guard themselves with `self.ok(...)` so a refused value does not cause a second error."""
        return []

    def summary(self) -> str:
        """One line: the name, the text, and the attributes the document gave."""
        parts = [self.name]
        text = self.summary_text()
        if text:
            parts.append(text)
        for spec in self.ATTRIBUTES:
            if spec.py in self.present:
                parts.append(f"{spec.xml}={format_value(getattr(self, spec.py))}")
        return " ".join(parts)

    def summary_text(self) -> str:
        return self.text

    def run(self, call):
        raise NotImplementedError(f"{self.name} execution is not implemented yet")

    def stop(self):
        """Stop a running verb (hangup, barge-in). Nothing to do by default."""

    def __repr__(self):
        return f"<{type(self).__name__} {self.summary()!r} line {self.line}:{self.column}>"


def format_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value)


def unknown_name_message(kind: str, name: str, allowed) -> str:
    allowed = list(allowed)
    hint = ""
    for candidate in allowed:
        if candidate.lower() == name.lower():
            hint = f" (did you mean {candidate}?)"
            break
    listing = ", ".join(allowed) if allowed else "none"
    return f"unknown {kind} {name}{hint}; allowed: {listing}"
