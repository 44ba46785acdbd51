"""Twilio-shaped identifiers for callfork's own ones: a Call SID is `CA` + the FreeSWITCH call UUID's 32
hex digits, so either can be turned into the other without a table (a stream's is `MZ` + its id's
digits, a recording's `RE` + its id's).
"""
from __future__ import annotations

import re
import uuid as uuidlib

_SID = re.compile(r"(?P<prefix>[A-Z]{2})(?P<hex>[0-9a-fA-F]{32})")


def sid(prefix: str, ident: str) -> str:
    """`prefix` + the 32 hex digits of a UUID-shaped `ident` (ValueError for anything else)."""
    return prefix + uuidlib.UUID(str(ident)).hex


def call_sid(call_uuid: str) -> str:
    return sid("CA", call_uuid)


def stream_sid(stream_id: str) -> str:
    return sid("MZ", stream_id)


def recording_sid(recording_id: str) -> str:
    return sid("RE", recording_id)


def ident_of(text: str, prefix: str) -> str | None:
    """The UUID behind `text`: a SID with `prefix`, or the UUID itself; None for anything else."""
    text = str(text or "").strip()
    match = _SID.fullmatch(text)
    if match:
        return str(uuidlib.UUID(match["hex"])) if match["prefix"] == prefix else None
    try:
        return str(uuidlib.UUID(text)) if len(text) == 36 else None
    except ValueError:
        return None


def call_uuid(text: str) -> str | None:
    """The call UUID a Call SID (or the UUID itself) names; None when it names no call."""
    return ident_of(text, "CA")


def recording_url(public_url: str, recording_id: str) -> str:
    """A recording's RecordingUrl as Twilio gives it: no extension (the file as written); an app may
    append `.wav` or `.mp3` (callfork/recording_files.py serves either)."""
    return f"{public_url.rstrip('/')}/recordings/{recording_id}"
