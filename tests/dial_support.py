"""What the <Dial> and SWML connect scenarios share (tests/test_scenario_dial.py,
tests/test_scenario_swml_connect.py); holds no tests.

The callee is another number of the same callfork: `dial_stack` makes the Dial's dial string a
loopback call to it (`[freeswitch] originate_dialstring`), prefixed `callfork` on a real FreeSWITCH
(whose dialplan routes `callfork<N>` to callfork's socket). The caller speaks CALLER_HZ; callees
play CALLEE_HZ; `channel(recording, n)` reads one channel of a recording callfork serves.
"""
import io

import numpy as np
import soundfile

from harness import Stack

CALLER_HZ, CALLEE_HZ = 300, 700


def dial_stack(real_fs, **kw):
    """(Stack, the prefix of callee numbers in the app's documents)."""
    prefix = "callfork" if real_fs else ""
    env = {"CALLFORK_FREESWITCH_ORIGINATE_DIALSTRING": f"loopback/{prefix}{{to}}/default"}
    return Stack(real=real_fs, env=env, **kw), prefix


def channel(response, n: int) -> np.ndarray:
    """Channel `n` of the WAV in an HTTP response (a recording: 0 = what the channel read)."""
    audio, _rate = soundfile.read(io.BytesIO(response.content), dtype="int16", always_2d=True)
    return np.ascontiguousarray(audio[:, n])


def channels(response) -> int:
    return soundfile.info(io.BytesIO(response.content)).channels


def dial_events(stack, path="/dial-events"):
    """The forms of the Dial callbackUrl requests at `path` so far."""
    return [r.form for r in list(stack.app.requests) if r.path == path]


def wait_dial_events(stack, count, path="/dial-events", timeout=30):
    """The Dial callbackUrl requests at `path`, once there are at least `count`."""
    assert stack.app.wait_for(lambda: len(dial_events(stack, path)) >= count, timeout), \
        [f.get("Event") for f in dial_events(stack, path)]
    return dial_events(stack, path)


def hangup_of(stack, call_uuid, timeout=20):
    """The Hangup webhook of one call (the callee's own call posts one to the same URL)."""
    def find():
        return [r.form for r in list(stack.app.requests)
                if r.path == "/hangup" and r.form.get("CallUUID") == call_uuid]
    assert stack.app.wait_for(find, timeout), f"no Hangup webhook for {call_uuid}"
    return find()[0]
