"""audio_fork.dialects: message shapes (field names, nesting, JSON types) against the documented
examples of Vobiz's stream-events pages and Twilio's media-streams websocket-messages page, counters, and parsing
of what apps send (including pipecat's exact frames)."""
import base64
import json

import pytest

from audio_fork.dialects import (Checkpoint, ClearAudio, PlayAudio, SendDigits, StopStream,
                                 TwilioDialect, VobizDialect)
from audio_fork.errors import ProtocolError


def shape(obj):
    """Structure of a JSON value: dict keys -> shapes, list -> shape of items, scalars -> type name."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return ["list"] + sorted({json.dumps(shape(v)) for v in obj})
    return type(obj).__name__


# --- documented examples (copied from the references) -------------------------------------------

VOBIZ_START_DOC = {
    "sequenceNumber": 0, "event": "start",
    "start": {"callId": "5401fd2e-6344-40df-a22c-c8ffea7a92e7", "streamId": "c4dfd815-a92a-4140-ab85-5ff28c004116",
              "accountId": "500025", "tracks": ["inbound"],
              "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 16000}},
    "extra_headers": "{}"}
VOBIZ_MEDIA_DOC = {
    "sequenceNumber": 2, "streamId": "c4dfd815-a92a-4140-ab85-5ff28c004116", "event": "media",
    "media": {"track": "inbound", "timestamp": "1778597597091", "chunk": 2, "payload": "base64-user-audio..."},
    "extra_headers": "{}"}
VOBIZ_CLEARED_DOC = {"sequenceNumber": 0, "event": "clearedAudio", "streamId": "20170ada-f610-433b-8758-c02a2aab3662"}
PLIVO_DTMF_DOC = {"event": "dtmf", "sequenceNumber": 50, "streamId": "87654321-x",
                  "dtmf": {"track": "inbound", "digit": "5", "timestamp": "1705312250000"}, "extra_headers": "x"}

TWILIO_CONNECTED_DOC = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
TWILIO_START_DOC = {
    "event": "start", "sequenceNumber": "1",
    "start": {"accountSid": "ACX", "streamSid": "MZX", "callSid": "CAX", "tracks": ["inbound"],
              "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
              "customParameters": {"FirstName": "Jane", "LastName": "Doe", "RemoteParty": "Bob"}},
    "streamSid": "MZX"}
TWILIO_MEDIA_DOC = {"event": "media", "sequenceNumber": "3",
                    "media": {"track": "outbound", "chunk": "1", "timestamp": "5", "payload": "no+JhoaJjpz..."},
                    "streamSid": "MZX"}
TWILIO_STOP_DOC = {"event": "stop", "sequenceNumber": "5", "stop": {"accountSid": "ACX", "callSid": "CAX"},
                   "streamSid": "MZX"}
TWILIO_DTMF_DOC = {"event": "dtmf", "streamSid": "MZX", "sequenceNumber": "5",
                   "dtmf": {"track": "inbound_track", "digit": "1"}}
TWILIO_MARK_DOC = {"event": "mark", "sequenceNumber": "4", "streamSid": "MZX", "mark": {"name": "my label"}}

SID = "c4dfd815-a92a-4140-ab85-5ff28c004116"
CALL = "5401fd2e-6344-40df-a22c-c8ffea7a92e7"


class FakeClock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


# --- Vobiz ---------------------------------------------------------------------------------------

def test_vobiz_start_and_media_match_documented_shapes():
    clock = FakeClock(1778597597.071)
    d = VobizDialect(SID, CALL, account_id="500025", encoding="l16", sample_rate=16000, clock=clock)
    start = json.loads(d.start())
    assert shape(start) == shape(VOBIZ_START_DOC)
    assert start["sequenceNumber"] == 0 and start["extra_headers"] == "{}"
    assert start["start"] == {"callId": CALL, "streamId": SID, "accountId": "500025", "tracks": ["inbound"],
                              "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 16000}}
    payloads = [bytes([i]) * 640 for i in range(3)]
    msgs = [json.loads(d.media("inbound", p, i * 20)) for i, p in enumerate(payloads)]
    for i, (m, p) in enumerate(zip(msgs, payloads)):
        assert shape(m) == shape(VOBIZ_MEDIA_DOC)
        assert m["sequenceNumber"] == i + 1 and m["media"]["chunk"] == i + 1
        assert m["media"]["timestamp"] == str(1778597597071 + 20 * i)
        assert base64.b64decode(m["media"]["payload"]) == p
        assert m["streamId"] == SID and m["event"] == "media"


def test_vobiz_both_tracks_and_mulaw_start():
    d = VobizDialect(SID, CALL, track="both", encoding="mulaw", sample_rate=8000)
    start = json.loads(d.start())
    assert start["start"]["tracks"] == ["inbound", "outbound"]
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000}
    a = json.loads(d.media("inbound", b"\xff" * 160, 0))
    b = json.loads(d.media("outbound", b"\x7f" * 160, 0))
    assert (a["media"]["track"], b["media"]["track"]) == ("inbound", "outbound")
    assert b["media"]["chunk"] == a["media"]["chunk"] + 1  # per-stream monotonic
    assert b["sequenceNumber"] == a["sequenceNumber"] + 1


def test_vobiz_acks_dtmf_and_extra_headers():
    d = VobizDialect(SID, CALL, extra_headers={"tenant": "acme", "agent": "7"}, extra_headers_mode="plivo")
    start = json.loads(d.start())
    assert start["extra_headers"] == "tenant=acme;agent=7"
    played = json.loads(d.played("response-3"))
    assert played["event"] == "playedStream" and played["name"] == "response-3"  # the documented minimum
    assert played["streamId"] == SID and isinstance(played["sequenceNumber"], int)
    cleared = json.loads(d.cleared())
    assert shape(cleared) == shape(VOBIZ_CLEARED_DOC) and cleared["streamId"] == SID
    dtmf = json.loads(d.dtmf("5"))
    assert shape(dtmf) == shape(PLIVO_DTMF_DOC) and dtmf["dtmf"]["digit"] == "5"
    assert d.closing() is None and d.mark_cleared("x") is None  # no in-band stop; voided checkpoints
    seqs = [start["sequenceNumber"], played["sequenceNumber"], cleared["sequenceNumber"], dtmf["sequenceNumber"]]
    assert seqs == [0, 1, 2, 3]


def test_ids_are_json_escaped_exactly():
    odd = 'id"with\\quotes'
    m = json.loads(VobizDialect(odd, CALL).media("inbound", b"\x00\x01", 0))
    assert m["streamId"] == odd
    t = json.loads(TwilioDialect(odd, CALL).media("inbound", b"\xff", 0))
    assert t["streamSid"] == odd


def b64(data):
    return base64.b64encode(data).decode()


@pytest.mark.parametrize("media,expect", [
    ({"contentType": "audio/x-l16", "sampleRate": 16000}, ("l16", 16000)),
    ({"contentType": "audio/x-l16", "sampleRate": "24000"}, ("l16", 24000)),
    ({"contentType": "audio/x-l16;rate=8000"}, ("l16", 8000)),
    ({"contentType": "audio/x-mulaw;rate=8000", "sampleRate": "8000"}, ("mulaw", 8000)),
    ({"contentType": "audio/x-mulaw", "sampleRate": 8000}, ("mulaw", 8000)),
])
def test_vobiz_parse_play_audio_variants(media, expect):
    d = VobizDialect(SID, CALL)
    audio = bytes(range(32))
    msg = d.parse(json.dumps({"event": "playAudio", "media": dict(media, payload=b64(audio))}))
    assert msg == PlayAudio(audio, *expect)


def test_vobiz_parse_pipecat_frames_and_controls():
    d = VobizDialect("vb-1", CALL)
    # pipecat-vobiz exact frames (signalwire_twilio.md §5.1)
    play = d.parse('{"event": "playAudio", "media": {"contentType": "audio/x-mulaw", "sampleRate": 8000, '
                   '"payload": "' + b64(b"\xff" * 160) + '"}, "streamId": "vb-1"}')
    assert play == PlayAudio(b"\xff" * 160, "mulaw", 8000)
    assert d.parse('{"event": "clearAudio", "streamId": "vb-1"}') == ClearAudio()
    assert d.parse('{"event":"checkpoint","streamId":"vb-1","name":"response-3"}') == Checkpoint("response-3")
    assert d.parse('{"event":"stop","streamId":"vb-1"}') == StopStream()


@pytest.mark.parametrize("text", [
    "not json", "[1,2]", '{"no":"event"}', '{"event":"frobnicate"}',
    '{"event":"playAudio"}',
    '{"event":"playAudio","media":{"contentType":"audio/x-l16","sampleRate":8000,"payload":"%%%"}}',
    '{"event":"playAudio","media":{"contentType":"audio/x-mulaw","sampleRate":16000,"payload":""}}',
    '{"event":"playAudio","media":{"contentType":"audio/x-l16","sampleRate":44100,"payload":""}}',
    '{"event":"playAudio","media":{"contentType":"audio/x-l16;rate=16000","sampleRate":8000,"payload":""}}',
    '{"event":"playAudio","media":{"contentType":"audio/mpeg","sampleRate":8000,"payload":""}}',
    '{"event":"playAudio","media":{"contentType":"audio/x-l16","sampleRate":8000,"payload":"AAAA"}}',
    '{"event":"checkpoint"}',
    '{"event":"clearAudio","streamId":"someone-else"}',
])
def test_vobiz_parse_rejects_bad_input_with_protocol_error(text):
    with pytest.raises(ProtocolError):
        VobizDialect(SID, CALL).parse(text)


# --- Twilio --------------------------------------------------------------------------------------

def test_twilio_messages_match_documented_shapes():
    params = TWILIO_START_DOC["start"]["customParameters"]
    d = TwilioDialect("MZX", "CAX", account_id="ACX", custom_parameters=params)
    assert json.loads(d.connected()) == TWILIO_CONNECTED_DOC
    start = json.loads(d.start())
    assert shape(start) == shape(TWILIO_START_DOC)
    assert start["start"]["streamSid"] == start["streamSid"] == "MZX" and start["start"]["callSid"] == "CAX"
    assert start["start"]["customParameters"] == params
    numeric = json.loads(TwilioDialect("s", "c", custom_parameters={"n": 5}).start())
    assert numeric["start"]["customParameters"] == {"n": "5"}  # values are strings (§3.3)
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
    assert start["sequenceNumber"] == "1"
    media = [json.loads(d.media("inbound", b"\xff" * 160, i * 20)) for i in range(3)]
    for i, m in enumerate(media):
        assert shape(m) == shape(TWILIO_MEDIA_DOC)
        assert m["sequenceNumber"] == str(2 + i) and m["media"]["chunk"] == str(1 + i)
        assert m["media"]["timestamp"] == str(20 * i)
    out = json.loads(d.media("outbound", b"\x00" * 160, 0))
    assert out["media"]["chunk"] == "1" and out["media"]["track"] == "outbound"  # per-track chunk
    mark = json.loads(d.played("my label"))
    assert shape(mark) == shape(TWILIO_MARK_DOC) and mark["mark"] == {"name": "my label"}
    dtmf = json.loads(d.dtmf("1"))
    assert shape(dtmf) == shape(TWILIO_DTMF_DOC)
    assert json.loads(d.dtmf("2", 120))["dtmf"]["duration"] == 120  # SignalWire's extra field
    stop = json.loads(d.closing())
    assert shape(stop) == shape(TWILIO_STOP_DOC) and stop["stop"] == {"accountSid": "ACX", "callSid": "CAX"}
    assert d.cleared() is None
    seqs = [int(x["sequenceNumber"]) for x in [start, *media, out, mark, dtmf, stop]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_twilio_l16_start_uses_capital_l():
    start = json.loads(TwilioDialect("s", "c", encoding="l16", sample_rate=24000).start())
    assert start["start"]["mediaFormat"] == {"encoding": "audio/x-L16", "sampleRate": 24000, "channels": 1}


def test_twilio_parse_pipecat_and_signalwire_frames():
    d = TwilioDialect("MZ123", "CA1")
    assert d.parse('{"event": "media", "streamSid": "MZ123", "media": {"payload": "' + b64(b"\x01\x02") + '"}}') \
        == PlayAudio(b"\x01\x02", "mulaw", 8000)
    assert d.parse('{"event": "clear", "streamSid": "MZ123"}') == ClearAudio()
    assert d.parse('{"event": "clear"}') == ClearAudio()  # Telnyx: no streamSid
    assert d.parse('{"event":"mark","streamSid":"MZ123","mark":{"name":"my label"}}') == Checkpoint("my label")
    assert d.parse('{"event":"dtmf","streamSid":"MZ123","dtmf":{"digit":"5"}}') == SendDigits("5")


@pytest.mark.parametrize("text", [
    '{"event":"media"}', '{"event":"media","media":{"payload":7}}', '{"event":"mark","mark":{}}',
    '{"event":"dtmf","dtmf":{"digit":"x"}}', '{"event":"playAudio"}', '{"event":"clear","streamSid":"other"}',
    b'\x00\x01',
])
def test_twilio_parse_rejects_bad_input(text):
    with pytest.raises(ProtocolError):
        TwilioDialect("MZ123", "CA1").parse(text)
