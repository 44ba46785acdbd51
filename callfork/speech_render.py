"""Speech rendered to a WAV file by a helper loopback channel: `RenderedSpeech`, for what must be
played as a file where mod_flite cannot speak at once (to chosen conference members,
callfork/conference_speech.py; to a caller bridged by <Dial>, callfork/live_controls.py).

mod_flite is a speech interface, not a file format (FreeSWITCH's file open takes no `tts://` unless
mod_ssml is loaded, and the stock build does not load it), and a `speak` app sent to a channel with
`uuid_broadcast` waits while the channel runs an event-locked app (switch_core_session.c does not
dequeue a broadcast while CF_EVENT_LOCK is set: tests/fixtures/fs-captures/bridge-broadcast.json,
conference-speak.json). So the text is spoken by a helper channel that records itself:
`originate {RECORD_WRITE_ONLY=true,callfork_speak_text=<text>,...}loopback/m:^:answer^park/default/inline
'record_session:<wav>,speak:flite|<voice>|${callfork_speak_text}' inline` (the text in a channel
variable, so no comma or colon of it meets the inline dialplan's splitting). The WAV is complete
once the helper has hung up (`uuid_exists` says false) and FreeSWITCH has closed it. The helper
speaks in real time, so the file is ready as late as the speech is long.
A paused switch (`fsctl pause inbound`, as this node's drain leaves it) creates no inbound channel,
and the helper's second loopback leg is one: callers refuse speech then (callfork/drain.py).
"""
from __future__ import annotations

import logging
import os
import time
import uuid as uuidlib

import gevent

from fsargs import quote_api_arg
from verbs.conference_recording import wav_closed

from .originate import variable_block

log = logging.getLogger("callfork.speech")

ENGINE = "flite"
RENDER_LIMIT_S = 120.0       # the longest a helper may take to speak its text


class SpeechFailed(Exception):
    """FreeSWITCH refused the speech (its reply is the message)."""


def speakable(text: str) -> str:
    """The text as FreeSWITCH can take it: whitespace collapsed (no control characters reach the API
    line), no `{`/`}` (they cannot be written into originate's variable block) and no leading `#`
    (conference_say reads `#voice#text` as a voice)."""
    text = " ".join(str(text).split()).replace("{", "(").replace("}", ")")
    return text.lstrip("#").strip()


class RenderedSpeech:
    """One text being rendered to `path` by the helper channel `helper`."""

    def __init__(self, api, directory, text: str, voice: str):
        """Start the helper (raises SpeechFailed when FreeSWITCH refuses it). `api` is the control
        connection's `api` (it raises when FreeSWITCH does not answer); `text` is speakable()."""
        self.api = api
        self.helper = str(uuidlib.uuid4())
        self.path = directory / f"speech-{self.helper}.wav"
        self._names = [self.path]
        block = variable_block({"origination_uuid": self.helper, "RECORD_WRITE_ONLY": "true",
                                "callfork_speak_text": text})
        apps = quote_api_arg(f"record_session:{self.path},speak:{ENGINE}|{voice}|${{callfork_speak_text}}")
        reply = api(f"originate {block}loopback/m:^:answer^park/default/inline {apps} inline")
        if not reply.startswith("+OK"):
            raise SpeechFailed(f"the helper channel did not start: {reply.strip()}")

    def wait(self, cancelled=lambda: False) -> bool:
        """Until the WAV is complete (True); False when it was not in RENDER_LIMIT_S or `cancelled()`
        became true, and the helper is then hung up."""
        deadline = time.monotonic() + RENDER_LIMIT_S
        while time.monotonic() < deadline and not cancelled():
            if self.api(f"uuid_exists {self.helper}").strip() != "true" and wav_closed(self.path):
                return True
            gevent.sleep(0.1)
        self.api(f"uuid_kill {self.helper}")
        return False

    def another_name(self):
        """A second path of the complete WAV (a hard link), for a second media bug on one channel:
        FreeSWITCH keys a channel's displaces by their path."""
        path = self.path.with_name(f"{self.path.stem}-{len(self._names)}.wav")
        os.link(self.path, path)
        self._names.append(path)
        return path

    def remove(self) -> None:
        """Delete the WAV and its other names (a file handle FreeSWITCH has opened keeps its data)."""
        for path in self._names:
            try:
                os.unlink(path)
            except OSError:
                pass
