"""CallSession + OutboundESLServer over real TCP against a scripted FreeSWITCH peer that replays
the FS side of the captured outbound transcripts (the Application-UUID of each captured app is
replaced by the Event-UUID we sent: both are 36 characters, so every Content-Length stays true).

callfork subscribes with `event json ...`; from its reply on, the peer sends every captured event
as the `text/event-json` frame FreeSWITCH sends for it (esl_capture_tools.as_json_frame, checked
against real json frames in test_esl_json_events.py), as mod_event_socket does: the format belongs
to the listener and the last `event` command sets it. `CaptureFS(fmt='plain')` keeps the captured
plain frames (a peer that ignores the format word)."""
import re
import socket
import uuid

import gevent
import gevent.event
import pytest

from esl_app import CallGone, CallSession, ESLTimeout, OutboundESLServer, escape_app_arg
from esl_capture_tools import (CAPTURES, EVENT_JSON, ScriptedPeer, api_reply_from, as_json_frame, event_name,
                               exchanges, expected_frame, load_blocks)


def sendmsg_bytes(app, app_uuid, arg_bytes):
    """The sendmsg framing of the brief / reference §2.6 (body form)."""
    return ('sendmsg\ncall-command: execute\nexecute-app-name: %s\nevent-lock: true\nEvent-UUID: %s\n'
            'content-type: text/plain\ncontent-length: %d\n\n' % (app, app_uuid, len(arg_bytes))).encode() + arg_bytes


EVENT_JSON_OK = api_reply_from('inbound-esl-transcript.jsonl', 'event json')


class CaptureFS:
    """Answers our commands with what FreeSWITCH answered in `capture`; events in json after
    `event json` (fmt='json'), or always as captured (fmt='plain')."""

    def __init__(self, capture, setvar_reply=None, fmt='json'):
        self.fmt = fmt
        self.json_now = False
        self.ex = exchanges(load_blocks(CAPTURES / capture))
        self.setvar_reply = setvar_reply or api_reply_from('inbound-esl-bidirectional-transcript-jambonz.txt', 'api uuid_setvar')
        self.kill_reply = api_reply_from('inbound-esl-transcript.txt', 'api uuid_kill')
        self.getvar_reply = api_reply_from('inbound-esl-bidirectional-transcript-jambonz.txt', 'api uuid_getvar')
        exit_ex = [e for e in exchanges(load_blocks(CAPTURES / 'outbound-esl-transcript.txt')) if e.line == 'exit'][0]
        self.exit_replies = exit_ex.replies
        self.uuid_map = {}          # captured Application-UUID -> ours
        self.app_uuids = []         # Event-UUIDs we received, in order
        self.used = set()
        self.on_sendmsg = None      # hook(peer, cmd, exchange) -> True if handled
        self.errors = []

    def first(self, predicate):
        return [e for e in self.ex if predicate(e)][0]

    def send_blocks(self, peer, blocks):
        for data in blocks:
            if self.json_now:
                data = as_json_frame(data)
            for old, new in self.uuid_map.items():
                data = data.replace(old, new)
            peer.send(data)

    def next_app(self, app):
        for i, e in enumerate(self.ex):
            if e.app == app and i not in self.used:
                self.used.add(i)
                return e
        raise AssertionError('no captured exchange left for app %s' % app)

    def __call__(self, peer, cmd):
        line = cmd.line
        if line == 'connect':
            self.send_blocks(peer, self.first(lambda e: e.line == 'connect').replies)
        elif line.startswith('linger'):
            self.send_blocks(peer, self.first(lambda e: e.line.startswith('linger')).replies)
        elif line == 'myevents':
            self.send_blocks(peer, self.first(lambda e: e.line == 'myevents').replies)
        elif line.startswith('event json') and self.fmt == 'json':
            assert EVENT_JSON_OK == b'Content-Type: command/reply\nReply-Text: +OK event listener enabled json\n\n'
            peer.send(EVENT_JSON_OK)
            self.json_now = True
            self.send_blocks(peer, self.first(lambda e: e.line.startswith('event plain')).replies[1:])
        elif line.startswith('event '):
            self.send_blocks(peer, self.first(lambda e: e.line.startswith('event plain')).replies)
        elif line.startswith('api uuid_setvar'):
            peer.send(self.setvar_reply)
        elif line.startswith('api uuid_getvar'):
            peer.send(self.getvar_reply)
        elif line.startswith('api uuid_kill'):
            peer.send(self.kill_reply)
            self.send_blocks(peer, self.first(lambda e: e.app == 'hangup').replies[1:])
        elif line.startswith('api '):
            self.send_blocks(peer, self.first(lambda e: e.line == line).replies)
        elif line == 'sendmsg':
            app = cmd.headers['execute-app-name']
            app_uuid = cmd.headers['event-uuid']
            assert uuid.UUID(app_uuid).version == 4
            assert cmd.raw == sendmsg_bytes(app, app_uuid, cmd.body)
            self.app_uuids.append(app_uuid)
            exchange = self.next_app(app)
            self.uuid_map[exchange.app_uuid] = app_uuid.encode()
            if self.on_sendmsg and self.on_sendmsg(peer, cmd, exchange):
                return
            self.send_blocks(peer, exchange.replies)
        elif line == 'exit':
            self.send_blocks(peer, self.exit_replies)
            peer.close()
        else:
            raise AssertionError('unexpected command %r' % line)


def run_call(fs, handler, connect_timeout=5.0):
    done = gevent.event.Event()
    results = {}

    def wrapped(session):
        try:
            handler(session, results)
        except BaseException as exc:          # surfaced by the test, not swallowed
            results['error'] = exc
            raise
        finally:
            results['session'] = session
            done.set()

    server = OutboundESLServer(listen=('127.0.0.1', 0), handler=wrapped, connect_timeout=connect_timeout).start()
    peer = ScriptedPeer(server.address, fs).start()
    try:
        assert done.wait(15), 'handler did not finish'
        assert peer.closed_by_server.wait(5)
    finally:
        server.stop()
        peer.close()
    assert peer.error is None, peer.error
    assert 'error' not in results, results.get('error')
    return results, peer


SUBSCRIBED = ('RECORD_START', 'RECORD_STOP', 'PLAYBACK_START', 'PLAYBACK_STOP', 'DTMF', 'CHANNEL_HANGUP_COMPLETE')


@pytest.mark.parametrize('fmt', ['json', 'plain'])
def test_full_call_replayed_from_the_outbound_capture(fmt):
    fs = CaptureFS('outbound-esl-transcript.txt', fmt=fmt)
    apps = [e for e in fs.ex if e.app and e.app != 'hangup']
    dtmf_api = fs.first(lambda e: e.line.startswith('api uuid_send_dtmf'))
    captured_uuid = expected_frame(fs.first(lambda e: e.line == 'connect').replies[0])['headers']['Unique-ID']

    def handler(session, results):
        results['uuid'] = session.uuid
        results['destination'] = session.destination_number
        results['caller'] = (session.caller_id_number, session.caller_id_name, session.direction)
        results['expansion_disabled'] = session.expansion_disabled
        queue = session.subscribe(*SUBSCRIBED)
        completes = []
        for e in apps:
            if e.app == 'answer':
                completes.append(session.answer())
                results['answered'] = session.answered
            elif e.app == 'play_and_get_digits':
                with session.subscribe('PLAYBACK_STOP') as prompt_done:
                    execution = session.execute_async(e.app, e.app_arg)
                    prompt_done.get(timeout=5)          # like the capture: DTMF after the prompt
                results['dtmf_api'] = session.api(dtmf_api.line[len('api '):])
                completes.append(execution.wait(5))
                results['execution_done'] = execution.done
            else:
                completes.append(session.execute(e.app, e.app_arg, timeout=5))
        results['completes'] = completes
        session.hangup()
        results['gone'] = (session.gone, session.hangup_cause)
        results['hangup_complete'] = session.wait_hangup_complete(5)
        names = []
        try:
            while True:
                names.append(queue.get(timeout=5))
        except CallGone as exc:
            results['queue_end'] = exc
        results['queued'] = names
        try:
            session.execute('playback', '/tmp/x.wav')
        except CallGone as exc:
            results['after_hangup'] = exc

    results, peer = run_call(fs, handler)
    assert results['uuid'] == captured_uuid
    assert results['destination'] == 'stream1'
    assert results['caller'] == ('15551230001', 'CaptureCaller', 'inbound')
    assert results['expansion_disabled'] is True and results['answered'] is True
    lines = [c.line for c in peer.commands]
    assert lines[:5] == ['connect', 'linger', 'myevents', EVENT_JSON,
                         'api uuid_setvar %s app_disable_expand_variables true' % captured_uuid]
    assert lines[-2:] == ['api uuid_kill %s NORMAL_CLEARING' % captured_uuid, 'exit']
    sendmsgs = [c for c in peer.commands if c.line == 'sendmsg']
    assert [c.headers['execute-app-name'] for c in sendmsgs] == [e.app for e in apps]
    assert [c.body.decode() for c in sendmsgs] == [e.app_arg for e in apps]      # body form, arg verbatim
    assert all(c.headers['event-lock'] == 'true' for c in sendmsgs)
    for complete, app_uuid, e in zip(results['completes'], fs.app_uuids, apps):
        assert complete.name == 'CHANNEL_EXECUTE_COMPLETE'
        assert complete.content_type == 'text/event-%s' % fmt
        assert complete.get('variable_DP_MATCH') == 'ARRAY::stream1|:1'     # a json array on the wire
        assert complete.get('Application-UUID') == app_uuid
        assert complete.get('Application') == e.app
    by_app = dict(zip([e.app for e in apps], results['completes']))
    assert by_app['playback'].get('Application-Response') == 'FILE PLAYED'
    assert by_app['play_and_get_digits'].get('variable_pagd_digits') == '1234'
    assert results['execution_done'] is True
    assert results['dtmf_api'] == expected_frame(dtmf_api.replies[0])['body'].decode()
    hangup_cause = re.search(rb'^Hangup-Cause: (.*)$', fs.first(lambda e: e.app == 'hangup').replies[2], re.M).group(1).decode()
    assert results['gone'] == (True, hangup_cause)
    assert results['hangup_complete'].name == 'CHANNEL_HANGUP_COMPLETE'
    expected_names = [event_name(b) for e in fs.ex for b in e.replies if event_name(b) in SUBSCRIBED]
    assert [ev.name for ev in results['queued']] == expected_names
    assert [ev.get('DTMF-Digit') for ev in results['queued'] if ev.name == 'DTMF'] == list('1234')
    assert results['queue_end'].cause == hangup_cause
    assert results['after_hangup'].cause == hangup_cause


def test_args_are_byte_counted_and_never_expanded():
    text = 'flite|kal|Grüße ${uuid} $${base_dir} \\n ok'
    for setvar_reply, expect_escaped in ((None, False),
                                         (b'Content-Type: api/response\nContent-Length: 22\n\n-ERR No such channel!\n', True)):
        fs = CaptureFS('outbound-esl-transcript.txt', setvar_reply=setvar_reply)

        def handler(session, results):
            results['disabled'] = session.expansion_disabled
            results['complete'] = session.execute('speak', text, timeout=5)

        results, peer = run_call(fs, handler)
        assert results['disabled'] is (not expect_escaped)
        cmd = [c for c in peer.commands if c.line == 'sendmsg'][0]
        # FreeSWITCH expansion rules: `\\` -> `\`, `\$` -> `$` once expansion triggers on `${`
        expected = text.replace('\\', '\\\\').replace('$', '\\$') if expect_escaped else text
        assert cmd.body == expected.encode('utf-8')
        assert int(cmd.headers['content-length']) == len(expected.encode('utf-8')) > len(expected)
        assert results['complete'].get('Application-UUID') == cmd.headers['event-uuid']


def _fs_cleanup_separated_string(text):
    """Port of FreeSWITCH's cleanup_separated_string(str, delim=0) (switch_utils.c), which
    separate_string_blank_delim applies to every argument of uuid_setvar."""
    mapping = {'n': '\n', 'r': '\r', 't': '\t', 's': ' '}
    ptr = 0
    while ptr < len(text) and text[ptr] == ' ':
        ptr += 1
    dest = []
    end = None
    inside_quotes = False
    while ptr < len(text):
        ch = text[ptr]
        escaped = False
        if ch == '\\' and ptr + 1 < len(text):
            nxt = text[ptr + 1]
            if nxt in '\'"\\' or nxt in mapping:
                ptr += 1
                dest.append(mapping.get(nxt, nxt))
                end = len(dest)
                escaped = True
        if not escaped:
            if ch == "'" and (inside_quotes or "'" in text[ptr + 1:]):
                inside_quotes = not inside_quotes
                if inside_quotes:
                    end = len(dest)
            else:
                dest.append(ch)
                if ch != ' ' or inside_quotes:
                    end = len(dest)
        ptr += 1
    return ''.join(dest[:end] if end is not None else dest)


def test_set_var_get_var_and_escape_helper():
    fs = CaptureFS('outbound-esl-transcript.txt')
    value = " it's \"quoted\"\nline2 \\ end "

    def handler(session, results):
        session.set_var('callfork_note', value)
        session.set_var('callfork_tpl', 'Hi ${name}')       # uuid_setvar stores `${` as it is
        results['getvar'] = session.get_var('other_loopback_leg_uuid')

    results, peer = run_call(fs, handler)
    cmd = [c for c in peer.commands if c.line.startswith('api uuid_setvar') and 'callfork_note' in c.line][0]
    prefix = 'api uuid_setvar %s callfork_note ' % results['session'].uuid
    assert cmd.line.startswith(prefix) and '\n' not in cmd.line
    assert _fs_cleanup_separated_string(cmd.line[len(prefix):]) == value
    # what FreeSWITCH would have made of the raw text: quotes, blanks and the newline lost
    assert _fs_cleanup_separated_string(value.replace('\n', ' ')) != value
    assert results['getvar'] == expected_frame(fs.getvar_reply)['body'].decode()
    # `${...}` goes the same way (FreeSWITCH 1.10.12 stores it unexpanded: api-argsplit.json), no `set` app
    tpl = [c for c in peer.commands if c.line.startswith('api uuid_setvar') and 'callfork_tpl' in c.line][0]
    tpl_prefix = 'api uuid_setvar %s callfork_tpl ' % results['session'].uuid
    assert tpl.line.startswith(tpl_prefix)
    assert _fs_cleanup_separated_string(tpl.line[len(tpl_prefix):]) == 'Hi ${name}'
    assert not [c for c in peer.commands if c.line == 'sendmsg' and c.headers.get('execute-app-name') == 'set']
    assert escape_app_arg('plain text, $5 \\o/') == 'plain text, $5 \\o/'     # nothing triggers expansion
    assert escape_app_arg('a ${b}') == 'a \\${b}'


def test_hangup_during_playback_releases_waiters_and_queues_keep_reading():
    """record-session capture, variant r6: the channel hangs up while recording; RECORD_STOP and
    CHANNEL_HANGUP_COMPLETE arrive after CHANNEL_HANGUP (and after the linger notice)."""
    fs = CaptureFS('record-session-transcript.txt')
    r6 = [e for e in fs.ex if 'r6-hangup' in e.note_before][0]
    r6_index = fs.ex.index(r6)
    for i, e in enumerate(fs.ex):         # the r6 exchanges are the ones to replay
        if e.app in ('record_session', 'playback') and i < r6_index:
            fs.used.add(i)
    hangup_replies = fs.first(lambda e: e.app == 'hangup').replies[1:]
    split = [event_name(b) for b in hangup_replies].index('CHANNEL_HANGUP') + 1
    resume = gevent.event.Event()

    def on_sendmsg(peer, cmd, exchange):
        if exchange.app != 'playback':
            return False
        fs.send_blocks(peer, exchange.replies[:2])              # +OK, CHANNEL_EXECUTE
        fs.send_blocks(peer, hangup_replies[:split])            # ... CHANNEL_HANGUP
        assert resume.wait(5)
        fs.send_blocks(peer, hangup_replies[split:])            # linger: RECORD_STOP ... final notice
        peer.close()                                            # linger time over: FS closes
        return True

    fs.on_sendmsg = on_sendmsg

    def handler(session, results):
        session.answer()
        session.execute('record_session', r6.app_arg if r6.app == 'record_session' else
                        fs.ex[r6_index].app_arg, timeout=5)
        queue = session.subscribe('RECORD_STOP', 'CHANNEL_HANGUP_COMPLETE', 'DISCONNECT')
        try:
            session.execute('playback', '/opt/fstest01/media/speech2s8k.wav', timeout=5)
        except CallGone as exc:
            results['execute_gone'] = exc
        results['gone'] = session.gone
        resume.set()
        results['got'] = [queue.get(timeout=5), queue.get(timeout=5)]
        results['lingering'] = session.lingering
        results['got'].append(queue.get(timeout=5))
        results['extra'] = []
        try:
            while True:      # the final notice may or may not be dispatched before HANGUP_COMPLETE ends it
                results['extra'].append(queue.get(timeout=5))
        except CallGone as exc:
            results['queue_end'] = exc
        results['hangup_complete'] = session.wait_hangup_complete(5)
        try:
            session.api('uuid_getvar %s x' % session.uuid)
        except CallGone as exc:
            results['api_gone'] = exc

    results, peer = run_call(fs, handler)
    cause = re.search(rb'^Hangup-Cause: (.*)$', hangup_replies[split - 1], re.M).group(1).decode()
    assert isinstance(results['execute_gone'], CallGone) and results['execute_gone'].cause == cause
    assert results['gone'] is True
    notice = results['got'][1]
    assert [e.name for e in results['got']] == ['RECORD_STOP', None, 'CHANNEL_HANGUP_COMPLETE']
    assert notice.content_type == 'text/disconnect-notice'
    assert notice.outer_headers['Content-Disposition'] == 'linger' and results['lingering'] is True
    assert results['got'][0].get('Record-Completion-Cause') == 'success-silence'
    assert isinstance(results['queue_end'], CallGone)
    assert all(e.outer_headers.get('Content-Disposition') == 'disconnect' for e in results['extra'])
    assert results['hangup_complete'] is results['got'][2]
    assert isinstance(results['api_gone'], CallGone)


def test_caller_gone_before_connect_completes(capfd, caplog):
    calls = []
    server = OutboundESLServer(listen=('127.0.0.1', 0), handler=lambda s: calls.append(s), connect_timeout=2).start()
    try:
        for mode in ('immediately', 'after-connect', 'garbage'):
            sock = socket.create_connection(server.address)
            if mode != 'immediately':
                sock.settimeout(5)
                assert sock.recv(100).startswith(b'connect')
            if mode == 'garbage':          # an unframeable reply: dropped, logged, no traceback
                sock.sendall(b'Content-Type: command/reply\nContent-Length: nope\n\n')
                assert sock.recv(100) == b''
            sock.close()
        # the server keeps serving: a normal call goes through
        fs = CaptureFS('outbound-esl-transcript.txt')
        peer = ScriptedPeer(server.address, fs).start()
        assert peer.closed_by_server.wait(10)
        assert peer.error is None
        assert [c.line for c in peer.commands][-1] == 'exit'
        assert len(calls) == 1
    finally:
        server.stop()
    assert 'Traceback' not in capfd.readouterr().err
    assert any('before the call started' in r.getMessage() for r in caplog.records)


def test_peer_that_never_answers_times_out():
    calls = []
    server = OutboundESLServer(listen=('127.0.0.1', 0), handler=lambda s: calls.append(s), connect_timeout=0.3).start()
    try:
        peer = ScriptedPeer(server.address, lambda peer, cmd: None).start()     # reads, never answers
        assert peer.closed_by_server.wait(5)
        assert [c.line for c in peer.commands] == ['connect'] and calls == []
    finally:
        server.stop()
    # the same at the CallSession level: ESLTimeout
    listener = socket.socket()
    listener.bind(('127.0.0.1', 0))
    listener.listen(1)
    fs_side = socket.create_connection(listener.getsockname())
    ours, _ = listener.accept()
    session = CallSession(ours, command_timeout=0.3)
    with pytest.raises(ESLTimeout):
        session.setup(connect_timeout=0.3)
    session.close(send_exit=False)
    fs_side.close()
    listener.close()


def test_execute_times_out_when_completion_never_comes():
    fs = CaptureFS('outbound-esl-transcript.txt')

    def on_sendmsg(peer, cmd, exchange):
        peer.send(exchange.replies[0])         # +OK, then nothing
        return True

    fs.on_sendmsg = on_sendmsg

    def handler(session, results):
        execution = session.execute_async('playback', '/opt/fstest01/media/hello8k.wav')
        with pytest.raises(ESLTimeout):
            execution.wait(0.2)
        results['done'] = execution.done

    results, _ = run_call(fs, handler)
    assert results['done'] is False


def test_completions_are_matched_on_application_uuid_not_the_app_name():
    """Two playbacks in flight; FreeSWITCH completes the second first. Each Execution must get
    its own CHANNEL_EXECUTE_COMPLETE (greenswitch matches on the app name and gets this wrong)."""
    fs = CaptureFS('record-session-transcript.txt')
    held = []

    def on_sendmsg(peer, cmd, exchange):
        if exchange.app != 'playback':
            return False
        if not held:
            peer.send(exchange.replies[0])          # +OK; completion held back
            held.append(exchange)
            return True
        fs.send_blocks(peer, exchange.replies)       # second playback completes first...
        fs.send_blocks(peer, held[0].replies[1:])    # ...then the first one
        return True

    fs.on_sendmsg = on_sendmsg
    callback_events = []

    def handler(session, results):
        session.on_event('CHANNEL_EXECUTE_COMPLETE', callback_events.append)
        first = session.execute_async('playback', 'first.wav')
        second = session.execute_async('playback', 'second.wav')
        results['second'] = second.wait(5)
        results['first'] = first.wait(5)
        results['ids'] = (first.app_uuid, second.app_uuid)

    results, peer = run_call(fs, handler)
    first_id, second_id = results['ids']
    assert results['first'].get('Application-UUID') == first_id
    assert results['second'].get('Application-UUID') == second_id
    assert [e.get('Application-UUID') for e in callback_events] == [second_id, first_id]


def test_blocking_inside_an_event_callback_is_refused():
    fs = CaptureFS('outbound-esl-transcript.txt')
    errors = []

    def handler(session, results):
        queue = session.subscribe('PLAYBACK_STOP')

        def callback(event):
            try:
                queue.get(timeout=1)
            except RuntimeError as exc:
                errors.append(exc)

        session.on_event('CHANNEL_EXECUTE', callback)
        session.answer()
        session.off_event('CHANNEL_EXECUTE', callback)
        results['after'] = session.execute('set', 'RECORD_STEREO=false', timeout=5)

    results, _ = run_call(fs, handler)
    assert errors and 'dispatch' in str(errors[0])
    assert results['after'].get('Application') == 'set'
