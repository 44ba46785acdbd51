"""ESL frames as Python objects: `ESLEvent` (one frame FreeSWITCH sent) and `ESLParser`
(incremental, byte-exact framing of the FreeSWITCH -> client byte stream).

Framing rules (as FreeSWITCH's mod_event_socket.c and switch_event.c write frames): a header block
ends at the first empty line;
if it carries `Content-Length: N`, exactly N body bytes follow (no trailing newline guaranteed).
`text/event-plain` bodies are a serialized event: URL-encoded `Name: value` lines, an empty line,
and, when the event has a body, an inner `Content-Length` and that many bytes. `text/event-json`
is one flat JSON object (body under `_body`). The `connect` reply of an outbound socket is a
CHANNEL_DATA event serialized without outer framing. Nothing here touches a socket.

Both event formats give callers the same `ESLEvent` (switch_event.c: `switch_event_serialize` vs
`switch_event_serialize_json_obj`): headers are str, the first of a repeated name wins (both formats
repeat e.g. Hangup-Cause on hangup events); a multi-value header, which json sends as an array, reads
as plain shows it (`ARRAY::a|:b`, a one-element array as its element); an empty json body (json
writes `"Content-Length":"0","_body":""`, plain writes neither) is no body. The one difference left
is plain's own loss: it passes an existing `%XX` in a value through unencoded, so the decoded plain
value differs from the real one, while json carries it verbatim.
"""
import json
import logging
from urllib.parse import unquote
from xml.etree import ElementTree

from .errors import ESLProtocolError

log = logging.getLogger(__name__)

MAX_CONTENT_LENGTH = 16 * 1024 * 1024     # FreeSWITCH's own limit (mod_event_socket MAX_CONTENT_LENGTH)
MAX_HEADER_BLOCK = 10 * 1024 * 1024       # FreeSWITCH cuts header blocks longer than this


def _parse_header_lines(block, url_decode):
    """`Name: value` lines (bytes) -> dict; first occurrence of a name wins."""
    headers = {}
    for raw_line in block.split(b'\n'):
        if raw_line.endswith(b'\r'):
            raw_line = raw_line[:-1]
        if not raw_line:
            continue
        line = raw_line.decode('utf-8', 'replace')
        name, sep, value = line.partition(': ')
        if not sep:
            name, sep, value = line.partition(':')
            if not sep:
                log.debug('ESL header line without a colon ignored: %r', line[:200])
                continue
            value = value.lstrip(' ')
        name = name.strip()
        if url_decode:
            value = unquote(value)
        if name and name not in headers:
            headers[name] = value
    return headers


def _decode_body(raw):
    return raw.decode('utf-8', 'replace')


class ESLEvent:
    """One frame from FreeSWITCH.

    For event frames (`text/event-plain|json|xml`) `.headers` are the event's own headers
    (URL-decoded; the same view for plain and json, see the module docstring) and `.body` the
    event body (e.g. BACKGROUND_JOB output, mod_audio_fork JSON).
    For replies (`command/reply`, `api/response`, `text/disconnect-notice`, ...) `.headers` are the
    frame headers and `.body` the Content-Length body. The outbound `connect` reply (a CHANNEL_DATA
    event without outer framing) has its values URL-decoded too. `.outer_headers` always holds
    the frame headers as sent; `.raw_body` the event body bytes. `.parse_error` is set (and the
    headers may be partial) when an event body could not be decoded.
    """

    __slots__ = ('headers', 'outer_headers', 'body', 'raw_body', 'parse_error')

    def __init__(self, headers=None, body=None, outer_headers=None, raw_body=None, parse_error=None):
        self.headers = headers if headers is not None else {}
        self.outer_headers = outer_headers if outer_headers is not None else self.headers
        self.body = body
        self.raw_body = raw_body
        self.parse_error = parse_error

    @property
    def content_type(self):
        return self.outer_headers.get('Content-Type')

    @property
    def name(self):
        return self.headers.get('Event-Name')

    @property
    def subclass(self):
        return self.headers.get('Event-Subclass')

    @property
    def reply_text(self):
        return self.outer_headers.get('Reply-Text')

    @property
    def is_event(self):
        return self.content_type in ('text/event-plain', 'text/event-json', 'text/event-xml')

    def get(self, key, default=None):
        return self.headers.get(key, default)

    def __getitem__(self, key):
        return self.headers[key]

    def __contains__(self, key):
        return key in self.headers

    def json(self):
        """The body parsed as JSON, or None (no body, or not JSON)."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __repr__(self):
        what = self.name or self.content_type
        if self.subclass:
            what = '%s %s' % (what, self.subclass)
        return '<ESLEvent %s%s>' % (what, ' body=%d' % len(self.raw_body) if self.raw_body else '')


def build_event(head, body):
    """One frame (header block bytes without the blank line, body bytes) -> ESLEvent."""
    outer = _parse_header_lines(head, url_decode=False)
    content_type = outer.get('Content-Type')
    if content_type == 'text/event-plain':
        return _event_plain(outer, body)
    if content_type == 'text/event-json':
        return _event_json(outer, body)
    if content_type == 'text/event-xml':
        return _event_xml(outer, body)
    if 'Event-Name' in outer:
        # the outbound `connect` reply: a serialized CHANNEL_DATA event without outer framing
        outer = _parse_header_lines(head, url_decode=True)
    has_body = 'Content-Length' in outer
    return ESLEvent(headers=outer, outer_headers=outer,
                    body=_decode_body(body) if has_body else None,
                    raw_body=body if has_body else None)


def _event_plain(outer, data):
    head, sep, rest = data.partition(b'\n\n')
    headers = _parse_header_lines(head, url_decode=True)
    raw_body = None
    error = None
    if 'Content-Length' in headers:
        try:
            length = int(headers['Content-Length'])
            if length < 0:
                raise ValueError(length)
        except ValueError:
            error = 'bad inner Content-Length %r' % headers['Content-Length']
            length = len(rest)
        raw_body = rest[:length]
        if len(raw_body) < length:
            error = 'inner body shorter than its Content-Length (%d < %d)' % (len(raw_body), length)
    return ESLEvent(headers=headers, outer_headers=outer,
                    body=_decode_body(raw_body) if raw_body is not None else None,
                    raw_body=raw_body, parse_error=error)


def _first_wins(pairs):
    """json object_pairs_hook: a dict in which the first of a repeated name wins (as in plain)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        obj = {}
        for name, value in pairs:
            if name not in obj:
                obj[name] = value
    return obj


# one decoder for every event (json.loads with a hook would build a new one per call)
_EVENT_JSON = json.JSONDecoder(object_pairs_hook=_first_wins)


def _json_header_value(value):
    """A json header value as plain shows it: FreeSWITCH only sends strings and, for multi-value
    headers, arrays of strings (plain: `ARRAY::a|:b`; with one element, that element)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        items = [v if isinstance(v, str) else json.dumps(v) for v in value]
        if len(items) == 1:
            return items[0]
        return 'ARRAY::' + '|:'.join(items) if items else ''
    return json.dumps(value)


def _event_json(outer, data):
    try:
        headers = _EVENT_JSON.decode(data.decode('utf-8', 'replace'))
        if not isinstance(headers, dict):
            raise ValueError('event JSON is not an object')
    except ValueError as exc:
        return ESLEvent(headers={}, outer_headers=outer, body=None, raw_body=data,
                        parse_error='bad text/event-json body: %s' % exc)
    body = headers.pop('_body', None)
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)
    if len(set(map(type, headers.values())) - {str}):       # arrays (rare): the slow path
        for name, value in headers.items():
            headers[name] = _json_header_value(value)
    if body == '':
        body = None
        if headers.get('Content-Length') == '0':
            del headers['Content-Length']
    return ESLEvent(headers=headers, outer_headers=outer, body=body,
                    raw_body=body.encode('utf-8') if body is not None else None)


def _event_xml(outer, data):
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        return ESLEvent(headers={}, outer_headers=outer, body=None, raw_body=data,
                        parse_error='bad text/event-xml body: %s' % exc)
    headers = {}
    header_node = root.find('headers')
    for child in (header_node if header_node is not None else []):
        if child.tag not in headers:
            headers[child.tag] = unquote(child.text or '')
    body_node = root.find('body')
    body = body_node.text if body_node is not None else None
    return ESLEvent(headers=headers, outer_headers=outer, body=body,
                    raw_body=body.encode('utf-8') if body is not None else None)


class ESLParser:
    """Incremental, byte-exact ESL framing: `feed(bytes) -> [ESLEvent, ...]`.

    Data may be split at any byte. Raises `ESLProtocolError` when the stream cannot be framed
    any more (bad or oversized Content-Length, runaway header block); the connection must then
    be dropped.
    """

    def __init__(self):
        self._buf = bytearray()
        self._scan_from = 0          # where to resume looking for the blank line
        self._pending_head = None    # header block whose body is still incomplete
        self._pending_length = 0

    @property
    def buffered(self):
        return len(self._buf)

    def feed(self, data):
        if data:
            self._buf += data
        frames = []
        buf = self._buf
        while True:
            if self._pending_head is None:
                # leading blank lines between frames are skipped (as FreeSWITCH does)
                skip = 0
                while skip < len(buf) and buf[skip] in (0x0A, 0x0D):
                    skip += 1
                if skip:
                    del buf[:skip]
                    self._scan_from = 0
                idx = buf.find(b'\n\n', self._scan_from)
                if idx < 0:
                    if len(buf) > MAX_HEADER_BLOCK:
                        raise ESLProtocolError('ESL header block longer than %d bytes' % MAX_HEADER_BLOCK)
                    self._scan_from = max(0, len(buf) - 1)
                    break
                head = bytes(buf[:idx])
                del buf[:idx + 2]
                self._scan_from = 0
                length = self._content_length(head)
                if length == 0:
                    frames.append(build_event(head, b''))
                    continue
                self._pending_head = head
                self._pending_length = length
            if len(buf) < self._pending_length:
                break
            body = bytes(buf[:self._pending_length])
            del buf[:self._pending_length]
            head, self._pending_head = self._pending_head, None
            frames.append(build_event(head, body))
        return frames

    @staticmethod
    def _content_length(head):
        for line in head.split(b'\n'):
            if line[:15].lower() == b'content-length:':
                text = line[15:].strip()
                try:
                    length = int(text)
                except ValueError:
                    raise ESLProtocolError('bad Content-Length %r' % text[:40]) from None
                if length < 0 or length > MAX_CONTENT_LENGTH:
                    raise ESLProtocolError('Content-Length %d out of range' % length)
                return length
        return 0
