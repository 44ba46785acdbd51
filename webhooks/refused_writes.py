"""What the outbox keeps in memory while its database refuses writes (a full disk, an I/O error, a
read-only file: records.write_refused): the webhooks it could not store, in enqueue order, up to
`memory_limit`, and the attempt outcomes it could not record, in the order they came. The outbox
stores them once the database takes writes again (tried every REFUSED_RETRY_S); until then listings
show the kept webhooks with status 'unsaved' and no id.
"""
import collections
import time

REFUSED_RETRY_S = 1.0        # how often writes the database refused are tried again
UNSAVED = 'unsaved'          # the status listings give a webhook kept in memory (not stored yet)


class RefusedWrites:
    def __init__(self, memory_limit):
        self.memory_limit = max(0, int(memory_limit))
        self.webhooks = collections.deque()   # rows the database refused to store, in order
        self.outcomes = []                    # (row, outcome, time) it refused to record
        self.error = None                     # why the database refuses writes (None: it takes them)
        self.retry_at = 0.0
        self.lost = 0                         # webhooks dropped: refused, and memory full

    def refused(self, exc, now=None):
        """The database refused a write: remember why and when to try again."""
        self.error = str(exc)
        self.retry_after_pause(now)

    def retry_after_pause(self, now=None):
        self.retry_at = (time.time() if now is None else now) + REFUSED_RETRY_S

    def taken(self):
        """The database took a write."""
        self.error = None

    def keep(self, row):
        """Keep a webhook the database refused; False (and counted lost) when memory is full."""
        if len(self.webhooks) >= self.memory_limit:
            self.lost += 1
            return False
        self.webhooks.append(row)
        return True

    def waiting(self):
        """Something waits to be written."""
        return bool(self.outcomes or self.webhooks)

    def oldest_created(self):
        return self.webhooks[0]['created_at'] if self.webhooks else None

    def listing(self, call_uuid=None):
        """The kept webhooks (all, or one call's) in the shape of the table's listings."""
        return [_public(r) for r in list(self.webhooks) if call_uuid is None or r['call_uuid'] == str(call_uuid)]


def _public(row):
    return {'id': None, 'call_uuid': row['call_uuid'], 'event': row['event'], 'url': row['url'], 'host': row['host'],
            'method': row['method'], 'encoding': row['encoding'], 'status': UNSAVED, 'attempts': 0,
            'last_status_code': None, 'last_error': 'kept in memory: the database refuses writes',
            'idempotency_key': row['key'], 'next_attempt_at': None, 'created_at': row['created_at'],
            'updated_at': row['created_at'], 'delivered_at': None}
