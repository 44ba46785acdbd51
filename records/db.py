"""One SQLite connection in WAL mode, shared by the greenlets of a process behind one lock.

sqlite3 calls are blocking C calls: every statement here is short, and no greenlet switch can happen
while the lock is held (nothing inside yields). The lock is `threading.RLock`, which is gevent's lock
once monkey-patched and a real one otherwise, so the same object is safe from OS threads too.

`write_refused(exc)` tells a database that cannot take a write now (full disk, I/O error, read-only
file, another writer holding it) from a bad statement: the Store and the outbox keep such writes in
memory and try again (records/store.py, webhooks/outbox.py). `max_bytes` caps the file's size with
SQLite's own `max_page_count`: past it, writes fail as on a full disk.
"""
import os
import sqlite3
import threading

SYNCHRONOUS_MODES = ('OFF', 'NORMAL', 'FULL', 'EXTRA')
# sqlite3 error names (Python 3.11: exc.sqlite_errorname, extended codes included) of a database that
# cannot take a write now but may later
_REFUSED = ('SQLITE_FULL', 'SQLITE_IOERR', 'SQLITE_READONLY', 'SQLITE_BUSY', 'SQLITE_LOCKED',
            'SQLITE_CANTOPEN', 'SQLITE_NOMEM')


def write_refused(exc):
    """True if `exc` says the database cannot take a write for now (disk full, I/O error, read-only
    file or directory, locked by another writer), as opposed to a bad statement."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    name = getattr(exc, 'sqlite_errorname', None) or ''
    return name.startswith(_REFUSED)


class Database:
    """A WAL-mode SQLite file. `execute`/`query`/`transaction` serialise access with one lock.

    synchronous='NORMAL' (default) keeps every commit across a process crash (kill -9); 'FULL' also
    across power loss, at the cost of an fsync per commit. max_bytes (None: no cap) stops the file
    growing past that size (never below what it holds already): writes needing more fail with
    SQLITE_FULL.
    """

    def __init__(self, path, *, synchronous='NORMAL', busy_timeout_ms=2000, max_bytes=None):
        if synchronous.upper() not in SYNCHRONOUS_MODES:
            raise ValueError('synchronous must be one of %s' % (SYNCHRONOUS_MODES,))
        path = os.fspath(path)
        if path != ':memory:':
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                     timeout=busy_timeout_ms / 1000.0)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute('PRAGMA journal_mode=WAL')
            self._conn.execute('PRAGMA synchronous=%s' % synchronous.upper())
            self._conn.execute('PRAGMA busy_timeout=%d' % int(busy_timeout_ms))
            self._conn.execute('PRAGMA foreign_keys=ON')
            if max_bytes:
                page = self._conn.execute('PRAGMA page_size').fetchone()[0]
                self._conn.execute('PRAGMA max_page_count=%d' % max(1, int(max_bytes) // page))

    def execute(self, sql, args=()):
        """Run one statement (autocommit); returns the cursor's lastrowid and rowcount."""
        with self._lock:
            cursor = self._conn.execute(sql, args)
            return cursor.lastrowid, cursor.rowcount

    def query(self, sql, args=()):
        with self._lock:
            return [dict(row) for row in self._conn.execute(sql, args).fetchall()]

    def query_one(self, sql, args=()):
        with self._lock:
            row = self._conn.execute(sql, args).fetchone()
            return dict(row) if row is not None else None

    def scalar(self, sql, args=()):
        with self._lock:
            row = self._conn.execute(sql, args).fetchone()
            return row[0] if row is not None else None

    def script(self, sql):
        with self._lock:
            self._conn.executescript(sql)

    def transaction(self):
        """`with db.transaction() as conn:` runs statements in one BEGIN IMMEDIATE ... COMMIT."""
        return _Transaction(self)

    def close(self):
        with self._lock:
            self._conn.close()


class _Transaction:
    def __init__(self, db):
        self._db = db

    def __enter__(self):
        self._db._lock.acquire()
        try:
            self._db._conn.execute('BEGIN IMMEDIATE')
        except BaseException:
            self._db._lock.release()
            raise
        return self._db._conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._db._conn.execute('COMMIT')
            elif self._db._conn.in_transaction:
                # (SQLITE_FULL, IOERR, BUSY and NOMEM may have rolled it back already)
                self._db._conn.execute('ROLLBACK')
        finally:
            self._db._lock.release()
        return False
