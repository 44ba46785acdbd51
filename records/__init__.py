"""records: what callfork keeps of its calls in SQLite: the call, stream and recording records and
each call's timeline (`Store`), and the small SQLite helper (`Database`) the webhook outbox uses
too."""
from .db import Database
from .store import Store

__all__ = ['Store', 'Database']
