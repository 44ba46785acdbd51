"""`uuid_audio_fork` command lines, built exactly as mod_audio_fork tokenises them, and its replies.

FreeSWITCH splits API arguments on spaces; single quotes group, and a backslash escapes `'`, `"`,
`\\` and turns `\\n \\r \\t \\s` into control characters / a space (switch_utils.c
cleanup_separated_string). drachtio keeps at most 7 tokens, jambonz 10 (freeswitch.md §4.2,
fs-captures/audio-fork-ws-transcript.md §8). So:
- metadata is compact JSON in which every character FreeSWITCH would touch (space, `'`, `\\`,
  control characters, and JSON's own backslash escapes) is written as a `\\uXXXX` escape: the
  token has no space, no quote and no backslash sequence FreeSWITCH interprets, and the text the
  module sends is still the same JSON value;
- free text (`stop`/`send_text`) is escaped with FreeSWITCH's backslash escapes (`\\s` for a space;
  fsargs.quote_api_arg, shared with esl_app);
- the bug name is always given explicitly, so the "metadata if it starts with `{`" heuristic never
  has to guess.
Track mapping (docs/decisions.md, Streams): inbound -> mono; both -> stereo (split); outbound -> stereo, right only.
"""
from __future__ import annotations

import json
import re

from fsargs import quote_api_arg

from .errors import ForkCommandError

__all__ = ["build_fork_command", "fork_start", "fork_stop", "fork_send_text", "fork_pause",
           "fork_resume", "fork_graceful_shutdown", "fork_stop_play", "parse_reply",
           "encode_metadata", "escape_arg", "mix_for_track", "rate_arg", "MAX_METADATA_LEN"]

MAX_METADATA_LEN = 8192  # jambonz MAX_METADATA_LEN
_MIXES = ("mono", "mixed", "stereo")
_SCHEMES = ("ws://", "wss://", "http://", "https://")
_TRACK_MIX = {"inbound": "mono", "both": "stereo", "outbound": "stereo"}
_JSON_ESCAPE = re.compile(r"""\\u[0-9a-fA-F]{4}|\\.|[ ']""")
_BUGNAME = re.compile(r"^[A-Za-z0-9_.:-]+$")


def mix_for_track(track: str) -> str:
    try:
        return _TRACK_MIX[track]
    except KeyError:
        raise ValueError(f"bad track {track!r} (inbound|outbound|both)") from None


def rate_arg(rate: int) -> str:
    """The module's rate argument: `8k`, `16k`, or the number (a multiple of 8000)."""
    if rate == 8000:
        return "8k"
    if rate == 16000:
        return "16k"
    if isinstance(rate, int) and rate > 0 and rate % 8000 == 0:
        return str(rate)
    raise ValueError(f"bad fork sample rate {rate!r} (a multiple of 8000)")


def _json_escape(m: re.Match) -> str:
    tok = m.group(0)
    if tok.startswith("\\u"):
        return tok
    if tok.startswith("\\"):
        ch = json.loads('"' + tok + '"')
    else:
        ch = tok
    return "\\u%04x" % ord(ch)


def encode_metadata(metadata) -> str:
    """Compact JSON (object or array) safe as one FreeSWITCH API token (see module docstring)."""
    if isinstance(metadata, (str, bytes)):
        try:
            metadata = json.loads(metadata)
        except ValueError as exc:
            raise ValueError(f"metadata is not JSON: {exc}") from None
    if not isinstance(metadata, (dict, list)):
        raise ValueError("metadata must be a JSON object or array (the module keys on a leading { or [)")
    text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=True)
    text = _JSON_ESCAPE.sub(_json_escape, text)
    if len(text) > MAX_METADATA_LEN:
        raise ValueError(f"metadata is {len(text)} bytes (max {MAX_METADATA_LEN})")
    return text


def escape_arg(text: str) -> str:
    """Free text (`stop`/`send_text`) as one FreeSWITCH API token (fsargs.quote_api_arg); the
    module has nothing to send for an empty text, so that is refused."""
    if not text:
        raise ValueError("empty text")
    return quote_api_arg(text)


def _check_uuid(uuid: str) -> str:
    if not uuid or any(c.isspace() for c in uuid) or "'" in uuid or "\\" in uuid:
        raise ValueError(f"bad channel uuid {uuid!r}")
    return uuid


def _check_bugname(bugname: str) -> str:
    if not bugname or not _BUGNAME.match(bugname):
        raise ValueError(f"bad bug name {bugname!r} ([A-Za-z0-9_.:-]+)")
    return bugname


def fork_start(uuid: str, url: str, mix: str, rate: int | str, bugname: str, metadata=None,
               bidirectional_rate: int | None = None) -> str:
    """`uuid_audio_fork <uuid> start <url> <mix> <rate> <bugname> [<metadata>] [true true <rate>]`.
    `bidirectional_rate` (jambonz build only) enables streamed audio back into the call."""
    _check_uuid(uuid)
    if not url.lower().startswith(_SCHEMES) or any(c.isspace() for c in url) or "'" in url or "\\" in url:
        raise ValueError(f"bad fork url {url!r}")
    if mix not in _MIXES:
        raise ValueError(f"bad mix {mix!r} ({'|'.join(_MIXES)})")
    rate_s = rate if rate in ("8k", "16k") else rate_arg(rate)
    parts = ["uuid_audio_fork", uuid, "start", url, mix, rate_s, _check_bugname(bugname)]
    if metadata is not None:
        parts.append(encode_metadata(metadata))
    elif bidirectional_rate is not None:
        # jambonz needs the metadata slot filled to reach the bidi args; '' is an empty token
        parts.append("''")
    if bidirectional_rate is not None:
        if not isinstance(bidirectional_rate, int) or bidirectional_rate <= 0 or bidirectional_rate % 8000:
            raise ValueError(f"bad bidirectional rate {bidirectional_rate!r}")
        parts += ["true", "true", str(bidirectional_rate)]
    return " ".join(parts)


def fork_stop(uuid: str, bugname: str, text: str | None = None) -> str:
    parts = ["uuid_audio_fork", _check_uuid(uuid), "stop", _check_bugname(bugname)]
    if text is not None:
        parts.append(escape_arg(text))
    return " ".join(parts)


def fork_send_text(uuid: str, bugname: str, text: str) -> str:
    return " ".join(["uuid_audio_fork", _check_uuid(uuid), "send_text", _check_bugname(bugname),
                     escape_arg(text)])


def fork_pause(uuid: str, bugname: str) -> str:
    return f"uuid_audio_fork {_check_uuid(uuid)} pause {_check_bugname(bugname)}"


def fork_resume(uuid: str, bugname: str) -> str:
    return f"uuid_audio_fork {_check_uuid(uuid)} resume {_check_bugname(bugname)}"


def fork_graceful_shutdown(uuid: str, bugname: str) -> str:
    return f"uuid_audio_fork {_check_uuid(uuid)} graceful-shutdown {_check_bugname(bugname)}"


def fork_stop_play(uuid: str) -> str:
    """jambonz only; note the module always applies it to the default bug `audio_fork`."""
    return f"uuid_audio_fork {_check_uuid(uuid)} stop_play"


_BUILDERS = {"start": fork_start, "stop": fork_stop, "send_text": fork_send_text, "pause": fork_pause,
             "resume": fork_resume, "graceful-shutdown": fork_graceful_shutdown, "stop_play": fork_stop_play}


def build_fork_command(uuid: str, action: str, *args, **kwargs) -> str:
    """Dispatch to the builder of `action` (start, stop, send_text, pause, resume,
    graceful-shutdown, stop_play)."""
    try:
        builder = _BUILDERS[action]
    except KeyError:
        raise ValueError(f"unknown uuid_audio_fork action {action!r}") from None
    return builder(uuid, *args, **kwargs)


def parse_reply(reply: str, command: str = "") -> str:
    """`+OK ...` -> the text after `+OK`; `-ERR ...`, `-USAGE: ...` or anything else ->
    ForkCommandError."""
    text = (reply or "").strip()
    if text.startswith("+OK"):
        return text[3:].strip()
    if text.startswith("-USAGE"):
        raise ForkCommandError(f"uuid_audio_fork usage error: {text}", reply, command)
    if text.startswith("-ERR"):
        raise ForkCommandError(f"uuid_audio_fork failed: {text[4:].strip() or 'no reply'}", reply, command)
    raise ForkCommandError(f"uuid_audio_fork: unexpected reply {text!r}", reply, command)
