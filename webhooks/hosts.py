"""Per-receiver-host state of the outbox, in memory: how many deliveries to each host are in flight
(at most `per_host` at once, so one dead or slow receiver cannot take every delivery slot), when its
first pending webhook falls due, and whether it is down.

A host is down after an attempt to it failed in a way that says nothing about the webhook itself
(no connection, a timeout, 5xx, 408, 429): nothing more goes to it until a pause has passed
(`base_s` doubling per failed round up to `max_s`, 50-100% of that at random, at least the
receiver's Retry-After), then one probe at a time until an attempt gets an answer that is not such a
failure. So a dead receiver sees about one attempt per pause however many webhooks wait for it, and
the cost of waiting is rows in SQLite, not attempts. Entries are dropped when a host has nothing in
flight, nothing due and no failure to remember.
"""
import random


class _Host:
    __slots__ = ('in_flight', 'failures', 'paused_until', 'due')

    def __init__(self):
        self.in_flight = 0
        self.failures = 0          # failed rounds in a row (0: up)
        self.paused_until = 0.0
        self.due = None            # no earlier than this does a pending head of this host fall due


class Hosts:
    def __init__(self, per_host, base_s, max_s, retry_after_max_s):
        self.per_host = max(1, int(per_host))
        self.base_s = float(base_s)
        self.max_s = float(max_s)
        self.retry_after_max_s = float(retry_after_max_s)
        self._hosts = {}

    def _get(self, host):
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _Host()
        return state

    def _tidy(self, host, state):
        if not state.in_flight and not state.failures and state.due is None:
            self._hosts.pop(host, None)

    def capacity(self, host, now):
        """How many more deliveries may start to `host` now."""
        state = self._hosts.get(host)
        if state is None:
            return self.per_host
        if state.paused_until > now:
            return 0
        return max(0, (1 if state.failures else self.per_host) - state.in_flight)

    def due(self, host, when):
        """A pending head of `host` falls due at `when` (or later: a hint, checked against the table)."""
        state = self._get(host)
        if state.due is None or when < state.due:
            state.due = when

    def set_due(self, host, when):
        """What the table says: the host's first pending head falls due at `when` (None: it has none)."""
        state = self._hosts.get(host)
        if state is not None:
            state.due = when
            self._tidy(host, state)
        elif when is not None:
            self._get(host).due = when

    def ready(self, now):
        """Hosts with something due and room for a delivery, the longest due first."""
        found = [(state.due, host) for host, state in self._hosts.items()
                 if state.due is not None and state.due <= now and self.capacity(host, now) > 0]
        return [host for _, host in sorted(found)]

    def next_wake(self, now):
        """When a host next gets something due or out of its pause (None: nothing to wait for;
        hosts at their in-flight limit are woken by a finishing delivery instead)."""
        wake = None
        for state in self._hosts.values():
            if state.due is None:
                continue
            at = max(state.due, state.paused_until)
            if at <= now and state.in_flight >= (1 if state.failures else self.per_host):
                continue
            wake = at if wake is None else min(wake, at)
        return wake

    def started(self, host):
        self._get(host).in_flight += 1

    def finished(self, host, down, retry_after, now):
        """An attempt to `host` ended: `down` True when it failed as a dead receiver does, False when
        the receiver answered (accepted or refused the webhook)."""
        state = self._get(host)
        state.in_flight = max(0, state.in_flight - 1)
        if not down:
            state.failures = 0
            state.paused_until = 0.0
            self._tidy(host, state)
            return
        if state.paused_until > now:
            return   # another attempt of the same round already paused it
        state.failures += 1
        cap = min(self.max_s, self.base_s * (2 ** min(state.failures - 1, 30)))
        pause = random.uniform(0.5, 1.0) * cap
        if retry_after is not None:
            pause = max(pause, min(retry_after, self.retry_after_max_s))
        state.paused_until = now + pause

    def down(self, now):
        """{host: (failed rounds in a row, seconds until its next attempt may go)} of hosts that are
        down and have webhooks waiting for them."""
        return {host: (state.failures, max(0.0, state.paused_until - now))
                for host, state in self._hosts.items()
                if state.failures and (state.due is not None or state.in_flight)}
