"""Recognising what an answer body is (Vobiz XML, JSON, YAML, HTML, plain text, binary) and decoding it."""
from __future__ import annotations

import codecs
import re

MAX_DOCUMENT_BYTES = 100 * 1024

KIND_NAMES = {"html": "HTML", "json": "JSON", "text": "plain text", "binary": "binary data",
              "empty": "empty", "xml": "XML", "yaml": "YAML"}

_DECL = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._\-]+)["']""")
_LEADING_MISC = re.compile(r"^(\s+|<\?.*?\?>|<!--.*?-->)", re.S)


class BodyError(ValueError):
    """A body that is not text: `.kind` is 'binary'."""
    def __init__(self, message, kind="binary"):
        super().__init__(message)
        self.kind = kind


def size_message(size: int) -> str | None:
    if size > MAX_DOCUMENT_BYTES:
        return f"document is {size} bytes; the limit is 100 KB ({MAX_DOCUMENT_BYTES} bytes)"
    return None


def read_text(body, error, expected: str) -> tuple[str, str]:
    """An answer body as (text, its sniffed kind): within the size limit and decoded (`decode_body`),
    else `error(message)` is raised; `expected` (what the parser wanted) ends an undecodable body's
    message."""
    raw = to_bytes(body)
    too_big = size_message(len(raw))
    if too_big:
        raise error(too_big)
    try:
        text = decode_body(raw)
    except BodyError as exc:
        raise error(f"{exc}; expected {expected}") from None
    return text, sniff(text)


def to_bytes(body) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8", "surrogatepass")
    return bytes(body)


def decode_body(raw: bytes) -> str:
    """Text of a body: BOM or XML-declared encoding, else UTF-8. Raises BodyError for binary data."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                      (codecs.BOM_UTF16_BE, "utf-16-be")):
        if raw.startswith(bom):
            try:
                return raw[len(bom):].decode(name)
            except UnicodeDecodeError:
                raise BodyError("the answer is binary data, not text") from None
    encoding = "utf-8"
    match = _DECL.match(raw)
    if match:
        try:
            encoding = codecs.lookup(match.group(1).decode("ascii")).name
        except LookupError:
            raise BodyError(f"unknown encoding {match.group(1).decode('ascii')!r} in the XML declaration",
                            "text") from None
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        raise BodyError(f"the answer is binary data, not text (not valid {encoding})") from None
    if "\x00" in text or _control_ratio(text) > 0.05:
        raise BodyError("the answer is binary data, not text")
    return text


def _control_ratio(text: str) -> float:
    if not text:
        return 0.0
    sample = text[:4096]
    bad = sum(1 for c in sample if ord(c) < 32 and c not in "\t\r\n")
    return bad / len(sample)


def sniff(text: str) -> str:
    """'empty', 'xml', 'html', 'json', 'yaml' (a mapping-looking YAML document) or 'text'."""
    stripped = text.strip()
    if not stripped:
        return "empty"
    if stripped[0] in "{[":
        return "json"
    if stripped[0] == "<":
        rest = stripped
        while True:
            m = _LEADING_MISC.match(rest)
            if not m or not m.group(0):
                break
            rest = rest[m.end():]
        head = rest[:200].lower()
        if head.startswith("<!doctype html") or re.match(r"<(html|head|body|meta|title|div|p|h1|a)[\s>/]", head):
            return "html"
        return "xml"
    if re.match(r"((\s*#[^\n]*)?\n|\s*---[ \t]*\n)*\s*[\"']?(version|sections)[\"']?\s*:", stripped):
        return "yaml"
    return "text"
