"""Replays record-session-transcript.txt (six record_session variants on one outbound call, linger 1)
with the caller saying a 440 Hz tone (the capture's READ stream) while the channel plays another
tone (its WRITE stream). Expected file formats and per-channel content come from
record-session-results.json; the event-name sequence from the transcript."""
import json
import os
import re

import soundfile

from sim_support import (CAPTURES, Controller, captured_events, event_of, load_blocks, read_until,
                         tone_share, write_tone_wav)
from switch_sim import CallScript, Simulator

CAPTURE = 'record-session-transcript.txt'
RESULTS = json.loads((CAPTURES / 'record-session-results.json').read_text())


def test_record_session_variants(tmp_path):
    caller = write_tone_wav(tmp_path / 'tone440.wav', 440, 12.0)
    speech = write_tone_wav(tmp_path / 'speech.wav', 1300, 0.4)
    commands = []
    for direction, data in load_blocks(CAPTURE):
        if direction == 'APP->FS':
            text = data.decode()
            text = re.sub(r'/opt/fstest01/media/\S+\.wav', speech, text)
            text = re.sub(r'/opt/fstest01/recordings/rec/', str(tmp_path) + '/', text)
            commands.append(text)
    assert commands[0] == 'connect\n\n' and 'hangup' in commands[-1]

    def controller(esl, rec):
        esl.send(commands[0])
        esl.frame()
        for cmd in commands[1:]:
            esl.send(cmd)
            read_until(esl, rec, lambda h, b: h.get('Content-Type') == 'command/reply')
            m = re.search(r'execute-app-name: (\S+)', cmd)
            if m and m.group(1) != 'hangup':
                read_until(esl, rec, lambda h, b, app=m.group(1): h.get('Content-Type') == 'text/event-plain'
                           and event_of(b)['Event-Name'] == 'CHANNEL_EXECUTE_COMPLETE'
                           and event_of(b)['Application'] == app)
        # linger 1: FreeSWITCH closes the socket itself after the linger time
        read_until(esl, rec, lambda h, b: h.get('Content-Disposition') == 'disconnect')
        rec['closed'] = esl.closed()

    ctl = Controller(controller)
    sim = Simulator(socket_target=ctl.address).start()
    try:
        call = sim.place_call(CallScript(to='stream2', audio=caller))
        rec = ctl.result(30)
        call.wait(10)
    finally:
        sim.stop()
        ctl.stop()
    assert rec['error'] is None, rec['error']
    assert rec['closed']

    ours = [event_of(b)['Event-Name'] for h, b, _r in rec['frames'] if h.get('Content-Type') == 'text/event-plain']
    assert ours == [name for name, _h in captured_events(CAPTURE)]
    notices = [h for h, _b, _r in rec['frames'] if h.get('Content-Type') == 'text/disconnect-notice']
    assert [n['Content-Disposition'] for n in notices] == ['linger', 'disconnect']
    assert notices[0]['Linger-Time'] == '1'

    stops = [event_of(b) for h, b, _r in rec['frames'] if h.get('Content-Type') == 'text/event-plain'
             and event_of(b)['Event-Name'] == 'RECORD_STOP']
    for variant, stop in zip(RESULTS['variants'], stops):
        expected = variant['analysis']
        path = str(tmp_path / (variant['name'] + '.wav'))
        assert stop['Record-File-Path'] == path
        info = soundfile.info(path)
        assert (info.channels, info.samplerate) == (expected['channels'], expected['sample_rate']), variant['name']
        assert os.path.getsize(path) == 44 + 2 * info.channels * info.frames
        assert int(stop['variable_record_file_size']) == os.path.getsize(path)
        data, rate = soundfile.read(path, dtype='int16', always_2d=True)
        for ch, stats in enumerate(expected['channel_stats']):
            share = tone_share(data[:, ch], rate, 440)
            captured = stats['frac_energy_440Hz']
            if captured > 0.95:
                assert share > 0.95, variant['name']
            elif captured < 0.05:
                assert share < 0.05, variant['name']
            else:
                assert 0.05 < share < 0.95, variant['name']      # a mix of both directions
    causes = [s['Record-Completion-Cause'] for s in stops]
    assert causes == [e['Record-Completion-Cause'] for e in RESULTS['record_events'] if e['Event-Name'] == 'RECORD_STOP']
    # the last one was finalised by the hangup
    assert stops[-1]['Answer-State'] == 'hangup'
