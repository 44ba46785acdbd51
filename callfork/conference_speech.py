"""Speech into a conference room, or to some of its members only, on a profile without a tts-engine
(the stock `default` one): what the Conference REST API's Speak does (callfork/conferences.py).

What FreeSWITCH 1.10.12 does (tests/fixtures/fs-captures/conference-speak.json, mod_conference's
sources):
* the room: `conference <room> play say:{tts_engine=flite,tts_voice=<v>}<text>` speaks into the
  room (conference_say reads the engine and voice from the braces). `conference <room> say ...`
  would do the same but takes its text after the first "say" of the whole command line (strstr),
  room name included, so a room named "essay" would fail; `play` splits its arguments as every
  API does, and the text is one argument (fsargs.quote_api_arg).
* one member: mod_conference has no per-request engine for a member (`saymember` and `play say:...
  <member>` read the profile's engine; without one saymember succeeds and says nothing, and the
  play crashes the switch). A `uuid_broadcast` of `speak` to the member's channel waits behind the
  `conference` app, which callfork runs event-locked (switch_core_session.c does not dequeue a
  broadcast while CF_EVENT_LOCK is set). So the text is rendered first, by a helper loopback
  channel: `originate {RECORD_WRITE_ONLY=true,callfork_speak_text=<text>,...}loopback/m:^:answer^park/default/inline
  'record_session:<wav>,speak:flite|<voice>|${callfork_speak_text}' inline` (the text in a channel
  variable, so no comma or colon of it meets the inline dialplan's splitting); when the helper has
  hung up (`uuid_exists` says false) and FreeSWITCH has closed the WAV, it is played to each member
  with `conference <room> play <wav> <member id>`, which only that member hears, over the room. The
  member hears it as late as the speech is long (the helper speaks in real time). The WAV is
  removed once every play has opened it.
A paused switch (`fsctl pause inbound`, as this node's drain leaves it) creates no inbound channel,
and the helper's second loopback leg is one: the API refuses speech to members then (503,
callfork/conference_api.py, callfork/drain.py) rather than start a helper that never speaks.
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

log = logging.getLogger("callfork.conference")

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


def room_command(room: str, text: str, voice: str) -> str:
    return f"conference {room} play " + quote_api_arg(f"say:{{tts_engine={ENGINE},tts_voice={voice}}}{text}")


class MemberSpeech:
    """Speech rendered by a helper channel and played to some members of a room."""

    def __init__(self, api, directory):
        self.api = api                   # the control connection's `api` (raises on no answer)
        self.directory = directory       # where FreeSWITCH writes the rendered WAV

    def start(self, room: str, member_ids: list[str], text: str, voice: str) -> None:
        """Start rendering `text` (raises SpeechFailed when FreeSWITCH refuses the helper); it is
        played to the members in the background once rendered."""
        helper = str(uuidlib.uuid4())
        path = self.directory / f"speech-{helper}.wav"
        block = variable_block({"origination_uuid": helper, "RECORD_WRITE_ONLY": "true",
                                "callfork_speak_text": text})
        apps = quote_api_arg(f"record_session:{path},speak:{ENGINE}|{voice}|${{callfork_speak_text}}")
        reply = self.api(f"originate {block}loopback/m:^:answer^park/default/inline {apps} inline")
        if not reply.startswith("+OK"):
            raise SpeechFailed(f"the helper channel did not start: {reply.strip()}")
        gevent.spawn(self._play_when_rendered, room, member_ids, helper, path)

    def _play_when_rendered(self, room: str, member_ids: list[str], helper: str, path) -> None:
        try:
            if not self._rendered(helper, path):
                log.error("conference %s: the speech for members %s was not rendered in %.0f s", room,
                          ",".join(member_ids), RENDER_LIMIT_S)
                return
            for member_id in member_ids:
                reply = self.api(f"conference {room} play {path} {member_id}")
                if not reply.startswith("+OK"):
                    log.warning("conference %s: speech to member %s: %s", room, member_id, reply.strip())
        except Exception:
            log.exception("conference %s: speech to members %s failed", room, ",".join(member_ids))
        finally:
            try:
                os.unlink(path)       # each play has opened the file: it keeps its data
            except OSError:
                pass

    def _rendered(self, helper: str, path) -> bool:
        deadline = time.monotonic() + RENDER_LIMIT_S
        while time.monotonic() < deadline:
            if self.api(f"uuid_exists {helper}").strip() != "true" and wav_closed(path):
                return True
            gevent.sleep(0.1)
        self.api(f"uuid_kill {helper}")
        return False
