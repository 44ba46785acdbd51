"""mod_audio_fork's `uuid_audio_fork` arguments and replies (fork_function in mod_audio_fork.c):
argument splitting exactly as `switch_separate_string` (switch_sim.argsplit: spaces, single quotes
group and are removed, backslash escapes, ``^^X`` delimiter prefix, the last slot keeps the unsplit
rest; 7 slots drachtio, 10 jambonz), the metadata-vs-bugname heuristic, the WebSocket URL parsing
(parse_ws_uri, each flavour's own), and every reply text (``+OK Success``, ``-ERR Operation
Failed``, empty = mod_event_socket's ``-ERR no reply``, the flavour's ``-USAGE:`` line byte for
byte). From the drachtio 88e1465 and jambonz 30f2189 sources and tests/fixtures/fs-captures.
"""
from __future__ import annotations

import dataclasses
import re

from .argsplit import atoi, separate_string

MY_BUG_NAME = 'audio_fork'
USAGE = {
    'drachtio': ('-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] '
                 '[wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] '
                 '[bugname] [metadata]\n'),
    'jambonz': ('-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown | stop_play ] '
                '[wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] '
                '[bugname] [metadata] [bidirectionalAudio_enabled] [bidirectionalAudio_stream_enabled] '
                '[bidirectionalAudio_stream_samplerate]\n'),
}
MAX_SLOTS = {'drachtio': 7, 'jambonz': 10}
OK = '+OK Success\n'
FAILED = '-ERR Operation Failed\n'
NO_REPLY = ''


@dataclasses.dataclass
class Command:
    """One parsed `uuid_audio_fork` call. `reply` is set when the answer is known without a channel
    (usage); `noreply` when the module writes nothing (after the session lookup)."""

    reply: str | None = None
    uuid: str | None = None
    action: str | None = None
    bugname: str = MY_BUG_NAME
    text: str | None = None
    noreply: bool = False
    url: str | None = None
    mix: str | None = None
    rate: int = 8000
    metadata: str | None = None
    bidi_enable: int = 1
    bidi_stream: int = 0
    bidi_rate: int = 0

    @property
    def write_replace(self) -> bool:
        return bool(self.bidi_enable and self.bidi_stream and self.bidi_rate)


def _is_json_start(s: str) -> bool:
    return bool(s) and s[0] in '{['


def _bugname_and_json(argv: list[str], i: int, bugname: str):
    """fork_function's optional `[bugname] [json]` at argv[i:]: with both, (argv[i], argv[i+1]);
    with one, it is the json when it starts like JSON, else the bug name. -> (bugname, json or None)."""
    if len(argv) > i + 1:
        return argv[i], argv[i + 1]
    if len(argv) <= i:
        return bugname, None
    if _is_json_start(argv[i]):
        return bugname, argv[i]
    return argv[i], None


def parse_command(args: str, flavor: str) -> Command:
    argv = separate_string(args, max_parts=MAX_SLOTS[flavor]) if args else []
    argc = len(argv)
    if not args or argc < 2 or (argv[1] == 'start' and argc < 4):
        return Command(reply=USAGE[flavor])
    cmd = Command(uuid=argv[0])
    action = argv[1].lower()
    cmd.action = action
    if action == 'stop':
        cmd.bugname, cmd.text = _bugname_and_json(argv, 2, cmd.bugname)
    elif action == 'stop_play' and flavor == 'jambonz':
        pass
    elif action in ('pause', 'resume', 'graceful-shutdown'):
        if argc > 2:
            cmd.bugname = argv[2]
    elif action == 'send_text':
        if argc < 3:
            cmd.noreply = True
        else:
            cmd.bugname, cmd.text = _bugname_and_json(argv, 2, cmd.bugname)
    elif action == 'start':
        # the usage check compares with strcmp, the dispatch with strcasecmp: "START a" gets here
        cmd.action = 'start'
        if argc < 4:
            cmd.noreply = True  # NULL dereference in the module
            return cmd
        cmd.url = argv[2]
        if flavor == 'jambonz' and argc > 9:
            if argv[5] != '':
                cmd.bugname = argv[5]
            if argv[6] != '':
                cmd.metadata = argv[6]
            cmd.bidi_enable = 1 if argv[7] == 'true' else 0
            cmd.bidi_stream = 1 if argv[8] == 'true' else 0
            cmd.bidi_rate = atoi(argv[9])
        else:
            cmd.bugname, cmd.metadata = _bugname_and_json(argv, 5, cmd.bugname)
        if argv[3] not in ('mono', 'mixed', 'stereo'):
            cmd.noreply = True  # invalid mix type: the module writes nothing
            return cmd
        cmd.mix = argv[3]
        if argc < 5:
            cmd.noreply = True  # the module dereferences NULL here
            return cmd
        if argv[4] == '16k':
            cmd.rate = 16000
        elif argv[4] == '8k':
            cmd.rate = 8000
        else:
            cmd.rate = atoi(argv[4])
    else:
        cmd.action = 'unsupported'
    return cmd


def parse_ws_uri(url: str, flavor: str):
    """parse_ws_uri: (host, port, path, tls) or None when the scheme is not ws/wss/http/https."""
    for prefix, tls, port in (('https://', True, 443), ('HTTPS://', True, 443), ('wss://', True, 443),
                              ('WSS://', True, 443), ('http://', False, 80), ('HTTP://', False, 80),
                              ('ws://', False, 80), ('WS://', False, 80)):
        if url.startswith(prefix):
            rest = url[len(prefix):]
            break
    else:
        return None
    if flavor == 'drachtio':
        m = re.match(r'^(.+?):?(\d+)?(/.*)?$', rest, re.S)
    else:
        m = re.search(r'([^/:]+):?([0-9]*)?(/.*)?$', rest, re.S)
    if not m:
        return None
    host = m.group(1)
    if m.group(2):
        port = atoi(m.group(2))
    path = m.group(3) or '/'
    return host, port, path, tls
