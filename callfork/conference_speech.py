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
  play crashes the switch), and a `uuid_broadcast` of `speak` to the member's channel waits behind
  the `conference` app, which callfork runs event-locked. So the text is rendered to a WAV first, by
  a helper loopback channel (callfork/speech_render.py), then played to each member with
  `conference <room> play <wav> <member id>`, which only that member hears, over the room. The
  member hears it as late as the speech is long (the helper speaks in real time). The WAV is
  removed once every play has opened it.
A paused switch creates no helper (callfork/speech_render.py): the API refuses speech to members
then (503, callfork/conference_api.py, callfork/drain.py) rather than start a helper that never
speaks.
"""
from __future__ import annotations

import logging

import gevent

from fsargs import quote_api_arg

from .speech_render import ENGINE, RenderedSpeech, SpeechFailed, speakable

__all__ = ["MemberSpeech", "SpeechFailed", "room_command", "speakable"]

log = logging.getLogger("callfork.conference")


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
        speech = RenderedSpeech(self.api, self.directory, text, voice)
        gevent.spawn(self._play_when_rendered, room, member_ids, speech)

    def _play_when_rendered(self, room: str, member_ids: list[str], speech: RenderedSpeech) -> None:
        try:
            if not speech.wait():
                log.error("conference %s: the speech for members %s was not rendered in time", room,
                          ",".join(member_ids))
                return
            for member_id in member_ids:
                reply = self.api(f"conference {room} play {speech.path} {member_id}")
                if not reply.startswith("+OK"):
                    log.warning("conference %s: speech to member %s: %s", room, member_id, reply.strip())
        except Exception:
            log.exception("conference %s: speech to members %s failed", room, ",".join(member_ids))
        finally:
            speech.remove()       # each play has opened the file: it keeps its data
