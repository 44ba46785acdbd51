"""audio_fork.playout: marks/checkpoints fire only after the audio queued before them was pulled,
at once when idle (Twilio rule), never after clear (clear returns them); padding; flood cap."""
from audio_fork.playout import PlayoutQueue


def audio(n, seed=1):
    return bytes(((i * 13 + seed) & 0xFF) for i in range(n))


def make(**kw):
    fired = []
    q = PlayoutQueue(320, on_mark=fired.append, **kw)
    return q, fired


def test_checkpoint_fires_only_after_its_audio_was_pulled():
    q, fired = make()
    data = audio(320 * 3 + 160)
    q.append(data)
    assert q.add_mark("a") is False
    frames = []
    for _ in range(3):
        frames.append(q.pull())
        assert fired == []
    last = q.pull()  # the partial frame, padded because a mark follows it
    assert fired == ["a"]
    assert last == data[960:] + b"\x00" * 160
    assert b"".join(frames) == data[:960]
    assert q.pull() is None


def test_mark_fires_at_once_when_nothing_is_queued():
    q, fired = make()
    assert q.add_mark("idle") is True and fired == ["idle"]
    q.append(audio(320))
    q.pull()
    assert q.add_mark("after-drain") is True and fired == ["idle", "after-drain"]


def test_marks_between_audio_fire_in_order():
    q, fired = make()
    q.append(audio(640, 1))
    q.add_mark("m1")
    q.append(audio(320, 2))
    q.add_mark("m2")
    q.pull()
    assert fired == []
    q.pull()
    assert fired == ["m1"]
    q.pull()
    assert fired == ["m1", "m2"]


def test_clear_returns_pending_marks_and_they_never_fire():
    q, fired = make()
    q.append(audio(3200))
    q.add_mark("x")
    q.append(audio(320))
    q.add_mark("y")
    q.pull()
    assert q.clear() == ["x", "y"]
    assert q.pull() is None and q.queued_bytes == 0
    for _ in range(20):
        q.pull()
    assert fired == []
    assert q.add_mark("z") is True and fired == ["z"]


def test_partial_frame_waits_until_more_audio_or_flush():
    q, _ = make()
    q.append(audio(100))
    assert q.pull() is None and not q.has_frame()
    q.append(audio(300, 5))
    assert len(q.pull()) == 320
    assert q.pull() is None
    q.flush()
    assert q.pull() == audio(300, 5)[220:] + b"\x00" * 240


def test_odd_sized_appends_are_carried():
    q, _ = make()
    data = audio(641)
    q.append(data[:3])
    q.append(data[3:])
    assert q.pull() + q.pull() == data[:640]


def test_flood_is_capped_and_counted():
    q, _ = make(max_seconds=1.0)
    first = audio(16000, 3)
    accepted = q.append(first + audio(16000, 4))
    assert accepted == 16000
    assert q.dropped_bytes == 16000 and q.overflows == 1
    assert q.append(audio(320)) == 0 and q.dropped_bytes == 16320
    out = b"".join(q.pull() for _ in range(50))
    assert out == first
    assert q.pull() is None
    assert q.append(audio(320)) == 320  # room again once played


def test_module_buffer_model_flushes_like_jambonz_and_times_the_audio_end():
    from audio_fork.module_buffer import ModuleBuffer
    mb = ModuleBuffer()
    # the first 1280 samples (8 frames) stay in the module's prebuffer, then 640 at a time
    assert [mb.push(160, 0.0) for _ in range(8)] == [False] * 7 + [True]
    assert mb.heard_end == 1280 / 8000 and mb.pending == 0
    assert [mb.push(160, 0.16) for _ in range(4)] == [False] * 3 + [True]
    # an utterance's tail (2 frames) + padding: flushed by the 2nd padding frame; the audio ends
    # before the padding does
    mb.push(160, 1.0)
    mb.push(160, 1.02)
    assert not mb.push(160, 1.04, padding=True)
    assert mb.push(160, 1.06, padding=True)
    assert mb.audio_end == 1.06 + 320 / 8000 and mb.heard_end == 1.06 + 640 / 8000
