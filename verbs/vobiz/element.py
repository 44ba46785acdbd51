"""What every Vobiz XML element class shares: allowed children, what its text means, how it is read.

The XML parser (verbs/xml_parser.py) builds one of these per element and hands it the lxml element
through `read_content`, with a `ctx` that records errors at source positions and parses children.
"""
from __future__ import annotations

from typing import ClassVar

from ..base import AttrError, Bool, Enum, Url, Verb, check_url

HTTP = ("http", "https")
WS = ("ws", "wss")

# Reusable attribute types
BOOL = Bool()
METHOD = Enum("GET", "POST", case_insensitive=True)
HTTP_URL = Url(HTTP)


class VobizVerb(Verb):
    """A Vobiz XML element. TEXT: 'none' (no text), 'text', 'url' (http/https) or 'ws_url' (ws/wss)."""
    CHILDREN: ClassVar[tuple] = ()
    TEXT: ClassVar[str] = "none"
    TEXT_REQUIRED: ClassVar[bool] = False

    @property
    def url(self) -> str | None:
        """The cleaned URL of a URL-text element (trimmed, fragment stripped by the parser)."""
        if getattr(self, "_url", None):
            return self._url
        return (self.text.strip() or None) if self.TEXT in ("url", "ws_url") else None

    def placed_in(self, parent_name: str) -> None:
        """Told the parent's element name before the content is read (Record inside Dial)."""

    def read_content(self, element, ctx) -> None:
        """Read the text and children of `element` (lxml) into this verb; errors go to ctx."""
        text = direct_text(element)
        self.children = ctx.parse_children(element, self)
        self.read_text(text, ctx)

    def read_text(self, text: str, ctx) -> None:
        stripped = text.strip()
        if self.TEXT == "none":
            self.text = ""
            if stripped:
                self.warnings.append(f"text inside <{self.name}> is ignored: {stripped[:40]!r}")
            return
        if self.TEXT in ("url", "ws_url"):
            self.text = stripped
            if not stripped:
                ctx.error(self, "the URL (the element's text) is missing")
                return
            try:
                self._url = check_url(stripped, HTTP if self.TEXT == "url" else WS)
            except AttrError as exc:
                ctx.error(self, f"URL: {exc}")
            return
        self.text = stripped
        if self.TEXT_REQUIRED and not stripped and not self.children:
            ctx.error(self, "the text is missing")

    def summary_text(self) -> str:
        return self.url or self.text


def direct_text(element) -> str:
    """The element's own text: its text plus the tails of its children."""
    parts = [element.text or ""]
    for child in element:
        parts.append(child.tail or "")
    return "".join(parts)
