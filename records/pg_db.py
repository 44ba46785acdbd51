"""A small pool of PostgreSQL connections (pg8000, pure Python) shared by the greenlets of a process.

pg8000 talks to the server over Python sockets, which gevent's monkey-patching makes cooperative: a
query waits in its own greenlet and the hub runs on. Every connection has a socket timeout
(`timeout_s`), so a server that stops answering costs a caller at most that long, never a hung
process; the server gets the same limit for each statement, and twice it for a session idle inside
a transaction. At most `pool_size` connections are open; a caller waits for a free one.

`run(sql, **params)` runs one statement (autocommit) and `transaction()` several in one
transaction; rows come back as dicts. Use it from the greenlets of one hub (its semaphore is
gevent's). SQL uses pg8000.native's `:name` parameters.

A statement with parameters is prepared once per connection (the last PREPARED_MAX texts are kept)
and then runs in one round trip, where pg8000's unnamed statements take three and re-read the SQL
text in Python every time (BENCHMARKS.md: the cluster engines' CPU per call). The server plans every
execution for its own values (plan_cache_mode=force_custom_plan, PostgreSQL 12 or later), as it
does an unnamed statement: a generic plan chosen for one status could scan the outbox for another.
A prepared statement the server refuses after a schema change ("cached plan must not change result
type", after another node's newer version altered a table) or no longer knows (DEALLOCATE ALL) is
prepared again once. A pooler between us and the server must keep prepared statements with their
session (PgBouncer, https://www.pgbouncer.org/config.html: session pooling, or
max_prepared_statements) and, if it drops startup parameters (ignore_startup_parameters), the
database needs `ALTER DATABASE ... SET plan_cache_mode = force_custom_plan`.
`unavailable(exc)` tells a server that cannot be reached or dropped the connection (the caller keeps
its write for later: records/pg_store.py, webhooks/pg_outbox.py) from a bad statement; such errors
reach callers as `PgUnavailable`. A connection that failed is closed, never reused, and a pooled one
the server ended meanwhile (pg_terminate_backend, idle_session_timeout, a restart) is replaced
before a statement is sent on it. A statement missing a parameter raises ValueError.
"""
import logging
import select
from collections import OrderedDict
from urllib.parse import parse_qs, unquote, urlsplit

import gevent.lock
import gevent.monkey

log = logging.getLogger(__name__)

# SQLSTATE classes of a server that cannot take the work now: connection exception (08), insufficient
# resources (53), operator intervention (57: shutting down, cannot connect now), system error (58)
_UNAVAILABLE_STATES = ('08', '53', '57', '58')
# statements kept prepared per connection: the SQL texts of records/ and webhooks/ are a few dozen,
# some built per batch size or filter
PREPARED_MAX = 128


class PgUnavailable(Exception):
    """PostgreSQL cannot be reached, or dropped the connection (the statement may not have run)."""


def _driver():
    """pg8000, imported on first use: a single process without [store] postgres_dsn never loads it
    (it costs a process about 15 MB)."""
    import pg8000.converters
    import pg8000.exceptions
    import pg8000.native
    return pg8000


def unavailable(exc):
    """True if `exc` says the server cannot take the work now (as opposed to a bad statement)."""
    errors = _driver().exceptions
    if isinstance(exc, (PgUnavailable, errors.InterfaceError, OSError, TimeoutError)):
        return True
    if isinstance(exc, errors.DatabaseError):
        state = exc.args[0].get('C', '') if exc.args and isinstance(exc.args[0], dict) else ''
        return state.startswith(_UNAVAILABLE_STATES)
    return False


def parse_dsn(dsn):
    """pg8000.native.Connection's keyword arguments from postgresql://user:password@host:port/db."""
    parts = urlsplit(dsn)
    if parts.scheme not in ('postgresql', 'postgres'):
        raise ValueError('postgres_dsn must start with postgresql://, not %r' % (dsn,))
    query = parse_qs(parts.query)
    args = {'user': unquote(parts.username or 'postgres'), 'host': parts.hostname or '127.0.0.1',
            'port': parts.port or 5432, 'database': unquote(parts.path.lstrip('/')) or None}
    if parts.password is not None:
        args['password'] = unquote(parts.password)
    if query.get('sslmode', ['disable'])[0] in ('require', 'verify-ca', 'verify-full'):
        args['ssl_context'] = True
    return args


class PgDatabase:
    """Connections to one database; see the module docstring."""

    def __init__(self, dsn, *, pool_size=4, timeout_s=5.0, application_name='callfork'):
        # the server's side of the timeout: a statement the client gave up on does not run on (and
        # commit, or wait on a lock, after the caller moved on), and a session idle inside a
        # transaction (its node vanished mid-transaction) ends, releasing its locks, instead of
        # holding them until TCP notices (hours): every other node's statements would wait on them
        limit_ms = str(int(float(timeout_s) * 1000))
        self._args = dict(parse_dsn(dsn), timeout=float(timeout_s), application_name=application_name,
                          startup_params={'statement_timeout': limit_ms,
                                          'idle_in_transaction_session_timeout': str(2 * int(limit_ms)),
                                          'plan_cache_mode': 'force_custom_plan'})
        self._idle = []
        # gevent's: a greenlet waiting for a free connection lets the hub run (a real lock would not,
        # where threading is not monkey-patched)
        self._slots = gevent.lock.BoundedSemaphore(max(1, int(pool_size)))
        self._closed = False

    def _connect(self):
        try:
            return _Connection(_driver().native.Connection(**self._args))
        except Exception as exc:
            if unavailable(exc):
                raise PgUnavailable('cannot connect to PostgreSQL at %s:%s: %s'
                                    % (self._args['host'], self._args['port'], exc)) from exc
            raise

    def _take(self):
        self._slots.acquire()
        try:
            while self._idle:
                conn = self._idle.pop()
                if conn.still_open():
                    return conn
                _close_quietly(conn)
            return self._connect()
        except BaseException:
            self._slots.release()
            raise

    def _give(self, conn, broken):
        try:
            if broken or self._closed:
                _close_quietly(conn)
                if broken:   # the others were opened to the same server: likely dead as well
                    while self._idle:
                        _close_quietly(self._idle.pop())
            else:
                self._idle.append(conn)
        finally:
            self._slots.release()

    def run(self, sql, **params):
        """One statement in autocommit; its rows as dicts ([] when it returns none)."""
        with self.transaction(autocommit=True) as tx:
            return tx.run(sql, **params)

    def transaction(self, autocommit=False):
        """`with db.transaction() as tx: tx.run(...)` runs statements in one transaction (committed
        when the block ends, rolled back when it raises)."""
        return _Transaction(self, autocommit)

    def close(self):
        self._closed = True
        while self._idle:
            _close_quietly(self._idle.pop())


class _Transaction:
    def __init__(self, db, autocommit):
        self._db = db
        self._autocommit = autocommit
        self._conn = None
        self._row_count = -1

    def run(self, sql, **params):
        try:
            context = self._conn.run(sql, params, again_if_stale=self._autocommit)
        except Exception as exc:
            if unavailable(exc) and not isinstance(exc, PgUnavailable):
                raise PgUnavailable('PostgreSQL: %s' % (exc,)) from exc
            raise
        self._row_count = context.row_count
        rows = context.rows
        if not rows or not context.columns:
            return []
        names = [c['name'] for c in context.columns]
        return [dict(zip(names, row)) for row in rows]

    def row_count(self):
        """Rows the last statement changed (-1 when it says nothing)."""
        return self._row_count

    def __enter__(self):
        self._conn = self._db._take()
        if not self._autocommit:
            try:
                self.run('BEGIN')
            except BaseException:
                self._db._give(self._conn, True)
                raise
        return self

    def __exit__(self, exc_type, exc, tb):
        broken = exc is not None and unavailable(exc)
        try:
            if not self._autocommit and not broken:
                self.run('COMMIT' if exc_type is None else 'ROLLBACK')
        except BaseException:
            broken = True
            if exc_type is None:
                raise
        finally:
            # a greenlet killed mid-statement (GreenletExit) leaves the protocol state unknown
            if exc_type is not None and not issubclass(exc_type, Exception):
                broken = True
            self._db._give(self._conn, broken)
        return False


class _Connection:
    """A pg8000 connection and the statements prepared on it, by SQL text, least recently used first."""

    def __init__(self, raw):
        self.raw = raw
        self._prepared = OrderedDict()   # sql -> (name, statement, make_vals, columns, input_funcs)
        self._poller = None              # still_open's, made on first use

    def run(self, sql, params, again_if_stale):
        """pg8000's Context of `sql` run with `params` (`:name` parameters; none: the simple protocol).
        A statement the server refuses as stale or unknown (_prepare_again) is forgotten, and
        prepared and run again when `again_if_stale` (not inside a transaction: the failure aborted
        that, and its caller sees the error)."""
        if not params:
            return self.raw.execute_simple(sql)
        kept = self._statement(sql)
        try:
            return self._execute(kept, self._values(kept, params))
        except _driver().exceptions.DatabaseError as exc:
            if not _prepare_again(exc):
                raise
            self._forget(sql)
            if not again_if_stale:
                raise
            kept = self._statement(sql)
            return self._execute(kept, self._values(kept, params))

    def _statement(self, sql):
        kept = self._prepared.get(sql)
        if kept is not None:
            self._prepared.move_to_end(sql)
            return kept
        try:
            statement, make_vals = _driver().native.to_statement(sql)
        except _driver().exceptions.InterfaceError as exc:   # a bad $n: our SQL's fault, not the server's
            raise ValueError(str(exc)) from exc
        name, columns, input_funcs = self.raw.prepare_statement(statement, ())
        kept = self._prepared[sql] = (name, statement, make_vals, columns, input_funcs)
        if len(self._prepared) > PREPARED_MAX:
            self._forget(next(iter(self._prepared)))
        return kept

    def _values(self, kept, params):
        """The parameters as the text pg8000 sends (what PreparedStatement.run does). A placeholder
        without a value is our SQL's fault: pg8000 says so with the InterfaceError it also raises for
        a dropped connection, which callers would take for an unavailable server and retry for ever."""
        try:
            return _driver().converters.make_params(self.raw.py_types, kept[2](params))
        except _driver().exceptions.InterfaceError as exc:
            raise ValueError(str(exc)) from exc

    def _execute(self, kept, values):
        name, statement, _, columns, input_funcs = kept
        return self.raw.execute_named(name, values, columns, input_funcs, statement)

    def _forget(self, sql):
        self.raw.close_prepared_statement(self._prepared.pop(sql)[0])

    def still_open(self):
        """False if the server wrote to this idle connection unasked: it ended the session (an
        operator's pg_terminate_backend, idle_session_timeout, a restart: an error, then the end of
        the stream) and our next statement would fail on it. One poll(2) of the socket, without
        waiting; a server that vanished without a word is found by the statement's timeout."""
        try:
            if self._poller is None:
                sock = getattr(self.raw, '_usock', None)   # pg8000's socket (core.py CoreConnection)
                if sock is None:
                    return False
                self._poller = _poll()
                self._poller.register(sock.fileno(), select.POLLIN)
            return not self._poller.poll(0)
        except (OSError, ValueError):   # closed under us
            return False

    def close(self):
        self.raw.close()


def _poll():
    """The operating system's poll object: gevent's (monkey-patched in) would yield to the hub."""
    return gevent.monkey.get_original('select', 'poll')()


def _prepare_again(exc):
    """The server refused a prepared statement that must be prepared again: "cached plan must not
    change result type" (feature_not_supported, 0A000: a table it reads changed its columns since),
    known by the routine that raises it (the message is in the server's lc_messages language), or
    "prepared statement does not exist" (26000: the session lost it, e.g. DEALLOCATE ALL, or a
    pooler in front of the server gave this run another session)."""
    fields = exc.args[0] if exc.args and isinstance(exc.args[0], dict) else {}
    state = fields.get('C')
    return (state == '0A000' and (fields.get('R') == 'RevalidateCachedQuery' or 'cached plan' in fields.get('M', ''))
            or state == '26000')


def _close_quietly(conn):
    try:
        conn.close()
    except Exception:   # noqa: BLE001 - the connection is dead already
        pass
