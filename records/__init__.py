"""records: what callfork keeps of its calls in SQLite: the call, stream and recording records and
each call's timeline (`Store`), and the small SQLite helper (`Database`) the webhook outbox uses
too, and `write_refused(exc)`: the database cannot take a write now (full disk ...), try later.
With `[store] postgres_dsn`, the same records in PostgreSQL (`PgStore`, records/pg_store.py;
`PgUnavailable`: the server cannot be reached)."""
from .db import Database, write_refused
from .pg_db import PgUnavailable
from .pg_store import PgStore
from .store import Store

__all__ = ['Store', 'PgStore', 'PgUnavailable', 'Database', 'write_refused']
