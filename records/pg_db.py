"""A small pool of PostgreSQL connections (pg8000, pure Python) shared by the greenlets of a process.

pg8000 talks to the server over Python sockets, which gevent's monkey-patching makes cooperative: a
query waits in its own greenlet and the hub runs on. Every connection has a socket timeout
(`timeout_s`), so a server that stops answering costs a caller at most that long, never a hung
process; the server gets the same limit for each statement, and twice it for a session idle inside
a transaction. At most `pool_size` connections are open; a caller waits for a free one.

`run(sql, **params)` runs one statement (autocommit) and `transaction()` several in one
transaction; rows come back as dicts. Use it from the greenlets of one hub (its semaphore is
gevent's). SQL uses pg8000.native's `:name` parameters.
`unavailable(exc)` tells a server that cannot be reached or dropped the connection (the caller keeps
its write for later: records/pg_store.py, webhooks/pg_outbox.py) from a bad statement; such errors
reach callers as `PgUnavailable`. A connection that failed is closed, never reused.
"""
import logging
from urllib.parse import parse_qs, unquote, urlsplit

import gevent.lock

log = logging.getLogger(__name__)

# SQLSTATE classes of a server that cannot take the work now: connection exception (08), insufficient
# resources (53), operator intervention (57: shutting down, cannot connect now), system error (58)
_UNAVAILABLE_STATES = ('08', '53', '57', '58')


class PgUnavailable(Exception):
    """PostgreSQL cannot be reached, or dropped the connection (the statement may not have run)."""


def _driver():
    """pg8000, imported on first use: a single process without [store] postgres_dsn never loads it
    (it costs a process about 15 MB)."""
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
                                          'idle_in_transaction_session_timeout': str(2 * int(limit_ms))})
        self._idle = []
        # gevent's: a greenlet waiting for a free connection lets the hub run (a real lock would not,
        # where threading is not monkey-patched)
        self._slots = gevent.lock.BoundedSemaphore(max(1, int(pool_size)))
        self._closed = False

    def _connect(self):
        try:
            return _driver().native.Connection(**self._args)
        except Exception as exc:
            if unavailable(exc):
                raise PgUnavailable('cannot connect to PostgreSQL at %s:%s: %s'
                                    % (self._args['host'], self._args['port'], exc)) from exc
            raise

    def _take(self):
        self._slots.acquire()
        try:
            return self._idle.pop() if self._idle else self._connect()
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

    def run(self, sql, **params):
        try:
            rows = self._conn.run(sql, **params)
        except Exception as exc:
            if unavailable(exc) and not isinstance(exc, PgUnavailable):
                raise PgUnavailable('PostgreSQL: %s' % (exc,)) from exc
            raise
        if not rows or not self._conn.columns:
            return []
        names = [c['name'] for c in self._conn.columns]
        return [dict(zip(names, row)) for row in rows]

    def row_count(self):
        """Rows the last statement changed (-1 when it says nothing)."""
        return self._conn.row_count

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


def _close_quietly(conn):
    try:
        conn.close()
    except Exception:   # noqa: BLE001 - the connection is dead already
        pass
