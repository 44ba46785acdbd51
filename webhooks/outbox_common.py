"""What the SQLite outbox (outbox.py) and the PostgreSQL one (pg_outbox.py) do alike: their
arguments' checks, the retry policy, sender and per-host state they set up, the memory queue of
webhooks their database did not take, the listing and retry plumbing over their tables, pruning and
the figures /metrics and /healthz report. OutboxCommon is their base class; what differs (who owns
the rows, how the scheduler reads them, which errors mean "the database is away") stays in each.

A subclass sets `_table` (with deliveries, listing, get, count, prune, retry_failed, release_held)
and `_in_flight` (a set or dict of the ids it is sending), and has `_reload()`, `_record_outcome()`,
`held_count()`, `failed_count()`, `_waiting_count()`, `_oldest_waiting()`, `_failed_by_host()`, and
`_REFUSING` / `_KEEPING_UNTIL`, the words its log lines use for a database that does not take writes.
"""
import logging
import time

import gevent.event
import gevent.pool

from .delivery import Sender
from .hosts import Hosts
from .outbox_row import new_row
from .outbox_table import DELIVERED, FAILED, PENDING, WAITING
from .refused_writes import UNSAVED, RefusedWrites
from .retry_timing import RETRY_AFTER_MAX_S, RetryPolicy

PRUNE_EVERY_S = 60.0
PRUNE_BATCH = 2000           # rows deleted per statement (each statement holds the hub)
EXPIRE_BATCH = 500


class OutboxError(Exception):
    """The outbox could not keep a webhook (the caller must know: nothing was queued)."""


def check_arguments(kind, auth_token, concurrency, per_host_concurrency, node_id=True):
    """ValueError for an outbox that could not work: no auth token, (PgOutbox) no node id, no slot."""
    if not auth_token:
        raise ValueError('%s needs an auth token to sign webhooks' % kind)
    if not node_id:
        raise ValueError('%s needs a node id (the owner of its leases)' % kind)
    if concurrency < 1 or per_host_concurrency < 1:
        raise ValueError('concurrency and per_host_concurrency must be >= 1')


class OutboxCommon:
    """The part of Outbox and PgOutbox that is the same in both (see the module docstring)."""

    _REFUSING = 'the database refuses writes'
    _KEEPING_UNTIL = ''

    def _init_policy(self, *, retries, retry_window_s, backoff_base_s, backoff_max_s, concurrency, retention_s,
                     allow_private):
        self.policy = RetryPolicy(retries=retries, retry_window_s=retry_window_s, backoff_base_s=backoff_base_s,
                                  backoff_max_s=backoff_max_s)
        self.concurrency = int(concurrency)
        self.retention_s = None if retention_s is None else float(retention_s)
        self.allow_private = allow_private

    def _init_delivery(self, *, auth_token, connect_timeout_s, read_timeout_s, per_host_concurrency, user_agent,
                       v3_mode, memory_limit):
        """The sender, the per-host state, the delivery greenlets and the memory queue (after the table:
        a table that cannot be opened leaves no sender behind)."""
        self._sender = Sender(auth_token=auth_token, connect_timeout_s=connect_timeout_s,
                              read_timeout_s=read_timeout_s, concurrency=self.concurrency,
                              user_agent=user_agent, v3_mode=v3_mode, allow_private=self.allow_private)
        self._hosts = self._new_hosts(per_host_concurrency)
        self._group = gevent.pool.Group()       # the delivery greenlets
        self._wake = gevent.event.Event()      # set: the scheduler should look again now
        self._changed = gevent.event.Event()   # set: some delivery finished (flush waits on it)
        self._scheduler = None
        self._refused_writes = RefusedWrites(memory_limit)
        self._prepared = False                 # start()'s preparation done
        self._stopping = False
        self._prune_at = 0.0
        self.delivered = 0                     # webhooks delivered by this instance since start

    @property
    def _log(self):
        """The subclass module's logger: its log lines keep their logger name."""
        return logging.getLogger(type(self).__module__)

    def _new_hosts(self, per_host):
        return Hosts(per_host, self.policy.backoff_base_s, self.policy.backoff_max_s, RETRY_AFTER_MAX_S)

    @property
    def lost(self):
        """Webhooks dropped: the database refused them and the memory queue was full."""
        return self._refused_writes.lost

    @property
    def write_error(self):
        """Why the database refuses writes (None: it takes them)."""
        return self._refused_writes.error

    # ---------------------------------------------------------------- enqueue

    def _new_row(self, call_uuid, url, method, params, encoding, event, signer):
        """A new row for enqueue (a bad URL or method: already `failed`, with the reason, logged)."""
        row = new_row(call_uuid, url, method, params, encoding=encoding, event=event, signer=signer,
                      max_attempts=self.policy.max_attempts, allow_private=self.allow_private)
        if row['status'] == FAILED:
            self._log.warning('call %s: webhook %s not sent: %s', row['call_uuid'] or '-', event or '',
                              row['error'])
        return row

    def _send_now(self, row, now):
        """True if a new row can be sent at once: it is pending, the worker runs, a slot and its host are free."""
        return (row['status'] == PENDING and self._running() and len(self._in_flight) < self.concurrency
                and self._hosts.capacity(row['host'], now) > 0)

    # ---------------------------------------------------------------- the memory queue

    def _keep_unsaved(self, row):
        log = self._log
        refused = self._refused_writes
        first = not refused.webhooks
        if not refused.keep(row):
            log.error('call %s: webhook %s lost: %s (%s) and %d webhooks wait in memory already',
                      row['call_uuid'] or '-', row['event'] or '', self._REFUSING, refused.error,
                      len(refused.webhooks))
            raise OutboxError('%s (%s) and the memory queue is full' % (self._REFUSING, refused.error))
        if first:
            log.warning('outbox: %s (%s): keeping webhooks in memory (up to %d)%s', self._REFUSING,
                        refused.error, refused.memory_limit, self._KEEPING_UNTIL)
        self._wake.set()
        return None

    def _record_unrecorded(self):
        """Outcomes the database refused to record, recorded now, in the order they came."""
        outcomes = self._refused_writes.outcomes
        while outcomes:
            row, outcome, at = outcomes[0]
            self._record_outcome(row, outcome, at)
            outcomes.pop(0)

    # ---------------------------------------------------------------- inspection and retry

    def depth(self):
        """Webhooks not yet delivered or failed (pending + in_flight + kept in memory)."""
        return self._waiting_count() + len(self._refused_writes.webhooks)

    def delivered_count(self):
        """Delivered rows in the table (a count of them all: for tests and tools, not /metrics)."""
        return self._table.count(DELIVERED)

    def stats(self):
        """What /metrics and /healthz report: depth, held, failed, delivered (since start), unsaved
        (kept in memory), lost, oldest_pending_age_s (of what is not delivered or failed), failed_by_host,
        hosts_down {host: (failed rounds, s until the next try)}, writable, write_error."""
        now = time.time()
        kept = [t for t in (self._oldest_waiting(), self._refused_writes.oldest_created()) if t is not None]
        return {'depth': self.depth(), 'held': self.held_count(), 'failed': self.failed_count(),
                'delivered': self.delivered, 'unsaved': len(self._refused_writes.webhooks), 'lost': self.lost,
                'oldest_pending_age_s': max(0.0, now - min(kept)) if kept else 0.0,
                'failed_by_host': dict(self._failed_by_host()), 'hosts_down': self._hosts.down(now),
                'writable': self.write_error is None, 'write_error': self.write_error}

    def prune(self, delivered_older_than_s):
        """Delete delivered rows older than the given age; others are kept. Returns the count."""
        return self._table.prune(time.time() - float(delivered_older_than_s))

    def retry_failed(self, call_uuid=None):
        """Give failed webhooks (all, or one call's) and those held behind them a fresh set of
        attempts, in their original order, with their original idempotency keys; returns how many
        failed ones."""
        count = self._table.retry_failed(time.time(), call_uuid)
        self._reload()
        return count

    def release_held(self, call_uuid=None):
        """Send the webhooks held behind failed ones (all, or one call's), in order; the failed ones
        stay failed. Returns how many were released."""
        count = self._table.release_held(time.time(), call_uuid)
        self._reload()
        return count

    def deliveries(self, call_uuid):
        """Every webhook of a call in enqueue order, as dicts (event, url, status, attempts, ...);
        those kept in memory (the database refused them) last, with status 'unsaved' and no id."""
        return self._table.deliveries(call_uuid) + self._refused_writes.listing(call_uuid)

    def webhooks(self, statuses=None, call_uuid=None, limit=100):
        """Webhooks with these statuses (None: every one not delivered, those kept in memory too:
        status 'unsaved'), all or one call's, oldest first, at most `limit`."""
        statuses = WAITING + (UNSAVED,) if statuses is None else tuple(statuses)
        stored = tuple(s for s in statuses if s != UNSAVED)
        rows = self._table.listing(stored, call_uuid, limit) if stored else []
        if UNSAVED in statuses:
            rows += self._refused_writes.listing(call_uuid)[:max(0, limit - len(rows))]
        return rows

    def get_delivery(self, delivery_id):
        return self._table.get(delivery_id)

    # ---------------------------------------------------------------- the worker

    def wait_progress(self, timeout):
        """Wait until some delivery attempt finishes (or `timeout` s); True if one did."""
        self._changed.clear()
        return self._changed.wait(timeout)

    def _stop_deliveries(self, timeout):
        """Stop the scheduler and the deliveries (`timeout` s to finish, then killed); returns the ids
        abandoned in flight. The per-host state starts afresh: killed deliveries did not say they finished."""
        self._stopping = True
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.kill(block=True, timeout=timeout)
            self._scheduler = None
        self._group.join(timeout=timeout)
        abandoned = list(self._in_flight)
        self._group.kill(block=True, timeout=timeout)
        self._in_flight.clear()
        self._hosts = self._new_hosts(self._hosts.per_host)
        return abandoned

    def _attempt(self, row):
        """One HTTP attempt of a row, its host told how it went; returns (outcome, when it ended), the
        outcome (status_code, error, retryable, retry_after)."""
        try:
            status_code, error, retryable, retry_after = self._sender.send(row)
        except Exception as exc:  # bad stored data must not kill the worker
            self._log.exception('call %s: webhook %s could not be sent', row['call_uuid'] or '-', row['id'])
            status_code, error, retryable, retry_after = None, 'internal error: %s' % (exc,), False, None
        now = time.time()
        self._hosts.finished(row['host'], error is not None and retryable, retry_after, now)
        return (status_code, error, retryable, retry_after), now

    def _window_ended(self, row):
        """Why a head whose retry window ended without a delivery failed."""
        return 'not delivered within the %g s retry window (%d attempt(s); last error: %s)' % (
            self.policy.retry_window_s, row['attempts'], row['last_error'] or 'none: its receiver was down')

    def _running(self):
        return self._scheduler is not None and not self._scheduler.dead and not self._stopping

    def _prune(self, now):
        count = self._table.prune(now - self.retention_s, PRUNE_BATCH)
        if count >= PRUNE_BATCH:
            self._prune_at = now + 0.05    # more to delete: soon, after other greenlets had a turn
        else:
            self._prune_at = now + min(PRUNE_EVERY_S, max(self.retention_s / 4, 0.5))

