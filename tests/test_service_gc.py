"""A finished call is freed by reference counting, with no help from the cyclic GC: its session,
ESL connection, call context and interpreter are in no reference cycle once the call is over (a
cycle would leave every call's objects to the GC's full collections, which pause the whole hub
for tens of ms under load). And `freeze_startup_heap` moves what start-up left to the permanent
generation."""
import gc

from esl_app.protocol import ESLConnection
from callfork.service import freeze_startup_heap
from esl_app.session import CallSession
from verbs import CallContext, Interpreter

from harness import Stack

CALL_TYPES = (CallSession, ESLConnection, CallContext, Interpreter)


def _live(types):
    # gc.get_objects() lists what the GC tracks, unreachable cycles not yet collected included
    return sum(1 for o in gc.get_objects() if isinstance(o, types))


def test_a_finished_call_leaves_nothing_for_the_cyclic_gc():
    with Stack() as stack:
        stack.app.document("/answer", "<Response><Speak>hi</Speak></Response>")
        stack.call(to="1000").wait(30)          # one call first: lazy imports and pools
        stack.app.wait_event("Hangup", timeout=10)
        stack.wait(lambda: not stack.service.calls and stack.service.outbox.depth() == 0)
        gc.collect()
        before = _live(CALL_TYPES)
        gc.disable()
        try:
            for _ in range(3):
                stack.call(to="1000").wait(30)
            stack.app.wait_event("Hangup", timeout=10, count=4)
            stack.wait(lambda: not stack.service.calls and stack.service.outbox.depth() == 0)
            stack.wait(lambda: not stack.service.outbound.sessions)
            after = _live(CALL_TYPES)
        finally:
            gc.enable()
    # the ESL control connection lives on (one ESLConnection): equal counts, nothing left per call
    assert after == before, (before, after)


def test_freeze_startup_heap_moves_live_objects_to_the_permanent_generation():
    try:
        freeze_startup_heap()
        assert gc.get_freeze_count() > 1000
        assert gc.get_count()[0] < 100           # the collect before it emptied the young generation
    finally:
        gc.unfreeze()                           # the rest of the test session collects as usual
