"""Test helpers for the esl_app tests: read the FreeSWITCH captures (tests/fixtures/fs-captures)
into byte-exact blocks, group an outbound transcript into command -> FS-reply exchanges, compute
the expected frame of a captured block from first principles, build event frames the way
FreeSWITCH serializes them (plain: switch_event_serialize; json: switch_event_serialize_json_obj +
cJSON_PrintUnformatted), turn a captured plain event frame into the json frame FreeSWITCH sends for
the same event, read client->FS commands off a socket, and a scripted FreeSWITCH peer (outbound
socket side) that replays captured replies."""
import json
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import gevent
import gevent.event

CAPTURES = Path(__file__).parent / 'fixtures' / 'fs-captures'
_BLOCK = re.compile(r'^==== \[t=([\d.]+)\] (\S+)(.*?)====\n(.*?)==== end ====\n', re.S | re.M)


@dataclass
class Block:
    t: float
    direction: str          # FS->APP, APP->FS, FS->CLIENT, CLIENT->FS, NOTE
    data: bytes

    @property
    def from_fs(self):
        return self.direction.startswith('FS->')

    @property
    def from_app(self):
        return self.direction in ('APP->FS', 'CLIENT->FS')


def load_blocks(path):
    path = Path(path)
    if path.suffix == '.jsonl':
        blocks = []
        for line in path.read_text(encoding='utf-8').splitlines():
            rec = json.loads(line)
            direction = 'NOTE' if rec['dir'] == 'note' else rec['dir']
            blocks.append(Block(rec['t'], direction, rec['data'].encode('latin-1')))
        return blocks
    text = path.read_text(encoding='utf-8')
    blocks = []
    for m in _BLOCK.finditer(text):
        t, direction, rest, body = m.groups()
        if 'NO trailing LF' in rest:
            body = body[:-1]
        data = body.encode('utf-8')
        count = re.search(r'\((\d+) bytes', rest)
        if count:
            assert len(data) == int(count.group(1)), (path.name, t)
        blocks.append(Block(float(t), direction, data))
    return blocks


def fs_stream(blocks):
    return b''.join(b.data for b in blocks if b.from_fs)


# -- expected frames, computed per captured block (each FS block is one frame) ----------------
def _header_lines(block, decode):
    headers = {}
    for line in block.decode('utf-8').split('\n'):
        m = re.match(r'^([^:]+): ?(.*)$', line)
        if m and m.group(1) not in headers:
            headers[m.group(1)] = unquote(m.group(2)) if decode else m.group(2)
    return headers


def expected_frame(data):
    """{'content_type', 'headers', 'body'(bytes|None)} of one captured FS->client block."""
    head, _, rest = data.partition(b'\n\n')
    outer = _header_lines(head, decode=False)
    ctype = outer.get('Content-Type')
    if ctype == 'text/event-plain':
        inner_head, _, inner_rest = rest.partition(b'\n\n')
        headers = _header_lines(inner_head, decode=True)
        body = inner_rest[:int(headers['Content-Length'])] if 'Content-Length' in headers else None
        return {'content_type': ctype, 'headers': headers, 'body': body}
    if ctype == 'text/event-json':
        obj = json.loads(rest.decode('utf-8'))
        body = obj.pop('_body', None)
        return {'content_type': ctype, 'headers': obj, 'body': body.encode('utf-8') if body is not None else None}
    headers = _header_lines(head, decode='Event-Name' in outer)
    return {'content_type': ctype, 'headers': headers, 'body': rest if 'Content-Length' in outer else None}


# the subscription of an outbound call socket (the brief's events), in json: what callfork must send
EVENT_JSON = ('event json PLAYBACK_START PLAYBACK_STOP RECORD_START RECORD_STOP DTMF BACKGROUND_JOB '
               'CHANNEL_HANGUP_COMPLETE CUSTOM mod_audio_fork::connect mod_audio_fork::connect_failed '
               'mod_audio_fork::disconnect mod_audio_fork::error mod_audio_fork::buffer_overrun '
               'mod_audio_fork::play_audio mod_audio_fork::kill_audio mod_audio_fork::json '
               'mod_audio_fork::transcription mod_audio_fork::transfer')


# -- event frames as FreeSWITCH builds them ---------------------------------------------------
URL_UNSAFE = '\r\n #%&+:;<=>?@[\\]^`{|}"'


def fs_url_encode(value):
    """switch_url_encode_opt: bytes < 0x20, > 0x7E or unsafe -> %XX, except an existing %XX."""
    raw = value.encode('utf-8')
    out = []
    for i, byte in enumerate(raw):
        if byte == 0x25 and re.fullmatch(rb'[0-9A-Fa-f]{2}', raw[i + 1:i + 3]):
            out.append('%')
        elif byte < 0x20 or byte > 0x7E or chr(byte) in URL_UNSAFE:
            out.append('%%%02X' % byte)
        else:
            out.append(chr(byte))
    return ''.join(out)


def _header_value(value):
    """switch_event_header_t.value: an array header (a list) reads `ARRAY::a|:b`, or its one element."""
    if isinstance(value, list):
        return value[0] if len(value) == 1 else 'ARRAY::' + '|:'.join(value)
    return value


def plain_event_frame(pairs, body=None):
    """switch_event_serialize + mod_event_socket framing: `Name: <url-encoded>` per header (`_undef_`
    when empty), then `Content-Length: n` + body, or a blank line. `pairs`: (name, str|list)."""
    text = ''.join('%s: %s\n' % (name, fs_url_encode(_header_value(value)) or '_undef_') for name, value in pairs)
    data = text.encode('utf-8')
    if body:
        data += b'Content-Length: %d\n\n' % len(body.encode('utf-8')) + body.encode('utf-8')
    else:
        data += b'\n'
    return b'Content-Length: %d\nContent-Type: text/event-plain\n\n' % len(data) + data


def cjson_event(pairs, body=None):
    """switch_event_serialize_json_obj printed by cJSON_PrintUnformatted: one flat object, headers in
    order (repeats kept), an array header as a JSON array of strings, then `"Content-Length"` (a
    string) and `"_body"` when the event has a body. cJSON escapes like json.dumps(ensure_ascii=False)."""
    def dump(value):
        if isinstance(value, list):
            return '[' + ','.join(json.dumps(v, ensure_ascii=False) for v in value) + ']'
        return json.dumps(value, ensure_ascii=False)
    items = ['%s:%s' % (json.dumps(name, ensure_ascii=False), dump(value)) for name, value in pairs]
    if body is not None:
        items.append('"Content-Length":%s' % json.dumps(str(len(body.encode('utf-8')))))
        items.append('"_body":%s' % json.dumps(body, ensure_ascii=False))
    return '{' + ','.join(items) + '}'


def json_event_frame(pairs, body=None):
    payload = cjson_event(pairs, body).encode('utf-8')
    return b'Content-Length: %d\nContent-Type: text/event-json\n\n' % len(payload) + payload


def is_event_frame(data, fmt):
    return b'\nContent-Type: text/event-%s\n\n' % fmt.encode() in data.split(b'\n\n', 1)[0] + b'\n\n'


def plain_event_fields(data):
    """(pairs, body) of a text/event-plain frame: URL-decoded values in order, repeats kept; a value
    FreeSWITCH holds as an array (`ARRAY::a|:b`, split by switch_event_add_array) as a list; the
    body by the inner Content-Length."""
    _outer, _, rest = data.partition(b'\n\n')
    head, _, tail = rest.partition(b'\n\n')
    lines = head.decode('utf-8').split('\n')
    body = None
    if lines[-1].startswith('Content-Length: '):
        length = int(lines.pop()[len('Content-Length: '):])
        body = tail[:length].decode('utf-8')
    pairs = []
    for line in lines:
        name, _, value = line.partition(': ')
        assert value != '_undef_', line          # not in the captures: no way to tell "" from [""]
        value = unquote(value)
        if value.startswith('ARRAY::') and len(value) >= 8:
            value = value[len('ARRAY::'):].split('|:')
        pairs.append((name, value))
    return pairs, body


def json_event_fields(data):
    """(pairs, body) of a text/event-json frame (repeats kept; the Content-Length key dropped: the
    serializer writes it from the body)."""
    _outer, _, payload = data.partition(b'\n\n')
    pairs = json.loads(payload.decode('utf-8'), object_pairs_hook=lambda p: p)
    body = None
    out = []
    for name, value in pairs:
        if name == '_body':
            body = value
        elif name != 'Content-Length':
            out.append((name, value))
    return out, body


_AS_JSON = {}


def as_json_frame(data):
    """The frame FreeSWITCH sends for a captured text/event-plain frame once the listener's format
    is json (`event json ...`); any other frame unchanged."""
    if not is_event_frame(data, 'plain'):
        return data
    frame = _AS_JSON.get(data)
    if frame is None:
        frame = _AS_JSON[data] = json_event_frame(*plain_event_fields(data))
    return frame


# -- exchanges of an outbound transcript -------------------------------------------------------
@dataclass
class Exchange:
    command: bytes
    replies: list = field(default_factory=list)      # FS blocks (bytes) until the next command
    note_before: str = ''

    @property
    def line(self):
        return self.command.split(b'\n', 1)[0].decode()

    @property
    def app(self):
        m = re.search(rb'^execute-app-name: (.*)$', self.command, re.M)
        return m.group(1).decode() if m else None

    @property
    def app_arg(self):
        m = re.search(rb'^execute-app-arg: (.*)$', self.command, re.M)
        return m.group(1).decode('utf-8') if m else ''

    @property
    def app_uuid(self):
        for data in self.replies:
            m = re.search(rb'^Application-UUID: (.*)$', data, re.M)
            if m and re.search(rb'^Event-Name: CHANNEL_EXECUTE$', data, re.M):
                return m.group(1)
        return None


def exchanges(blocks):
    result = []
    note = ''
    for block in blocks:
        if block.direction == 'NOTE':
            note = block.data.decode('utf-8')
        elif block.from_app:
            result.append(Exchange(block.data, note_before=note))
            note = ''
        elif result:
            result[-1].replies.append(block.data)
    return result


def event_name(data):
    m = re.search(rb'^Event-Name: (.*)$', data, re.M)
    return m.group(1).decode() if m else None


def api_reply_from(capture_name, command_prefix):
    """The FS reply block that followed the first CLIENT->FS command starting with `command_prefix`."""
    blocks = [b for b in load_blocks(CAPTURES / capture_name) if b.direction != 'NOTE']
    for i, block in enumerate(blocks):
        if block.from_app and block.data.startswith(command_prefix.encode()):
            return blocks[i + 1].data
    raise LookupError(command_prefix)


# -- reading client commands -------------------------------------------------------------------
@dataclass
class Command:
    line: str
    headers: dict
    body: bytes
    raw: bytes


class CommandReader:
    def __init__(self, sock):
        self.sock = sock
        self.buf = b''

    def read(self):
        """Next command, or None at EOF."""
        while b'\n\n' not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        head, _, self.buf = self.buf.partition(b'\n\n')
        lines = head.decode('utf-8').split('\n')
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(': ')
            headers[name.lower()] = value
        length = int(headers.get('content-length', 0))
        while len(self.buf) < length:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data
        body, self.buf = self.buf[:length], self.buf[length:]
        return Command(lines[0], headers, body, head + b'\n\n' + body)


class ScriptedPeer:
    """FreeSWITCH's side of one outbound socket: connects to `address`, then for every command
    read calls `respond(peer, command)`, which writes with `peer.send(bytes)`. Runs in a greenlet;
    `commands` records everything received; `closed_by_server` is set when the conversation is over (EOF, or we closed)."""

    def __init__(self, address, respond, connect=True):
        self.address = address
        self.respond = respond
        self.commands = []
        self.sock = None
        self.closed_by_server = gevent.event.Event()
        self.error = None
        self.closed_locally = False
        self.greenlet = None
        if connect:
            self.sock = socket.create_connection(address, timeout=5)
            self.sock.settimeout(10)

    def start(self):
        self.greenlet = gevent.spawn(self._run)
        return self

    def _run(self):
        reader = CommandReader(self.sock)
        try:
            while True:
                cmd = reader.read()
                if cmd is None:
                    self.closed_by_server.set()
                    return
                self.commands.append(cmd)
                self.respond(self, cmd)
        except OSError as exc:
            if not self.closed_locally:
                self.error = exc
            self.closed_by_server.set()
        except Exception as exc:      # an assertion inside respond(): keep it for the test
            self.error = exc
            self.close()
            self.closed_by_server.set()

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        self.closed_locally = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
