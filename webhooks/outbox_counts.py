"""The outbox's running counts, kept in memory: rows waiting (pending or in flight), held behind a
failed webhook, and failed per receiver host. Counted once from the table, then kept by every change,
because a count over a dead receiver's many rows would hold the hub on every /metrics scrape.
"""
from .outbox_table import FAILED, HELD


class OutboxCounts:
    def __init__(self, counts):
        self.reset(counts)

    def reset(self, counts):
        """counts: (waiting, held, {host: failed}) as OutboxTable.counts() gives them."""
        self.waiting, self.held, self.failed_by_host = counts

    def stored(self, status, host):
        """A row was stored with this status."""
        if status == HELD:
            self.held += 1
        elif status == FAILED:
            self._count_failed(host, 1)
        else:
            self.waiting += 1

    def delivered(self):
        self.waiting -= 1

    def failed(self, host, held):
        """A waiting row failed, and `held` rows of its call moved from waiting to held."""
        self.waiting -= 1 + held
        self.held += held
        self._count_failed(host, 1)

    def failed_total(self):
        return sum(self.failed_by_host.values())

    def _count_failed(self, host, n):
        count = self.failed_by_host.get(host, 0) + n
        if count > 0:
            self.failed_by_host[host] = count
        else:
            self.failed_by_host.pop(host, None)
