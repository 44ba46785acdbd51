"""Vobiz XML (and TwiML) → typed verb objects: hardened lxml parsing, positions, nesting rules, all
errors at once. A `Dialect` says which elements a document may hold and what the dialect is called in
messages; `parse_xml(body, dialect)` parses any of them, `parse_vobiz_xml` is the Vobiz one (TwiML's is
verbs/twiml/parser.py).

Hardening: no DTD (any DOCTYPE is refused before lxml sees the document, so no entity expansion or
external entity can happen), no network, no huge trees, a 100 KB size limit checked first, and a
nesting depth limit. Every problem found is reported with its line and column.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from lxml import etree

from .errors import ErrorDetail, XMLError
from .sniff import KIND_NAMES, read_text
from .vobiz import ELEMENTS, NOT_SUPPORTED, RESPONSE_CHILDREN
from .vobiz.element import VobizVerb

MAX_DEPTH = 8          # Response > Dial > Record > ... never needs more; SSML adds a few levels
MAX_ERRORS = 100

_SCAN = re.compile(r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<\?.*?\?>|<!([A-Za-z]+)|<([A-Za-z_][\w.\-:]*)", re.S)


@dataclass(frozen=True)
class Dialect:
    """An XML dialect: `name` in messages ("Vobiz XML"), `document` ("a Vobiz document"), its
    element classes by name, what <Response> may contain, and the elements callfork refuses with
    their messages; `speech`: the element that text belongs in."""
    name: str
    document: str
    elements: dict
    response_children: tuple
    not_supported: dict
    speech: str = "Speak"


VOBIZ = Dialect("Vobiz XML", "a Vobiz document", ELEMENTS, RESPONSE_CHILDREN, NOT_SUPPORTED)


def parse_vobiz_xml(body) -> tuple[list, list[str]]:
    """Parse a Vobiz XML document; return (verbs, warnings) or raise XMLError listing every problem."""
    return parse_xml(body, VOBIZ)


def parse_xml(body, dialect: Dialect) -> tuple[list, list[str]]:
    """Parse a document of `dialect`; return (verbs, warnings) or raise XMLError listing every problem."""
    text, kind = read_text(body, XMLError, dialect.name)
    if kind != "xml":
        what = KIND_NAMES[kind]
        if kind == "empty":
            raise XMLError(f"the answer is empty; expected {dialect.name} (<Response>...</Response>)")
        raise XMLError(f"the answer is {what}, not {dialect.name} (expected <Response>...</Response>)")
    starts, doctype = _scan(text)
    if doctype:
        line, column = doctype
        raise XMLError(f"DOCTYPE and entity declarations are not allowed in {dialect.name}", line, column)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False,
                             remove_comments=True, remove_pis=True, strip_cdata=True, dtd_validation=False)
    try:
        root = etree.fromstring(text.encode("utf-8") if not _has_encoding_decl(text) else
                                _reencode(text), parser)
    except etree.XMLSyntaxError as exc:
        raise _syntax_error(exc) from None
    return _Builder(root, starts, dialect).build()


def _has_encoding_decl(text: str) -> bool:
    return bool(re.match(r"""\s*<\?xml[^>]*encoding""", text))


def _reencode(text: str) -> bytes:
    """The document as UTF-8 bytes with its declaration saying so (lxml refuses str + encoding)."""
    fixed = re.sub(r"""(<\?xml[^>]*?encoding\s*=\s*)(["'])[^"']*\2""", r"\1\2UTF-8\2", text, count=1)
    return fixed.encode("utf-8")


def _syntax_error(exc) -> XMLError:
    message = re.sub(r",? line \d+, column \d+$", "", exc.msg or str(exc)).strip()
    line, column = exc.position if exc.position else (0, 0)
    if "Excessive depth" in message:
        return XMLError(f"elements are nested too deeply (the limit is {MAX_DEPTH} levels)", line, column)
    return XMLError(f"malformed XML: {message}", line, column)


def _scan(text: str):
    """Positions (line, column) of every start tag in document order, and of a DOCTYPE/ENTITY if any."""
    newlines = [i for i, c in enumerate(text) if c == "\n"]

    def position(offset):
        line = bisect.bisect_left(newlines, offset)
        start = newlines[line - 1] + 1 if line else 0
        return line + 1, offset - start + 1

    starts, doctype = [], None
    for m in _SCAN.finditer(text):
        if m.group(2):
            starts.append((m.group(2), position(m.start())))
        elif m.group(1) and m.group(1).upper() in ("DOCTYPE", "ENTITY", "ELEMENT", "ATTLIST") and doctype is None:
            doctype = position(m.start())
    return starts, doctype


def _local(name: str) -> str:
    return etree.QName(name).localname if name.startswith("{") else name.split(":")[-1]


class _Builder:
    """Walks the lxml tree, builds verbs, and collects errors (the `ctx` the verb classes see)."""

    def __init__(self, root, starts, dialect: Dialect = VOBIZ):
        self.root = root
        self.dialect = dialect
        self.errors: list[ErrorDetail] = []
        self.positions = {}
        elements = list(root.iter())
        self._keep = elements          # keep lxml proxies alive so they stay valid dict keys
        names = [_local(n) for n, _ in starts]
        if len(elements) == len(starts) and all(_local(e.tag) == n for e, n in zip(elements, names)):
            for element, (_, pos) in zip(elements, starts):
                self.positions[element] = pos

    def build(self):
        root = self.root
        name = _local(root.tag)
        if name != "Response":
            line, column = self.position(root)
            raise XMLError(f"the root element is <{name}>; {self.dialect.document}'s root must be <Response>",
                           line, column, name)
        too_deep = self._too_deep(root, 1)
        if too_deep is not None:
            line, column = self.position(too_deep)
            raise XMLError(f"elements are nested too deeply (the limit is {MAX_DEPTH} levels)", line, column,
                           _local(too_deep.tag))
        for attr in root.attrib:
            self.error_at(root, "Response", f"unknown attribute {_local(attr)}; <Response> has no attributes")
        if (root.text or "").strip() or any((c.tail or "").strip() for c in root):
            self.error_at(root, "Response", "text directly inside <Response> is not allowed; "
                                            f"put it in <{self.dialect.speech}> (or another element)")
        verbs = self.parse_children(root, None)
        if self.errors:
            raise XMLError(errors=self.errors[:MAX_ERRORS])
        warnings = []
        for verb in _walk(verbs):
            warnings.extend(f"line {verb.line}:{verb.column}: <{verb.name}>: {w}" for w in verb.warnings)
        return verbs, warnings

    def _too_deep(self, element, depth):
        if depth > MAX_DEPTH:
            return element
        for child in element:
            found = self._too_deep(child, depth + 1)
            if found is not None:
                return found
        return None

    # --- the ctx interface used by the element classes ---
    def position(self, element):
        if element in self.positions:
            return self.positions[element]
        return (element.sourceline or 0), 0

    def local_name(self, element) -> str:
        return _local(element.tag)

    def local_name_of(self, name: str) -> str:
        return _local(name)

    def verb_names(self):
        return self.dialect.elements.keys()

    def error(self, verb, message: str) -> None:
        self.errors.append(ErrorDetail(message, verb.line, verb.column, verb.name))

    def error_at(self, element, name: str, message: str) -> None:
        line, column = self.position(element)
        self.errors.append(ErrorDetail(message, line, column, name))

    def parse_children(self, element, parent: VobizVerb | None) -> list:
        allowed = self.dialect.response_children if parent is None else parent.CHILDREN
        parent_name = "Response" if parent is None else parent.name
        verbs = []
        for child in element:
            verb = self.parse_element(child, parent_name, allowed)
            if verb is not None:
                verbs.append(verb)
        return verbs

    def parse_element(self, element, parent_name: str, allowed):
        tag = _local(element.tag)
        listing = ", ".join(allowed) if allowed else "no elements"
        elements, not_supported = self.dialect.elements, self.dialect.not_supported
        if tag in not_supported:
            self.error_at(element, tag, not_supported[tag])
            return None
        cls = elements.get(tag)
        if cls is None:
            hint = next((f" (did you mean <{n}>?)" for n in elements if n.lower() == tag.lower()), "")
            self.error_at(element, tag, f"unknown element <{tag}>{hint}; allowed inside <{parent_name}>: {listing}")
            return None
        if tag not in allowed:
            self.error_at(element, tag, f"<{tag}> is not allowed inside <{parent_name}>; allowed: {listing}")
            return None
        line, column = self.position(element)
        verb = cls(line, column)
        result = cls.read_attributes({_local(k): v for k, v in element.attrib.items()})
        verb.apply(result)
        for message in result.errors:
            self.error(verb, message)
        verb.placed_in(parent_name)
        verb.read_content(element, self)
        for message in verb.check():
            self.error(verb, message)
        return verb


def _walk(verbs):
    for verb in verbs:
        yield verb
        yield from _walk(verb.children)
