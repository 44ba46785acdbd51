"""Defects found reviewing issue 14's TwiML and Twilio REST work, each pinned by a test that failed
before its fix."""
from __future__ import annotations

import pytest

from verbs.document import parse_document
from verbs.errors import XMLError
from verbs.twiml.parser import parse_twiml


@pytest.mark.parametrize("attribute", ['action="http://[::1"', 'action="//[::1"'])
def test_a_malformed_relative_or_absolute_url_is_a_document_error(attribute):
    # urlsplit raises ValueError for an unclosed IPv6 bracket: it must be a line:column error of the
    # document (the call then ends as for any bad TwiML, its fallback URL is tried), not a crash
    with pytest.raises(XMLError) as info:
        parse_twiml(f"<Response><Gather {attribute}/></Response>".encode())
    assert "line 1:11" in str(info.value) and "action" in str(info.value)
    with pytest.raises(XMLError):
        parse_document(b"<Response><Redirect>//[::1</Redirect></Response>", None, api="twilio")


def _tone_wav(path, seconds: float, rate: int = 8000):
    import numpy as np
    import soundfile
    t = np.arange(int(seconds * rate)) / rate
    soundfile.write(str(path), (np.sin(2 * np.pi * 440 * t) * 8000).astype("int16"), rate, subtype="PCM_16")


def test_concurrent_requests_for_the_other_format_all_get_the_whole_file(tmp_path):
    # an app (or two) asking for <RecordingUrl>.mp3 at once: each conversion used the same .part
    # file, so one of them found it moved away (404) or the kept MP3 mixed two writers
    import gevent
    import soundfile

    from callfork.recording_files import recording_file
    rec_id = "0f0e0d0c-0b0a-4908-8706-050403020100"
    _tone_wav(tmp_path / f"{rec_id}.wav", 20.0)
    jobs = [gevent.spawn(recording_file, tmp_path, f"{rec_id}.mp3") for _ in range(4)]
    gevent.joinall(jobs, timeout=60)
    assert all(job.successful() for job in jobs), [job.exception for job in jobs]
    path, media_type = jobs[0].value
    assert media_type == "audio/mpeg"
    info = soundfile.info(str(path))
    assert abs(info.duration - 20.0) < 0.2
    assert not list(tmp_path.glob("*.part"))


def test_a_conversion_made_while_the_recording_was_written_is_made_again(tmp_path):
    # RecordingUrl is given while the recording runs (recordingStatusCallback in-progress): an .mp3
    # asked for then was converted from the unfinished WAV and kept, truncated, for good
    import os

    import soundfile

    from callfork.recording_files import recording_file
    rec_id = "1f0e0d0c-0b0a-4908-8706-050403020100"
    wav = tmp_path / f"{rec_id}.wav"
    _tone_wav(wav, 1.0)
    early, _ = recording_file(tmp_path, f"{rec_id}.mp3")
    assert abs(soundfile.info(str(early)).duration - 1.0) < 0.2
    _tone_wav(wav, 5.0)                       # the recorder went on writing
    later = os.stat(early).st_mtime_ns + 1_000_000_000
    os.utime(wav, ns=(later, later))          # (a coarse filesystem clock must not hide it)
    path, _ = recording_file(tmp_path, f"{rec_id}.mp3")
    assert abs(soundfile.info(str(path)).duration - 5.0) < 0.2


def test_recordings_converted_at_once_in_the_thread_pool_all_finish(tmp_path):
    # soundfile's open lock was a gevent lock (soundfile is imported after monkey-patching): pool
    # threads contending for it deadlocked within a few rounds, and the greenlets waiting on them
    # (a call's <Record> trim, a RecordingUrl.mp3 request) for good
    import gevent

    from callfork.recording_files import recording_file
    ids = [f"{n:08x}-0b0a-4908-8706-050403020100" for n in range(4)]
    for rec_id in ids:
        _tone_wav(tmp_path / f"{rec_id}.wav", 10.0)
    for round_ in range(15):
        for path in tmp_path.glob("*.mp3"):
            path.unlink()
        jobs = [gevent.spawn(recording_file, tmp_path, f"{rec_id}.mp3") for rec_id in ids]
        gevent.joinall(jobs, timeout=20)
        assert all(job.successful() for job in jobs), f"round {round_}: {[job.exception for job in jobs]}"


def test_a_list_page_that_fills_at_the_end_of_a_store_batch_still_has_a_next_page():
    # twilio_api reads the store 500 calls at a time; a page that filled up exactly at the end of a
    # batch answered next_page_uri null, so the package's list stopped there with calls left out
    import time
    import uuid

    from twilio_support import client, twilio_stack
    with twilio_stack() as stack:
        now = time.time()
        for n in range(501):
            stack.service.store.upsert_call(str(uuid.uuid4()), direction="inbound", from_number="15551230001",
                                            to_number="15551230002", status="completed", start_time=now - n,
                                            end_time=now - n + 1)
        twilio = client(stack)
        assert len(twilio.calls.list(page_size=500)) == 501
        assert len(twilio.calls.list(page_size=20, status="completed")) == 501


def test_a_streams_status_callback_may_be_relative_to_the_document():
    # https://www.twilio.com/docs/voice/twiml/stream: statusCallback "A relative or absolute URL";
    # a relative one was a document error that ended the call
    from types import SimpleNamespace
    verbs, _ = parse_twiml(b'<Response><Start><Stream url="wss://bot.example/s" statusCallback="/stream-status"/>'
                           b'</Start><Connect><Stream url="wss://bot.example/b" statusCallback="events"/></Connect>'
                           b'</Response>')
    call = SimpleNamespace(document_url="https://app.example/voice/answer")
    assert verbs[0].children[0].stream_options(False, call).status_url == "https://app.example/stream-status"
    assert verbs[1].children[0].stream_options(True, call).status_url == "https://app.example/voice/events"


def test_an_empty_conference_wait_url_means_silence_not_a_bad_document():
    # https://www.twilio.com/docs/voice/twiml/conference: waitUrl "TwiML URL, empty string"; the
    # empty string (no hold music) was refused as an empty URL, ending the call
    from types import SimpleNamespace

    from verbs.twiml.conference import TwimlMember
    verbs, _ = parse_twiml(b'<Response><Dial><Conference waitUrl="">room</Conference></Dial></Response>')
    dial = verbs[0]
    call = SimpleNamespace(auth_id="AC" + "0" * 32, uuid="0f0e0d0c-0b0a-4908-8706-050403020100")
    assert TwimlMember(call, dial, dial.conference)._wait_sound() == "off"   # conference <room> moh off
    verbs, _ = parse_twiml(b'<Response><Dial><Conference>room</Conference></Dial></Response>')
    assert TwimlMember(call, verbs[0], verbs[0].conference)._wait_sound() is None   # the profile's
