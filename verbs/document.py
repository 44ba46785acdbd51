"""A parsed answer document and `parse_document`: Vobiz XML or SWML, chosen by content type, then by
sniffing; TwiML for a Twilio app's calls."""
from __future__ import annotations

from dataclasses import dataclass, field

from .errors import DocumentError, XMLError
from .sniff import KIND_NAMES, BodyError, decode_body, size_message, sniff, to_bytes
from .swml.parser import parse_swml
from .twiml.parser import parse_twiml
from .xml_parser import parse_vobiz_xml

XML_TYPES = ("application/xml", "text/xml")
SWML_TYPES = ("application/json", "application/yaml", "text/x-yaml", "text/yaml", "application/x-yaml")


@dataclass
class Document:
    """kind: 'vobiz', 'swml' or 'twiml'; verbs: the verbs to run (SWML: sections['main']); sections: SWML only;
    warnings: document-level notes and every verb's warnings, each with its position."""
    kind: str
    verbs: list
    sections: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    content_type: str | None = None


def parse_document(body, content_type: str | None = None, allow_insecure_ws: bool = True,
                   api: str = "vobiz") -> Document:
    """Parse an answer body. Raises XMLError / SWMLError / NotSupportedError (all DocumentError).
    A Twilio app (`api="twilio"`) answers with TwiML only, whatever its Content-Type says."""
    raw = to_bytes(body)
    if api == "twilio":
        verbs, warnings = parse_twiml(raw)
        media_type = (content_type or "").split(";")[0].strip().lower() or None
        return Document("twiml", verbs, {}, warnings, media_type)
    media_type = (content_type or "").split(";")[0].strip().lower() or None
    too_big = size_message(len(raw))
    if too_big:
        raise (XMLError if media_type in XML_TYPES else DocumentError)(too_big)
    if media_type in XML_TYPES:
        return _vobiz(raw, media_type, [])
    if media_type in SWML_TYPES:
        return _swml(raw, media_type, [], allow_insecure_ws)
    try:
        kind = sniff(decode_body(raw))
    except BodyError as exc:
        raise DocumentError(f"{exc}; expected Vobiz XML or SWML") from None
    label = f"Content-Type {media_type}" if media_type else "no Content-Type"
    if kind == "xml":
        return _vobiz(raw, media_type, [f"the answer was sent with {label}; it is Vobiz XML, so it should "
                                        "be application/xml or text/xml (Vobiz itself would refuse it)"])
    if kind in ("json", "yaml"):
        return _swml(raw, media_type, [f"the answer was sent with {label}; SWML should be application/json "
                                       "or application/yaml"], allow_insecure_ws)
    if kind == "empty":
        raise DocumentError("the answer is empty; expected Vobiz XML or SWML")
    raise DocumentError(f"the answer is {KIND_NAMES[kind]}, not Vobiz XML or SWML ({label})")


def _vobiz(raw, media_type, warnings) -> Document:
    verbs, verb_warnings = parse_vobiz_xml(raw)
    return Document("vobiz", verbs, {}, warnings + verb_warnings, media_type)


def _swml(raw, media_type, warnings, allow_insecure_ws) -> Document:
    sections, swml_warnings = parse_swml(raw, allow_insecure_ws=allow_insecure_ws)
    return Document("swml", sections.get("main", []), sections, warnings + swml_warnings, media_type)
