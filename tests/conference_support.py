"""What the <Conference> scenarios share (tests/test_scenario_conference.py,
tests/test_scenario_conference_more.py); holds no tests: counting the 100 ms windows of what a
caller heard that hold some tones and not others, and the answer document that puts a caller in a
room."""
from stream_scenarios import rms, tone_power


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
