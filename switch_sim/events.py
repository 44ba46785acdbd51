"""Event objects and their wire serialization (plain and json), as mod_event_socket sends them.

Owns: the `Event` header list (insertion order kept, duplicates allowed, as switch_event_t), the standard
header block every event starts with (`switch_event_prep_for_delivery_detailed`: Event-Name, Core-UUID,
FreeSWITCH-Hostname ... Event-Sequence; a CUSTOM event carries `Event-Subclass` *before* Event-Name, as
in the captures), and the framing:

* plain: ``Name: <url-encoded value>`` per header, ``_undef_`` for an empty value, then either ``\\n``
  or ``Content-Length: n\\n\\n<body>``; framed as ``Content-Length: N\\nContent-Type: text/event-plain\\n\\n``
  (Content-Length BEFORE Content-Type);
* json: one flat object (duplicate keys kept, as cJSON does; compact separators; an `ARRAY::a|:b`
  value as a JSON array), plus
  ``"Content-Length": "<n>"`` and ``"_body"`` when there is a body; framed with ``text/event-json``.

Approximated: `Event-Calling-File/Function/Line-Number` come from a table built from the captures; for
events not in the captures the values are plausible FreeSWITCH source locations, not verified ones.
XML event format is not implemented (subscribing with `event xml` is answered with an error).
"""
from __future__ import annotations

import json
import time
from email.utils import formatdate

from .urlenc import url_encode

# (file, function, line) per event name, from the captures where available.
CALLING_LOCATIONS = {
    'CHANNEL_ANSWER': ('switch_channel.c', 'switch_channel_perform_mark_answered', '3846'),
    'CHANNEL_CALLSTATE': ('switch_channel.c', 'switch_channel_perform_set_callstate', '301'),
    'CHANNEL_DATA': ('mod_event_socket.c', 'parse_command', '2021'),
    'CHANNEL_EXECUTE': ('switch_core_session.c', 'switch_core_session_exec', '2944'),
    'CHANNEL_EXECUTE_COMPLETE': ('switch_core_session.c', 'switch_core_session_exec', '2967'),
    'CHANNEL_HANGUP': ('switch_channel.c', 'switch_channel_perform_hangup', '3445'),
    'CHANNEL_HANGUP_COMPLETE': ('switch_core_state_machine.c', 'switch_core_session_reporting_state', '943'),
    'CHANNEL_PARK': ('switch_ivr.c', 'switch_ivr_park', '1002'),
    'CHANNEL_STATE': ('switch_channel.c', 'switch_channel_perform_set_running_state', '2408'),
    'CHANNEL_UNPARK': ('switch_ivr.c', 'switch_ivr_park', '1213'),
    'DTMF': ('switch_channel.c', 'switch_channel_dequeue_dtmf', '677'),
    'MEDIA_BUG_START': ('switch_core_media_bug.c', 'switch_core_media_bug_add', '1014'),
    'MEDIA_BUG_STOP': ('switch_core_media_bug.c', 'switch_core_media_bug_destroy', '84'),
    'PLAYBACK_START': ('switch_ivr_play_say.c', 'switch_ivr_play_file', '1646'),
    'PLAYBACK_STOP': ('switch_ivr_play_say.c', 'switch_ivr_play_file', '2020'),
    'PRIVATE_COMMAND': ('switch_ivr.c', 'switch_ivr_parse_next_event', '804'),
    'RECORD_START': ('switch_ivr_async.c', 'record_callback', '1481'),
    'RECORD_STOP': ('switch_ivr_async.c', 'send_record_stop_event', '1240'),
    'CUSTOM': ('mod_audio_fork.c', 'responseHandler', '22'),
    # not in the captures (approximated):
    'CHANNEL_CREATE': ('switch_core_state_machine.c', 'switch_core_session_run', '626'),
    'CHANNEL_DESTROY': ('switch_core_session.c', 'switch_core_session_perform_destroy', '1691'),
    'CHANNEL_PROGRESS': ('switch_channel.c', 'switch_channel_perform_mark_ring_ready_value', '3502'),
    'CHANNEL_PROGRESS_MEDIA': ('switch_channel.c', 'switch_channel_perform_mark_pre_answered', '3599'),
    'CHANNEL_ORIGINATE': ('switch_ivr_originate.c', 'switch_ivr_originate', '3870'),
    'CHANNEL_OUTGOING': ('switch_core_session.c', 'switch_core_session_outgoing_channel', '727'),
    'CALL_UPDATE': ('switch_channel.c', 'switch_channel_flip_cid', '3285'),
    'BACKGROUND_JOB': ('mod_event_socket.c', 'api_exec', '1572'),
    'API': ('switch_loadable_module.c', 'switch_api_execute', '2919'),
    'RECORD_START/record': ('switch_ivr_play_say.c', 'switch_ivr_record_file_event', '770'),
    'RECORD_STOP/record': ('switch_ivr_play_say.c', 'switch_ivr_record_file_event', '1038'),
}


def header_value(headers, name: str, default=None):
    """The first value of `name` (case-insensitive) in an ordered list of (name, value) headers."""
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return default


class Event:
    """An ordered list of (name, value) headers plus an optional body (str)."""

    __slots__ = ('headers', 'body', '_frames')

    def __init__(self, headers=None, body: str | None = None):
        self.headers: list[tuple[str, str]] = list(headers or [])
        self.body = body
        self._frames: dict | None = None

    def cached_frame(self, fmt: str = 'plain') -> bytes:
        """frame(fmt), computed once per format (an event is not changed after it was fired)."""
        if self._frames is None:
            self._frames = {}
        data = self._frames.get(fmt)
        if data is None:
            data = self._frames[fmt] = self.frame(fmt)
        return data

    def add(self, name: str, value) -> None:
        self.headers.append((name, '' if value is None else str(value)))

    def get(self, name: str, default=None):
        return header_value(self.headers, name, default)

    @property
    def name(self) -> str:
        return self.get('Event-Name', '')

    @property
    def subclass(self):
        return self.get('Event-Subclass')

    def serialize_plain(self) -> str:
        parts = []
        for key, value in self.headers:
            parts.append('%s: %s\n' % (key, url_encode(value) if value != '' else '_undef_'))
        if self.body:
            body = self.body
            parts.append('Content-Length: %d\n\n%s' % (len(body.encode('utf-8')), body))
        else:
            parts.append('\n')
        return ''.join(parts)

    def serialize_json(self) -> str:
        # an array header (a channel variable pushed more than once, kept as `ARRAY::a|:b` as plain
        # shows it) is a JSON array, as switch_event_serialize_json_obj writes it
        items = ['%s:%s' % (json.dumps(k, ensure_ascii=False),
                            json.dumps(v[7:].split('|:') if v.startswith('ARRAY::') else v, ensure_ascii=False))
                 for k, v in self.headers]
        if self.body:
            items.append('"Content-Length":%s' % json.dumps(str(len(self.body.encode('utf-8')))))
            items.append('"_body":%s' % json.dumps(self.body, ensure_ascii=False))
        return '{' + ','.join(items) + '}'

    def frame(self, fmt: str = 'plain') -> bytes:
        """The bytes mod_event_socket writes for this event in format `fmt` ('plain' or 'json')."""
        if fmt == 'json':
            payload = self.serialize_json().encode('utf-8')
            ctype = 'text/event-json'
        else:
            payload = self.serialize_plain().encode('utf-8')
            ctype = 'text/event-plain'
        return b'Content-Length: %d\nContent-Type: %s\n\n' % (len(payload), ctype.encode()) + payload


class EventFactory:
    """Builds events with the standard header block of one simulated switch (Core-UUID, sequence...)."""

    def __init__(self, core_uuid: str, hostname: str = 'sim', ipv4: str = '127.0.0.1', ipv6: str = '::1'):
        self.core_uuid = core_uuid
        self.hostname = hostname
        self.ipv4 = ipv4
        self.ipv6 = ipv6
        self._sequence = 0

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def new(self, name: str, subclass: str | None = None, location: str | None = None,
            now: float | None = None, prefix_headers=()) -> Event:
        """A fresh event with the standard headers; `location` picks the Event-Calling-* entry."""
        now = time.time() if now is None else now
        ev = Event(prefix_headers)
        if subclass:
            ev.add('Event-Subclass', subclass)
        ev.add('Event-Name', name)
        ev.add('Core-UUID', self.core_uuid)
        ev.add('FreeSWITCH-Hostname', self.hostname)
        ev.add('FreeSWITCH-Switchname', self.hostname)
        ev.add('FreeSWITCH-IPv4', self.ipv4)
        ev.add('FreeSWITCH-IPv6', self.ipv6)
        ev.add('Event-Date-Local', time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now)))
        ev.add('Event-Date-GMT', formatdate(now, usegmt=True))
        ev.add('Event-Date-Timestamp', int(now * 1_000_000))
        loc = CALLING_LOCATIONS.get(location or name) or CALLING_LOCATIONS.get(name) \
            or ('switch_event.c', 'switch_event_fire_detailed', '0')
        ev.add('Event-Calling-File', loc[0])
        ev.add('Event-Calling-Function', loc[1])
        ev.add('Event-Calling-Line-Number', loc[2])
        ev.add('Event-Sequence', self.next_sequence())
        return ev
