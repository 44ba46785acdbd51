"""`callfork validate FILE|URL [--api twilio]`: parse a document and report every error, or summarise its
verbs. `--api twilio` reads it as TwiML (a Twilio number's documents); nothing is sniffed for that."""
from __future__ import annotations

import os
from urllib.parse import urlsplit

import requests

from .document import parse_document
from .errors import DocumentError, NotSupportedError
from .sniff import MAX_DOCUMENT_BYTES

CONTENT_TYPES = {".xml": "application/xml", ".json": "application/json", ".yaml": "application/yaml",
                 ".yml": "application/yaml"}
FETCH_TIMEOUT = (3, 10)   # connect, read (seconds)
KIND_NAMES = {"vobiz": "Vobiz XML", "swml": "SWML", "twiml": "TwiML"}


def validate_source(source: str, api: str = "vobiz") -> tuple[int, str]:
    """(exit code, text): 0 and a verb summary when the document is valid, 1 and every error otherwise.
    `api`: "vobiz" (Vobiz XML or SWML, told apart as a call tells them) or "twilio" (TwiML only)."""
    loaded = _load(source)
    if isinstance(loaded, str):
        return 1, f"{source}: {loaded}"
    body, content_type = loaded
    try:
        document = parse_document(body, content_type, api=api)
    except DocumentError as exc:
        kind = "not supported" if isinstance(exc, NotSupportedError) else "invalid"
        count = len(exc.errors)
        lines = [f"{source}: {kind}: {count} error{'s' if count != 1 else ''}"]
        lines += [f"  {error}" for error in exc.errors]
        return 1, "\n".join(lines)
    name = KIND_NAMES[document.kind]
    lines = [f"{source}: valid {name}, {len(document.verbs)} verb{'s' if len(document.verbs) != 1 else ''}"]
    if document.kind == "swml":
        for section, verbs in document.sections.items():
            lines.append(f"  section {section}:")
            lines += _summaries(verbs, 2)
    else:
        lines += _summaries(document.verbs, 1)
    if document.warnings:
        lines.append("warnings:")
        lines += [f"  {w}" for w in document.warnings]
    return 0, "\n".join(lines)


def _summaries(verbs, depth):
    lines = []
    for verb in verbs:
        lines.append(f"{'  ' * depth}{verb.line}:{verb.column} {verb.summary()}")
        lines += _summaries(verb.children, depth + 1)
    return lines


def _load(source: str):
    """(body, content type) or an error string."""
    scheme = urlsplit(source).scheme.lower()
    if scheme in ("http", "https"):
        try:
            response = requests.get(source, timeout=FETCH_TIMEOUT, stream=True)
            body = response.raw.read(MAX_DOCUMENT_BYTES + 1, decode_content=True)
            response.close()
        except requests.RequestException as exc:
            return f"cannot fetch: {exc}"
        except Exception as exc:   # urllib3 read errors (timeouts, resets) during raw.read
            return f"cannot fetch: {exc}"
        if response.status_code >= 400:
            return f"cannot fetch: HTTP {response.status_code} {response.reason}"
        return body, response.headers.get("Content-Type")
    if scheme and len(scheme) > 1:
        return f"unsupported scheme {scheme}://; give a file path or an http(s) URL"
    try:
        with open(source, "rb") as handle:
            body = handle.read(MAX_DOCUMENT_BYTES + 1)
            if len(body) > MAX_DOCUMENT_BYTES:
                size = os.path.getsize(source)
                return f"document is {size} bytes; the limit is 100 KB ({MAX_DOCUMENT_BYTES} bytes)"
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    return body, CONTENT_TYPES.get(os.path.splitext(source)[1].lower())
