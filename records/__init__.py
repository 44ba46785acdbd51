"""records: what callfork keeps of its calls in SQLite: the call, stream and recording records and
each call's timeline (`Store`), and the small SQLite helper (`Database`) the webhook outbox uses
too, and `write_refused(exc)`: the database cannot take a write now (full disk ...), try later."""
from .db import Database, write_refused
from .store import Store

__all__ = ['Store', 'Database', 'write_refused']
