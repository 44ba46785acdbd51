"""One outbox node as a process of its own, for tests/test_cluster_outbox.py: a PgOutbox with node id
NODE on DSN enqueues COUNT webhooks to URL (numbered from FIRST, spread over 10 calls `call-<n % 10>`),
waits until the table has nothing left to send, and prints `delivered <n> lost_leases <n>`.

    python tests/pg_outbox_node.py DSN NODE URL FIRST COUNT LEASE_S
"""
import sys
from pathlib import Path

from gevent import monkey

monkey.patch_all()
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from webhooks import PgOutbox  # noqa: E402


def main():
    dsn, node, url, first, count, lease_s = sys.argv[1:7]
    box = PgOutbox(dsn, node_id=node, auth_token="T", backoff_base_s=0.02, backoff_max_s=0.1, poll_s=0.05,
                   concurrency=8, lease_s=float(lease_s))
    box.start()
    for i in range(int(first), int(first) + int(count)):
        box.enqueue("call-%d" % (i % 10), url, "POST", {"n": str(i)})
    done = box.flush(120)
    print("delivered", box.delivered, "lost_leases", box.lost_leases, "flushed", done, flush=True)
    box.close()


if __name__ == "__main__":
    main()
