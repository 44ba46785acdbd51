"""What the <Conference> scenarios share (tests/test_scenario_conference.py,
tests/test_scenario_conference_more.py); holds no tests: counting the 100 ms windows of what a
caller heard that hold some tones and not others, and the answer document that puts a caller in a
room, placing a caller and waiting for its enter callback."""
from stream_scenarios import rms, tone, tone_power, write_wav


def windows_with_tones(samples, present, absent=(), win=0.1, rate=8000):
    """How many 100 ms windows hold every tone of `present` (each at least 15 % of the energy) and
    none of `absent` (each under 1 %)."""
    n = int(win * rate)
    count = 0
    for i in range(0, len(samples) - n + 1, n):
        w = samples[i:i + n]
        if rms(w) < 300:
            continue
        if all(tone_power(w, f) >= 0.15 for f in present) and all(tone_power(w, f) < 0.01 for f in absent):
            count += 1
    return count


def conference_doc(stack, room, after="", **attrs):
    """<Response><Conference callbackUrl=/conf attrs...>room</Conference>after</Response>."""
    extra = "".join(f' {k}="{v}"' for k, v in attrs.items())
    return (f'<Response><Conference callbackUrl="{stack.app.url("/conf")}"{extra}>{room}</Conference>'
            f'{after}</Response>')


def join_room(stack, count, audio_hz=None, to="1001", **script):
    """Place a caller (speaking `audio_hz`, or silent; `script`: the harness call's hangup_after,
    keep_heard, ...) and wait until the room has seen `count` ConferenceEnter callbacks."""
    if audio_hz:
        script["audio"] = write_wav(stack.data_dir / f"tone-{audio_hz}.wav", tone(audio_hz, 30, level=9000))
    call = stack.call(to=to, **script)
    stack.app.wait_event("ConferenceEnter", timeout=20, count=count, path="/conf")
    return call


def enters(stack):
    """The room's ConferenceEnter callbacks so far."""
    return [r.form for r in stack.app.events("ConferenceEnter", path="/conf")]
