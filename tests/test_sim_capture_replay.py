"""Replays the controller side of outbound-esl-transcript.txt (connect, myevents, linger,
`event plain ALL`, the same sendmsg sequence, DTMF 1234 injected once the pagd prompt has played)
against the simulator and compares, with the capture: the sequence of event names, the header-name
order of every event (variables and scenario-optional fields aside), the order of the variables the
apps set, and the disconnect notices."""
import re

from sim_support import (Controller, captured_events, event_of, load_blocks, read_until, shape,
                         write_tone_wav)
from switch_sim import CallScript, Simulator

CAPTURE = 'outbound-esl-transcript.txt'


def _captured_commands():
    """The controller's sendmsg blocks from the capture, in order."""
    return [data.decode() for direction, data in load_blocks(CAPTURE)
            if direction == 'APP->FS' and data.startswith(b'sendmsg')]


def test_replay_of_the_outbound_capture(tmp_path):
    media = write_tone_wav(tmp_path / 'hello8k.wav', 440, 0.5)
    rec_path = str(tmp_path / 'outbound.wav')
    commands = []
    for cmd in _captured_commands():
        cmd = re.sub(r'/opt/fstest01/media/hello8k\.wav', media, cmd)
        cmd = re.sub(r'/opt/fstest01/recordings/\S+\.wav', rec_path, cmd)
        cmd = cmd.replace('execute-app-arg: 1000\n', 'execute-app-arg: 200\n')        # sleep: shorter
        cmd = cmd.replace('Hello from flite. Please enter your code.', 'Hello.')        # speak: shorter
        commands.append(cmd)
    assert len(commands) == 9

    def controller(esl, rec):
        esl.send('connect\n\n')
        _h, _b, raw = esl.frame()
        uuid = dict(l.split(': ', 1) for l in raw.decode().split('\n') if ': ' in l)['Unique-ID']
        for text in ('myevents', 'linger', 'event plain ALL'):
            esl.send(text + '\n\n')
            read_until(esl, rec, lambda h, b: h.get('Content-Type') == 'command/reply')
        for cmd in commands:
            esl.send(cmd)
            read_until(esl, rec, lambda h, b: h.get('Content-Type') == 'command/reply')
            app = re.search(r'execute-app-name: (\S+)', cmd).group(1)

            def done(h, b, app=app):
                if h.get('Content-Type') != 'text/event-plain':
                    return False
                ev = event_of(b)
                if ev['Event-Name'] == 'PLAYBACK_STOP' and ev['Playback-File-Path'].startswith('tone_stream'):
                    esl.send('api sim_dtmf %s 1234\n\n' % uuid)     # the capture injected 1234 here
                return ev['Event-Name'] == 'CHANNEL_EXECUTE_COMPLETE' and ev['Application'] == app
            read_until(esl, rec, done)
        read_until(esl, rec, lambda h, b: h.get('Content-Type') == 'text/disconnect-notice')
        esl.send('exit\n\n')
        read_until(esl, rec, lambda h, b: h.get('Content-Type') == 'text/disconnect-notice')
        rec['closed'] = esl.closed()

    ctl = Controller(controller)
    sim = Simulator(socket_target=ctl.address).start()
    try:
        call = sim.place_call(CallScript(to='stream1', caller_name='CaptureCaller'))
        rec = ctl.result(20)
        call.wait(10)
    finally:
        sim.stop()
        ctl.stop()
    assert rec['error'] is None, rec['error']

    ours = [(h, b) for h, b, _raw in rec['frames'] if h.get('Content-Type') == 'text/event-plain']
    our_names = [event_of(b)['Event-Name'] for _h, b in ours]
    captured = captured_events(CAPTURE)
    cap_names = [name for name, _h in captured]
    assert len(cap_names) > 40 and our_names == cap_names

    # header-name order of each event equals the captured event at the same position
    for (_h, body), (name, cap_headers) in zip(ours, captured):
        head = body.split(b'\n\n', 1)[0].decode()
        names = [(line.split(': ', 1)[0], None) for line in head.split('\n') if ': ' in line]
        assert shape(names) == shape(cap_headers), name

    # the variables set by the apps appear in the same relative order (FreeSWITCH moves a re-set
    # variable to the end); compare the final HANGUP_COMPLETE lists restricted to the common names
    def var_names(headers):
        return [k for k, _v in headers if k.startswith('variable_')]
    ours_hc = var_names([tuple(l.split(': ', 1)) for l in ours[-1][1].decode().split('\n') if ': ' in l])
    cap_hc = var_names(captured[-1][1])
    common = set(ours_hc) & set(cap_hc)
    assert {'variable_pagd_digits', 'variable_read_result', 'variable_record_ms', 'variable_hangup_cause',
            'variable_playback_ms', 'variable_billsec', 'variable_RECORD_STEREO'} <= common
    assert [v for v in ours_hc if v in common] == [v for v in cap_hc if v in common]

    # pagd result as in the capture
    pagd = [event_of(b) for _h, b in ours if event_of(b)['Event-Name'] == 'CHANNEL_EXECUTE_COMPLETE'
            and event_of(b)['Application'] == 'play_and_get_digits'][0]
    assert pagd['variable_pagd_digits'] == '1234' and pagd['variable_read_result'] == 'success'
    assert rec['closed']
