"""What waits on one call's events, released by the CallSession's dispatch: `Execution` (an app
queued with sendmsg, resolved by its CHANNEL_EXECUTE_COMPLETE) and `EventQueue` (events picked by
name for one consumer). Every wait ends: `None` as a timeout means MAX_WAIT_S.
"""
import collections
import time

import gevent
import gevent.event

from .errors import CallGone, ESLError, ESLTimeout

MAX_WAIT_S = 4 * 3600.0   # "no timeout" still ends: no call outlives this wait


def wait_s(timeout):
    return MAX_WAIT_S if timeout is None else max(0.0, float(timeout))


class Execution:
    """An app queued with sendmsg; resolved by its CHANNEL_EXECUTE_COMPLETE."""

    def __init__(self, session, app, arg, app_uuid):
        self.session = session
        self.app = app
        self.arg = arg
        self.app_uuid = app_uuid
        self._result = gevent.event.AsyncResult()

    @property
    def done(self):
        return self._result.ready()

    def wait(self, timeout=None):
        """The CHANNEL_EXECUTE_COMPLETE ESLEvent. Raises CallGone, ESLTimeout."""
        self.session._refuse_in_dispatch('Execution.wait')
        try:
            return self._result.get(timeout=wait_s(timeout))
        except gevent.Timeout:
            raise ESLTimeout('[%s] %s did not complete within %ss' % (self.session.uuid, self.app, timeout)) from None

    def on_done(self, callback):
        """callback(self) once the app completed or failed (at once if it has); it runs in the
        greenlet that resolved it and must not block."""
        self._result.rawlink(lambda _result: callback(self))

    def _complete(self, event):
        if not self._result.ready():
            self._result.set(event)

    def _fail(self, exc):
        if not self._result.ready():
            self._result.set_exception(exc)

    def __repr__(self):
        return '<Execution %s %s%s>' % (self.app, self.app_uuid, ' done' if self.done else '')


class EventQueue:
    """Events whose Event-Name or Event-Subclass is in `names` ('*' = all; 'DISCONNECT' = the
    disconnect notices), from subscription on. `get()` raises CallGone only when nothing is left
    and nothing more can come (socket closed or CHANNEL_HANGUP_COMPLETE delivered)."""

    def __init__(self, session, names):
        self.session = session
        self.names = frozenset(names)
        self._items = collections.deque()
        self._wakeup = gevent.event.Event()
        self._closed = False

    def matches(self, event):
        if '*' in self.names:
            return True
        if event.content_type == 'text/disconnect-notice':
            return 'DISCONNECT' in self.names
        return event.name in self.names or (event.subclass is not None and event.subclass in self.names)

    def _put(self, event):
        self._items.append(event)
        self._wakeup.set()

    def _wake(self):
        self._wakeup.set()

    def __len__(self):
        return len(self._items)

    def get(self, timeout=None):
        self.session._refuse_in_dispatch('EventQueue.get')
        deadline = time.monotonic() + wait_s(timeout)
        while True:
            if self._items:
                return self._items.popleft()
            if self._closed:
                raise ESLError('event queue is closed')
            if self.session.events_finished:
                raise CallGone(self.session.hangup_cause, self.session.uuid)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ESLTimeout('[%s] no %s event within %ss' % (self.session.uuid, '/'.join(sorted(self.names)), timeout))
            self._wakeup.clear()
            self._wakeup.wait(remaining)

    def close(self):
        self._closed = True
        self.session._remove_queue(self)
        self._wakeup.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
