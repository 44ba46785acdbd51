"""The webhook outbox in PostgreSQL (`[store] postgres_dsn`), shared by the nodes of a cluster, with
the public interface and guarantees of webhooks.Outbox (outbox.py): a webhook is committed before
`enqueue` returns (or, while PostgreSQL is away, kept in memory and stored later, in order:
refused_writes.py), a call's webhooks go out in enqueue order, every attempt carries the same
idempotency key, retries, backoff, Retry-After and the retry window are RetryPolicy's
(retry_timing.py), one attempt is delivery.py's Sender, a new row outbox_row.py's, per-host limits
and pauses hosts.py's. The SQL and the leases are in pg_outbox_table.py.

Why a loop of its own rather than Outbox driving a PostgreSQL table: Outbox keeps the truth about
its table in memory (the counts, each host's due time, the first window's end, which rows are in
flight) and changes it with each of its own writes, which is only right while one process owns the
table. Here other nodes insert, claim, settle and take over rows, so this loop reads the table
instead: at once after a local enqueue or a finished attempt, and every `poll_s`, it renews its own
leases and claims due call heads per host as its slots and host limits allow (leased to this node
for `lease_s`); at most every `poll_s` it also takes back rows whose lease ran out, fails heads whose
window ended, and reads the counts /metrics and /healthz report (so they are the cluster's, at most
`poll_s` old): those change with time and other nodes, not with this node's wake-ups, which come
about once per webhook on a busy node (five statements less per webhook).

A node that dies leaves its in-flight rows leased: when the lease runs out, any node delivers them
(at least once, same keys), and the calls' later rows after them, in order. While PostgreSQL is
away: enqueue keeps webhooks in memory (returns None; past `memory_limit`, OutboxError), attempts
in flight finish and their outcomes wait in memory, nothing new is claimed; all is written, in
order, once it is back (tried every second). An outcome recorded after the lease was lost changes
nothing (the node that took the row over delivers it again).
"""
import logging
import time

import gevent

from records.pg_db import PgDatabase, unavailable

from .outbox_common import EXPIRE_BATCH, OutboxCommon, OutboxError, check_arguments
from .outbox_table import IN_FLIGHT
from .pg_outbox_table import PgOutboxTable
from .refused_writes import REFUSED_RETRY_S

log = logging.getLogger(__name__)


class PgOutbox(OutboxCommon):
    """See the module docstring. `node_id` owns this node's leases; the other arguments are
    Outbox's (synchronous and max_db_bytes, SQLite's, are accepted and ignored); what it shares
    with Outbox is OutboxCommon's (outbox_common.py)."""

    _REFUSING = 'PostgreSQL is unavailable'
    _KEEPING_UNTIL = ''

    def __init__(self, dsn, *, node_id, auth_token, lease_s=30.0, poll_s=0.5, retries=None,
                 retry_window_s=21600.0, backoff_base_s=2.0, backoff_max_s=300.0, connect_timeout_s=3,
                 read_timeout_s=10, concurrency=16, per_host_concurrency=8, retention_s=None, memory_limit=10000,
                 user_agent=None, v3_mode='docs', allow_private=True, pool_size=4, db_timeout_s=5.0, db=None,
                 synchronous=None, max_db_bytes=None):
        check_arguments('PgOutbox', auth_token, concurrency, per_host_concurrency, node_id=node_id)
        self.node_id = str(node_id)
        self.lease_s = float(lease_s)
        self.poll_s = float(poll_s)
        self._init_policy(retries=retries, retry_window_s=retry_window_s, backoff_base_s=backoff_base_s,
                          backoff_max_s=backoff_max_s, concurrency=concurrency, retention_s=retention_s,
                          allow_private=allow_private)
        self._db = db or PgDatabase(dsn, pool_size=pool_size, timeout_s=db_timeout_s,
                                    application_name='callfork-outbox')
        self._table = PgOutboxTable(self._db)
        self._init_delivery(auth_token=auth_token, connect_timeout_s=connect_timeout_s,
                            read_timeout_s=read_timeout_s, per_host_concurrency=per_host_concurrency,
                            user_agent=user_agent, v3_mode=v3_mode, memory_limit=memory_limit)
        self._in_flight = {}                   # id -> row this node is sending
        # when (time.monotonic()) to renew this node's leases next, and to look for lapsed leases and
        # ended windows and read the counts: a wall-clock deadline would stop both for as long as the
        # clock was stepped back, and the server's clock would end the leases meanwhile
        self._renew_at = 0.0
        self._look_around_at = 0.0
        self._due_hosts = set()                # hosts the table had due heads for at the last look
        self.lost_leases = 0                   # outcomes not recorded: another node had taken the row over
        self._counts = (0, 0, {}, None)        # the table's (waiting, held, failed by host, oldest waiting)
        try:
            self._table.create()
            self._counts = self._table.counts()
        except Exception as exc:
            if not unavailable(exc):
                raise
            self._refused_writes.refused(exc)
            log.error('outbox: PostgreSQL is unavailable at start (%s); webhooks wait in memory', exc)

    # ---------------------------------------------------------------- enqueue and inspection

    def enqueue(self, call_uuid, url, method, params, *, encoding='form', event=None, signer='vobiz', key=None):
        """As Outbox.enqueue: the delivery id once the row is committed, None when it is kept in
        memory (PostgreSQL is away), OutboxError when it can be neither. With `key` (an idempotency
        key the caller derives, e.g. two nodes closing one dead node's call) a webhook whose key is
        stored already is not stored again: its delivery id is returned."""
        row = self._new_row(call_uuid, url, method, params, encoding, event, signer)
        if key is not None:
            row.update(key=str(key), idempotency_key=str(key), dedupe=True)
        now = row['created_at']
        if self._refused_writes.webhooks or not self._table.ready:
            return self._keep_unsaved(row)
        send_now = key is None and self._send_now(row, now)   # (a stored twin may be in flight elsewhere)
        try:
            delivery_id, stored, head, window = self._table.insert(row, now, send_now, self.node_id, self.lease_s)
        except Exception as exc:
            if not unavailable(exc):
                log.error('call %s: could not store webhook %s for %s: %s', row['call_uuid'] or '-', event, url, exc)
                raise OutboxError('could not store webhook: %s' % (exc,)) from exc
            self._refused_writes.refused(exc)
            return self._keep_unsaved(row)
        self._refused_writes.taken()
        self._stored(row, delivery_id, stored, window)
        return delivery_id

    def _stored(self, row, delivery_id, stored, window):
        row['id'] = delivery_id
        if stored == IN_FLIGHT:
            row.update(attempts=1, window_start=window)
            self._start(row)
        else:
            self._wake.set()

    def _waiting_count(self):
        """The cluster's webhooks not yet delivered or failed, as the scheduler last read them."""
        return self._counts[0]

    def _oldest_waiting(self):
        return self._counts[3]

    def _failed_by_host(self):
        return self._counts[2]

    def failed_count(self):
        return sum(self._counts[2].values())

    def held_count(self):
        return self._counts[1]

    def _reload(self):
        self._counts = self._table.counts()
        self._wake.set()

    # ---------------------------------------------------------------- worker lifecycle

    def start(self):
        """Start delivering (rows this node id left in flight before are pending again). Idempotent."""
        if self._scheduler is not None and not self._scheduler.dead:
            return
        self._stopping = False
        self._prepared = False
        try:
            self._prepare(time.time())
        except Exception as exc:
            if not unavailable(exc):
                raise
            self._refused_writes.refused(exc)   # the scheduler prepares once PostgreSQL is back
        self._scheduler = gevent.spawn(self._run)
        self._wake.set()

    def _prepare(self, now):
        """What this node id left in flight (a previous process of it) is pending again; rows it is
        sending now (enqueued before the first pass) are not."""
        if not self._table.ready:
            self._table.create()
        count = self._table.requeue(now, self.node_id, keep=list(self._in_flight))
        if count:
            log.info('outbox: %d interrupted deliveries are pending again', count)
        self._prepared = True

    def stop(self, timeout=5.0):
        """As Outbox.stop: sends in progress get `timeout` s, then are abandoned (pending again)."""
        abandoned = self._stop_deliveries(timeout)
        try:
            self._record_unrecorded()
            if abandoned:
                self._table.requeue(time.time(), self.node_id, abandoned)
            self._store_unsaved()
        except Exception as exc:   # the leases run out: another node (or the next start) sends them
            log.error('outbox: could not record the state at stop: %s', exc)
        if self._refused_writes.webhooks:
            log.error('outbox: %d webhook(s) PostgreSQL did not take are lost at stop (%s)',
                      len(self._refused_writes.webhooks), self.write_error)

    def close(self):
        self.stop()
        self._sender.close()
        self._db.close()

    def flush(self, timeout):
        """Wait until the cluster's table has nothing pending or in flight, nothing waits in memory,
        and this node's deliveries have finished recording their outcomes (the table shows a row
        delivered once its COMMIT is in, before the greenlet that sent it has read the answer and
        counted it); True if so within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            try:
                self._counts = self._table.counts()
                if self.depth() == 0 and not self._in_flight:
                    return True
            except Exception as exc:
                if not unavailable(exc):
                    raise
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.wait(min(remaining, self.poll_s))

    # ---------------------------------------------------------------- the scheduler

    def _run(self):
        while not self._stopping:
            self._wake.clear()
            wait_s = min(self.poll_s, self.lease_s / 3)   # leases are renewed in time
            try:
                self._pass()
                # a wake-up's pass does not look around: the wait ends when the next look is due,
                # or the counts could be twice poll_s old (a wake-up just before it was due)
                due_s = self._look_around_at - time.monotonic()
                if due_s > 0:
                    wait_s = min(wait_s, due_s)
            except Exception as exc:
                if unavailable(exc):
                    self._refused_writes.refused(exc)
                    wait_s = REFUSED_RETRY_S
                else:   # a database problem must not end delivery for good
                    log.exception('outbox: scheduling failed; retrying in 1 s')
                    wait_s = 1.0
            self._wake.wait(timeout=wait_s)

    def _pass(self):
        now = time.time()
        if not self._table.ready:
            self._table.create()
        if not self._prepared:
            self._prepare(now)
        if self._refused_writes.waiting():
            if now < self._refused_writes.retry_at:
                return
            self._record_unrecorded()
            self._store_unsaved()
        tick = time.monotonic()
        look_around = tick >= self._look_around_at
        if look_around:
            self._look_around_at = tick + self.poll_s
            taken = self._table.requeue(now, keep=list(self._in_flight))
            if taken:
                log.warning('outbox: %d webhook(s) whose node stopped renewing its lease are pending again', taken)
        self._renew(tick)
        self._dispatch(now)
        if look_around and self.policy.retry_window_s is not None:
            self._expire(now)
        if self.retention_s is not None and now >= self._prune_at:
            self._prune(now)
        if look_around:
            self._counts = self._table.counts()
        self._refused_writes.taken()

    def _renew(self, tick):
        if self._in_flight and tick >= self._renew_at:
            self._table.renew(list(self._in_flight), self.node_id, self.lease_s)
        if tick >= self._renew_at:
            self._renew_at = tick + self.lease_s / 3

    def _dispatch(self, now):
        dues = self._table.host_dues()
        for host in self._due_hosts - set(dues):
            self._hosts.set_due(host, None)
        for host, due in dues.items():
            self._hosts.set_due(host, due)
        self._due_hosts = set(dues)
        free = self.concurrency - len(self._in_flight)
        for host in self._hosts.ready(now):
            if free <= 0:
                break
            room = min(free, self._hosts.capacity(host, now))
            rows = self._table.claim(host, now, room, self.node_id, self.lease_s)
            for row in rows:
                self._start(row)
            free -= len(rows)

    def _expire(self, now):
        window_s = self.policy.retry_window_s
        for row in self._table.expired_heads(now - window_s, EXPIRE_BATCH):
            reason = self._window_ended(row)
            recorded, _, _ = self._table.mark_failed(row, row['last_status_code'], reason, now, holds=True)
            if recorded:
                log.warning('call %s: webhook %s #%d to %s failed: %s', row['call_uuid'] or '-',
                            row['event'] or '', row['id'], row['url'], reason)

    def _store_unsaved(self):
        kept = self._refused_writes.webhooks
        if not kept:
            return
        rows = list(kept)
        now = time.time()
        try:
            results = self._table.insert_many(rows, now)
        except Exception as exc:
            if not unavailable(exc):
                raise
            self._refused_writes.refused(exc)
            return
        for _ in rows:
            kept.popleft()
        for row, (delivery_id, _, _, _) in zip(rows, results):
            row['id'] = delivery_id
        self._refused_writes.taken()
        self._wake.set()
        log.warning('outbox: PostgreSQL is back; %d webhook(s) kept in memory are stored', len(rows))

    # ---------------------------------------------------------------- one delivery attempt

    def _start(self, row):
        self._in_flight[row['id']] = row
        self._hosts.started(row['host'])
        self._group.spawn(self._deliver, row)

    def _deliver(self, row):
        outcome, now = self._attempt(row)
        try:
            if self._refused_writes.outcomes:   # keep their order
                raise _Later()
            self._record_outcome(row, outcome, now)
        except Exception as exc:
            if isinstance(exc, _Later):
                pass
            elif unavailable(exc):
                self._refused_writes.refused(exc, now)
            else:
                log.exception('call %s: could not record the outcome of webhook %s; trying again',
                              row['call_uuid'] or '-', row['id'])
                self._refused_writes.retry_after_pause(now)
            self._refused_writes.outcomes.append((row, outcome, now))
        finally:
            self._in_flight.pop(row['id'], None)
            self._wake.set()
            self._changed.set()

    def _record_outcome(self, row, outcome, now):
        status_code, error, retryable, retry_after = outcome
        label = 'call %s: webhook %s #%d to %s' % (row['call_uuid'] or '-', row['event'] or '', row['id'], row['url'])
        node = self.node_id
        if error is None:
            recorded, _ = self._table.mark_delivered(row, status_code, now, node)
            if recorded:
                self.delivered += 1
        elif retryable and self._stopping:
            recorded = self._table.mark_pending(row, status_code, error, now, now, node)
        elif retryable:
            at = self.policy.next_attempt(row, now, retry_after)
            if at is not None:
                recorded = self._table.mark_pending(row, status_code, error, at, now, node)
                log.debug('%s: attempt %d failed (%s); retry in %.2f s', label, row['attempts'], error, at - now)
            else:
                reason = 'gave up after %d attempt(s): %s' % (row['attempts'], error)
                recorded, _, _ = self._table.mark_failed(row, status_code, reason, now, True, node)
                if recorded:
                    log.warning('%s failed: %s; later webhooks of the call are held behind it', label, reason)
        else:
            recorded, _, _ = self._table.mark_failed(row, status_code, error, now, False, node)
            if recorded:
                log.warning('%s failed after %d attempt(s): %s', label, row['attempts'], error)
        if not recorded:
            self.lost_leases += 1
            log.warning('%s: its lease ran out before the outcome (%s) was recorded; the node that took it over '
                        'sends it again', label, error or 'delivered')
        self._refused_writes.taken()


class _Later(Exception):
    """An outcome that must wait behind outcomes kept in memory."""
