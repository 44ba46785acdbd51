"""An outbound-socket call against a small controller written here (raw TCP, no callfork code):
connect / myevents / linger / event / sendmsg -> answer, record_session, playback of a WAV,
play_and_get_digits with scripted DTMF, stop_record_session, hangup, linger, exit.

Expectations come from the captures (frame layout, header-name order per event, the hangup
sequence, the disconnect notices) and from first principles (the recorded file holds the caller's
tone and the played tone; what the caller heard holds the played tone)."""
import uuid as uuid_mod

import pytest
import soundfile

from sim_support import (Controller, captured_events, event_of, load_blocks, read_until, shape,
                         split_frame, tone_share, write_tone_wav)
from switch_sim import CallScript, Simulator

MYEVENTS = {'CHANNEL_ANSWER', 'CHANNEL_APPLICATION', 'CHANNEL_BRIDGE', 'CHANNEL_CREATE', 'CHANNEL_DATA',
            'CHANNEL_DESTROY', 'CHANNEL_EXECUTE', 'CHANNEL_EXECUTE_COMPLETE', 'CHANNEL_HANGUP',
            'CHANNEL_HANGUP_COMPLETE', 'CHANNEL_ORIGINATE', 'CHANNEL_UUID', 'CHANNEL_OUTGOING',
            'CHANNEL_PARK', 'CHANNEL_PROGRESS', 'CHANNEL_PROGRESS_MEDIA', 'CHANNEL_STATE',
            'CHANNEL_UNBRIDGE', 'CHANNEL_UNPARK', 'DETECTED_SPEECH', 'DTMF', 'NOTALK', 'TALK'}


def _captured_shapes():
    shapes = {}
    for capture in ('outbound-esl-transcript.txt', 'record-session-transcript.txt'):
        for name, headers in captured_events(capture):
            shapes.setdefault(name, set()).add(shape(headers))
    return shapes


CAPTURED_SHAPES = _captured_shapes()


def _connect_reply_shape(capture):
    for direction, data in load_blocks(capture):
        if direction == 'FS->APP' and data.startswith(b'Event-Name: CHANNEL_DATA'):
            return data
    raise AssertionError('no connect reply in capture')


def is_event(h, _b=None):
    return h.get('Content-Type') == 'text/event-plain'


class Steps:
    """Helpers for a controller script talking raw ESL."""

    def __init__(self, esl, rec):
        self.esl, self.rec = esl, rec

    def cmd(self, text):
        self.esl.send(text + '\n\n')
        h, _b = read_until(self.esl, self.rec, lambda h, b: not is_event(h))
        return h

    def execute(self, app, arg='', lock=True, body_form=False, wait=True):
        uid = str(uuid_mod.uuid4())
        lines = ['sendmsg', 'call-command: execute', 'execute-app-name: %s' % app]
        if lock:
            lines.append('event-lock: true')
        lines.append('Event-UUID: %s' % uid)
        if body_form:
            payload = arg.encode()
            lines += ['content-type: text/plain', 'content-length: %d' % len(payload)]
            self.esl.sock.sendall(('\n'.join(lines) + '\n\n').encode() + payload)
        else:
            if arg:
                lines.append('execute-app-arg: %s' % arg)
            self.esl.send('\n'.join(lines) + '\n\n')
        h, _b = read_until(self.esl, self.rec, lambda h, b: not is_event(h))
        assert h['Reply-Text'] == '+OK'
        if wait:
            return self.wait_complete(uid)
        return uid

    def wait_complete(self, uid, timeout=10):
        _h, body = read_until(self.esl, self.rec, lambda h, b: is_event(h) and event_of(b).get(
            'Event-Name') == 'CHANNEL_EXECUTE_COMPLETE' and event_of(b).get('Application-UUID') == uid, timeout)
        return event_of(body)

    def wait_event(self, name, timeout=10):
        _h, body = read_until(self.esl, self.rec, lambda h, b: is_event(h) and event_of(b).get('Event-Name') == name,
                              timeout)
        return event_of(body)

    def until_notice(self, timeout=10):
        h, _b = read_until(self.esl, self.rec, lambda h, b: h.get('Content-Type') == 'text/disconnect-notice',
                           timeout)
        return h


def events_in(rec):
    out = []
    for h, body, raw in rec['frames']:
        if is_event(h):
            out.append((event_of(body), body, raw))
    return out


@pytest.fixture
def media(tmp_path):
    return {
        'caller': write_tone_wav(tmp_path / 'caller.wav', 500, 4.0),
        # 16 kHz stereo: the simulator must resample and mono-ise it
        'prompt': write_tone_wav(tmp_path / 'prompt.wav', 1000, 1.0, rate=16000, channels=2),
        'dir': tmp_path,
    }


def run_call(script_fn, call_script, timeout=20):
    ctl = Controller(script_fn)
    sim = Simulator(socket_target=ctl.address).start()
    try:
        call = sim.place_call(call_script)
        rec = ctl.result(timeout)
        summary = call.wait(timeout)
        return sim, call, rec, summary
    finally:
        sim.stop()
        ctl.stop()


def test_full_call_flow(media):
    rec_path = str(media['dir'] / 'rec' / 'session.wav')
    heard_path = str(media['dir'] / 'heard.wav')

    def controller(esl, rec):
        s = Steps(esl, rec)
        esl.send('connect\n\n')
        _h, _b, raw = esl.frame()
        rec['connect'] = raw
        rec['uuid'] = dict(l.split(': ', 1) for l in raw.decode().split('\n') if ': ' in l)['Unique-ID']
        assert s.cmd('myevents')['Reply-Text'] == '+OK Events Enabled'
        assert s.cmd('myevents')['Reply-Text'] == '-ERR aready enabled.'
        assert s.cmd('linger')['Reply-Text'] == '+OK will linger'
        assert s.cmd('event plain PLAYBACK_START PLAYBACK_STOP RECORD_START RECORD_STOP')['Reply-Text'] == \
            '+OK event listener enabled plain'
        assert s.cmd('getvar sip_to_user')['Reply-Text'] == '15557654321'
        rec['answer'] = s.execute('answer')
        rec['record'] = s.execute('record_session', rec_path)
        rec['playback'] = s.execute('playback', media['prompt'])
        rec['pagd'] = s.execute('play_and_get_digits',
                                r'1 4 1 5000 # silence_stream://4000 silence_stream://250 pagd_input \d+ 2000',
                                lock=False, body_form=True)
        rec['stop'] = s.execute('stop_record_session', rec_path)
        rec['hangup'] = s.execute('hangup', 'NORMAL_CLEARING')
        rec['notice'] = s.until_notice()
        rec['before_exit'] = len(rec['frames'])
        h = s.cmd('exit')
        rec['bye'] = h
        _h, _b, raw = esl.frame()
        rec['final'] = raw
        rec['closed'] = esl.closed()

    sim, call, rec, summary = run_call(controller, CallScript(
        to='15557654321', audio=media['caller'], dtmf=[('42#', 1.9)], save_heard=heard_path))
    assert rec['error'] is None, rec['error']
    uuid = rec['uuid']
    assert uuid == call.uuid

    # connect reply: the capture's layout (no outer framing, Channel-* profile first, reply headers last)
    captured = _connect_reply_shape('outbound-esl-transcript.txt')
    ours = rec['connect']
    assert shape(split_frame(ours + b'\n\n')[0]) == shape(split_frame(captured + b'\n\n')[0])
    assert ours.endswith(b'\nContent-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\n'
                         b'Control: full\n\n')

    # every event frame: Content-Length first, then Content-Type, exact length; header names in capture order
    events = events_in(rec)
    for ev, body, raw in events:
        assert raw.startswith(b'Content-Length: %d\nContent-Type: text/event-plain\n\n' % len(body))
        name = ev['Event-Name']
        assert name in CAPTURED_SHAPES, name
        assert shape([(k, None) for k in _names(body)]) in CAPTURED_SHAPES[name], name
        assert ev['Unique-ID'] == uuid      # myevents filter
    names = [ev['Event-Name'] for ev, _b, _r in events]
    assert 'CHANNEL_CALLSTATE' not in names and 'MEDIA_BUG_START' not in names   # not subscribed

    # Event-UUID -> Application-UUID, Application-Response, results
    assert rec['answer']['Application'] == 'answer' and rec['answer']['Answer-State'] == 'answered'
    assert rec['playback']['Application-Response'] == 'FILE PLAYED'
    assert 950 <= int(rec['playback']['variable_playback_ms']) <= 1050
    pb_stop = [ev for ev, _b, _r in events if ev['Event-Name'] == 'PLAYBACK_STOP']
    assert pb_stop[0]['Playback-Status'] == 'done' and pb_stop[0]['Playback-File-Path'] == media['prompt']
    assert rec['pagd']['variable_pagd_input'] == '42'
    assert rec['pagd']['variable_read_result'] == 'success'
    assert rec['pagd']['variable_read_terminator_used'] == '#'
    assert [ev['DTMF-Digit'] for ev, _b, _r in events if ev['Event-Name'] == 'DTMF'] == ['4', '2', '#']
    # the pagd prompt was barged in by the first digit
    pagd_pb = [ev for ev in pb_stop if ev['Playback-File-Path'] == 'silence_stream://4000']
    assert pagd_pb and pagd_pb[0]['Playback-Status'] == 'break'

    rec_stop = [ev for ev, _b, _r in events if ev['Event-Name'] == 'RECORD_STOP'][0]
    assert rec_stop['Record-File-Path'] == rec_path
    assert rec_stop['Record-Completion-Cause'] == 'success-maxtime'
    info = soundfile.info(rec_path)
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, 'PCM_16')
    import os
    assert os.path.getsize(rec_path) == 44 + 2 * info.frames == int(rec_stop['variable_record_file_size'])
    recorded, _ = soundfile.read(rec_path, dtype='int16')
    assert tone_share(recorded, 8000, 500) > 0.2       # what the caller said
    assert tone_share(recorded, 8000, 1000) > 0.05     # what the caller heard (the prompt)

    heard, rate = soundfile.read(heard_path, dtype='int16')
    assert rate == 8000
    assert tone_share(heard, 8000, 1000) > 0.5
    assert tone_share(heard, 8000, 500) < 0.01

    # hangup path: the same event sequence as the capture, restricted to what this socket subscribed
    subscribed = MYEVENTS | {'PLAYBACK_START', 'PLAYBACK_STOP', 'RECORD_START', 'RECORD_STOP'}
    cap = [n for n, _h in captured_events('outbound-esl-transcript.txt')]
    cap_tail = cap[_last_index(cap, 'CHANNEL_HANGUP') - 1:]
    ours_tail = names[_last_index(names, 'CHANNEL_HANGUP') - 1:]
    assert ours_tail == [n for n in cap_tail if n in subscribed]
    hc = [ev for ev, _b, _r in events if ev['Event-Name'] == 'CHANNEL_HANGUP_COMPLETE'][0]
    for var in ('hangup_cause', 'duration', 'billsec', 'start_stamp', 'answer_stamp', 'end_stamp',
                'start_epoch', 'answer_epoch', 'end_epoch', 'billmsec', 'uduration'):
        assert 'variable_' + var in hc, var
    assert hc['variable_hangup_cause'] == 'NORMAL_CLEARING' and hc['variable_last_app'] == 'hangup'

    # linger notice after HANGUP_COMPLETE, exit -> +OK bye + final notice + close
    assert rec['notice']['Content-Disposition'] == 'linger' and rec['notice']['Linger-Time'] == '-1'
    assert rec['notice']['Controlled-Session-UUID'] == uuid
    assert rec['bye']['Reply-Text'] == '+OK bye'
    assert rec['final'] == (b'Content-Type: text/disconnect-notice\nControlled-Session-UUID: %s\n'
                            b'Content-Disposition: disconnect\nContent-Length: 67\n\n'
                            b'Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n' % uuid.encode())
    assert rec['closed']
    assert summary['answered'] and summary['hangup_cause'] == 'NORMAL_CLEARING'
    assert summary['events'][-1] == 'CHANNEL_HANGUP_COMPLETE'


def _names(body):
    head = body.split(b'\n\n', 1)[0].decode()
    return [line.split(': ', 1)[0] for line in head.split('\n') if ': ' in line]


def _last_index(seq, item):
    return len(seq) - 1 - list(reversed(seq)).index(item)


def _basic_controller(steps_fn, linger='linger'):
    def controller(esl, rec):
        s = Steps(esl, rec)
        esl.send('connect\n\n')
        _h, _b, raw = esl.frame()
        rec['uuid'] = dict(l.split(': ', 1) for l in raw.decode().split('\n') if ': ' in l)['Unique-ID']
        s.cmd('myevents')
        if linger:
            s.cmd(linger)
        s.cmd('event plain PLAYBACK_START PLAYBACK_STOP RECORD_START RECORD_STOP')
        steps_fn(s, rec)
    return controller


def test_caller_hangs_up_mid_playback(media):
    long_tone = write_tone_wav(media['dir'] / 'long.wav', 700, 3.0)

    def steps(s, rec):
        s.execute('answer')
        rec['playback'] = s.execute('playback', long_tone)
        rec['notice'] = s.until_notice()
        s.cmd('exit')

    _sim, _call, rec, summary = run_call(_basic_controller(steps),
                                         CallScript(to='100', hangup_after=1.0))
    assert rec['error'] is None, rec['error']
    names = [ev['Event-Name'] for ev, _b, _r in events_in(rec)]
    assert names.index('CHANNEL_HANGUP') < names.index('PLAYBACK_STOP') < names.index('CHANNEL_HANGUP_COMPLETE')
    stop = [ev for ev, _b, _r in events_in(rec) if ev['Event-Name'] == 'PLAYBACK_STOP'][0]
    # a playback ended by hangup reports done (capture: PLAYBACK_STOP after uuid_kill)
    assert stop['Playback-Status'] == 'done' and stop['Answer-State'] == 'hangup'
    assert rec['playback']['Application-Response'] == 'FILE PLAYED'
    assert int(rec['playback']['variable_playback_ms']) < 2000
    assert summary['hangup_cause'] == 'NORMAL_CLEARING'


def test_without_linger_the_socket_closes_at_hangup(media):
    def steps(s, rec):
        s.execute('answer')
        s.execute('playback', write_tone_wav(media['dir'] / 't.wav', 700, 3.0), wait=False)
        rec['notice'] = s.until_notice()
        rec['closed'] = s.esl.closed()

    _sim, _call, rec, summary = run_call(_basic_controller(steps, linger=None),
                                         CallScript(to='100', hangup_after=0.8))
    assert rec['error'] is None, rec['error']
    names = [ev['Event-Name'] for ev, _b, _r in events_in(rec)]
    assert names[-1] == 'CHANNEL_HANGUP' and 'CHANNEL_HANGUP_COMPLETE' not in names
    assert rec['notice']['Content-Disposition'] == 'disconnect' and rec['closed']
    assert summary['events'][-1] == 'CHANNEL_HANGUP_COMPLETE'


def test_unknown_app_hangs_up_without_execute_events(media):
    def steps(s, rec):
        s.execute('answer')
        s.execute('no_such_app', 'x', wait=False)
        rec['hangup'] = s.wait_event('CHANNEL_HANGUP')
        rec['notice'] = s.until_notice()
        s.execute('playback', media['prompt'], wait=False)     # after hangup: ignored, no events
        s.cmd('exit')

    _sim, _call, rec, summary = run_call(_basic_controller(steps), CallScript(to='100'))
    assert rec['error'] is None, rec['error']
    assert rec['hangup']['Hangup-Cause'] == 'DESTINATION_OUT_OF_ORDER'
    apps = [ev.get('Application') for ev, _b, _r in events_in(rec) if ev['Event-Name'].startswith('CHANNEL_EXECUTE')]
    assert 'no_such_app' not in apps and 'playback' not in apps
    assert summary['hangup_cause'] == 'DESTINATION_OUT_OF_ORDER'


def test_uuid_break_during_playback(media):
    def steps(s, rec):
        s.execute('answer')
        uid = s.execute('playback', write_tone_wav(media['dir'] / 'long.wav', 700, 5.0), wait=False)
        s.wait_event('PLAYBACK_START')
        s.esl.send('api uuid_break %s\n\n' % rec['uuid'])
        h, body = read_until(s.esl, s.rec, lambda h, b: h.get('Content-Type') == 'api/response')
        rec['break_reply'] = body
        rec['stop'] = s.wait_event('PLAYBACK_STOP')
        rec['complete'] = s.wait_complete(uid)
        s.execute('hangup')
        s.until_notice()
        s.cmd('exit')

    _sim, _call, rec, _summary = run_call(_basic_controller(steps), CallScript(to='100'))
    assert rec['error'] is None, rec['error']
    assert rec['break_reply'] == b'+OK\n'
    assert rec['stop']['Playback-Status'] == 'break'
    assert rec['complete']['Application-Response'] == 'FILE PLAYED'
    assert int(rec['complete']['variable_playback_ms']) < 2000


def test_media_failures_and_tts(media):
    def steps(s, rec):
        s.execute('ring_ready')
        rec['pre'] = s.execute('pre_answer')
        rec['silence0'] = s.execute('playback', 'silence_stream://0')
        rec['missing'] = s.execute('playback', str(media['dir'] / 'nope.wav'))
        rec['tts'] = s.execute('playback', 'tts://flite|kal|hello world')
        rec['speak'] = s.execute('speak', 'flite|slt|hello world')
        rec['bad_speak'] = s.execute('speak', 'hello')          # no engine/voice -> hangup
        rec['notice'] = s.until_notice()
        s.cmd('exit')

    _sim, _call, rec, summary = run_call(_basic_controller(steps), CallScript(to='100'))
    assert rec['error'] is None, rec['error']
    names = [ev['Event-Name'] for ev, _b, _r in events_in(rec)]
    assert names.index('CHANNEL_PROGRESS') < names.index('CHANNEL_PROGRESS_MEDIA')
    assert 'CHANNEL_ANSWER' not in names                       # early media only, never answered
    assert rec['pre']['Answer-State'] == 'early'
    assert rec['silence0']['Application-Response'] == 'FILE NOT FOUND'
    assert rec['missing']['Application-Response'] == 'FILE NOT FOUND'
    assert rec['tts']['Application-Response'] == 'FILE PLAYED'
    starts = [ev['Playback-File-Path'] for ev, _b, _r in events_in(rec) if ev['Event-Name'] == 'PLAYBACK_START']
    assert starts == ['tts://flite|kal|hello world']          # failed opens and speak fire no PLAYBACK events
    # documented synthetic TTS length: 65 ms per character
    assert int(rec['tts']['variable_playback_ms']) == 65 * len('hello world')
    assert summary['hangup_cause'] == 'DESTINATION_OUT_OF_ORDER'


def test_record_stereo_and_blocking_record(media):
    stereo = str(media['dir'] / 'stereo.wav')
    voicemail = str(media['dir'] / 'vm.wav')
    caller = write_tone_wav(media['dir'] / 'speech.wav', 500, 1.0)   # 1 s of "speech", then silence

    def steps(s, rec):
        s.execute('answer')
        s.execute('set', 'RECORD_STEREO=true')
        s.execute('record_session', stereo)
        s.execute('playback', 'tone_stream://%(400,0,1000)')
        s.execute('stop_record_session', stereo)
        rec['record'] = s.execute('record', '%s 10 200 1' % voicemail)
        s.execute('hangup')
        s.until_notice()
        s.cmd('exit')

    _sim, _call, rec, _summary = run_call(_basic_controller(steps), CallScript(to='100', audio=caller))
    assert rec['error'] is None, rec['error']
    data, rate = soundfile.read(stereo, dtype='int16')
    assert rate == 8000 and data.shape[1] == 2
    assert tone_share(data[:, 0], 8000, 500) > 0.9 and tone_share(data[:, 0], 8000, 1000) < 0.01
    assert tone_share(data[:, 1], 8000, 1000) > 0.9 and tone_share(data[:, 1], 8000, 500) < 0.01
    # blocking record: stopped by 1 s of silence after the caller's tone ended
    assert rec['record']['variable_silence_hits_exhausted'] == 'true'
    record_ms = int(rec['record']['variable_record_ms'])
    assert 1000 <= record_ms <= 3000
    assert soundfile.info(voicemail).frames == int(rec['record']['variable_record_samples'])


def test_first_command_other_than_connect_gets_no_reply():
    def controller(esl, rec):
        esl.send('myevents\n\n')          # processed, but its reply is never written
        esl.send('connect\n\n')
        headers, _b, raw = esl.frame()
        rec['first'] = raw
        s = Steps(esl, rec)
        rec['again'] = s.cmd('myevents')['Reply-Text']
        s.execute('hangup', 'CALL_REJECTED', wait=False)
        rec['notice'] = s.until_notice()

    _sim, _call, rec, summary = run_call(controller, CallScript(to='100'))
    assert rec['error'] is None, rec['error']
    assert rec['first'].startswith(b'Event-Name: CHANNEL_DATA\n')
    assert rec['again'] == '-ERR aready enabled.'       # the first myevents did take effect
    assert summary['hangup_cause'] == 'CALL_REJECTED'


def test_silent_controller_is_dropped_after_the_first_command_window():
    def controller(esl, rec):
        rec['closed'] = esl.closed(timeout=10)   # we never send anything

    ctl = Controller(controller)
    sim = Simulator(socket_target=ctl.address).start()
    sim.first_command_timeout = 0.3
    try:
        call = sim.place_call(CallScript(to='100'))
        rec = ctl.result(10)
        summary = call.wait(10)
    finally:
        sim.stop()
        ctl.stop()
    assert rec['closed'] is True
    assert not summary['answered'] and 'CHANNEL_PARK' not in summary['events']


def test_without_full_only_basic_commands(media):
    def controller(esl, rec):
        esl.send('connect\n\n')
        esl.frame()
        s = Steps(esl, rec)
        rec['linger'] = s.cmd('linger')['Reply-Text']
        rec['api'] = s.cmd('api status')['Reply-Text']
        rec['myevents'] = s.cmd('myevents')['Reply-Text']
        s.execute('hangup', wait=False)
        s.until_notice()

    ctl = Controller(controller)
    sim = Simulator(socket_target=ctl.address, socket_flags='async').start()
    try:
        call = sim.place_call(CallScript(to='100'))
        rec = ctl.result(10)
        call.wait(10)
    finally:
        sim.stop()
        ctl.stop()
    assert rec['error'] is None, rec['error']
    assert rec['linger'] == '-ERR command not found' and rec['api'] == '-ERR command not found'
    assert rec['myevents'] == '+OK Events Enabled'


def _two_playbacks(lock):
    def steps(s, rec):
        s.execute('answer')
        first = s.execute('playback', 'tone_stream://%(600,0,500)', lock=lock, wait=False)
        second = s.execute('playback', 'tone_stream://%(200,0,900)', lock=lock, wait=False)
        rec['first'] = s.wait_complete(first)
        s.execute('hangup')
        s.until_notice()
        s.cmd('exit')
    return steps


def test_non_locked_messages_nest_inside_a_running_playback():
    """mod_event_socket (FreeSWITCH's switch_ivr_parse_all_events): without event-lock a queued message runs nested in the
    running app (the outer playback pauses); with event-lock they run one after the other."""
    orders = {}
    for lock in (False, True):
        _sim, _call, rec, _summary = run_call(_basic_controller(_two_playbacks(lock)), CallScript(to='100'))
        assert rec['error'] is None, rec['error']
        seq = []
        for ev, _b, _r in events_in(rec):
            name = ev['Event-Name']
            if name in ('CHANNEL_EXECUTE', 'CHANNEL_EXECUTE_COMPLETE') and ev.get('Application') == 'playback':
                seq.append((name, ev['Application-Data'][-4:-1]))
            elif name in ('PLAYBACK_START', 'PLAYBACK_STOP'):
                seq.append((name, ev['Playback-File-Path'][-4:-1]))
        orders[lock] = seq
    outer, inner = '500', '900'
    assert orders[False] == [
        ('CHANNEL_EXECUTE', outer), ('PLAYBACK_START', outer),
        ('CHANNEL_EXECUTE', inner), ('PLAYBACK_START', inner), ('PLAYBACK_STOP', inner),
        ('CHANNEL_EXECUTE_COMPLETE', inner),
        ('PLAYBACK_STOP', outer), ('CHANNEL_EXECUTE_COMPLETE', outer)]
    assert orders[True] == [
        ('CHANNEL_EXECUTE', outer), ('PLAYBACK_START', outer), ('PLAYBACK_STOP', outer),
        ('CHANNEL_EXECUTE_COMPLETE', outer),
        ('CHANNEL_EXECUTE', inner), ('PLAYBACK_START', inner), ('PLAYBACK_STOP', inner),
        ('CHANNEL_EXECUTE_COMPLETE', inner)]
