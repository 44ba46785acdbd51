"""The nodes' heartbeats in PostgreSQL, next to their call records (table `cluster_nodes`): one row per
node id, with the instance that holds it (`instance`, `host`, `pid`, `pid_start`: an object with
those attributes, cluster/instance.py's Instance) and `beat_at`, the PostgreSQL
server's clock at its last heartbeat (so the nodes' clocks need not agree).

A node whose Redis registration expired may still be alive (it lost Redis alone and still writes
its records here): callfork/cluster_node.py closes a node's calls only when this row is stale too
(or absent), and `take_dead` lets exactly one survivor do it. The table has a row per node id, so
every statement here reads at most that many rows.
"""
from __future__ import annotations

from .pg_db import PgDatabase

DB_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cluster_nodes (
    node_id TEXT PRIMARY KEY, instance TEXT NOT NULL, host TEXT NOT NULL DEFAULT '', pid BIGINT NOT NULL DEFAULT 0,
    pid_start TEXT NOT NULL DEFAULT '', beat_at DOUBLE PRECISION NOT NULL)""",
)


class NodeIdHeld(Exception):
    """The node id is held by another instance with a recent heartbeat: `holder` (its row: instance,
    host, pid, pid_start) and `age` (seconds since its heartbeat)."""

    def __init__(self, holder: dict, age: float):
        super().__init__(holder, age)
        self.holder, self.age = holder, age


class NodeBeats:
    """The statements on `cluster_nodes`; `db` is a records.pg_db.PgDatabase (PgUnavailable when
    PostgreSQL is away)."""

    def __init__(self, db: PgDatabase):
        self._db = db
        self._ready = False

    def _schema(self, tx) -> None:
        if not self._ready:
            tx.run("SELECT pg_advisory_xact_lock(7261003)")   # nodes starting together create it once
            for statement in SCHEMA:
                tx.run(statement)

    def claim(self, node_id: str, instance, ttl_s: float, gone) -> dict | None:
        """Take `node_id` for `instance`: NodeIdHeld if another instance holds it with a heartbeat
        younger than `ttl_s` and `gone(its row)` is false; returns the row it took over, if any."""
        with self._db.transaction() as tx:
            self._schema(tx)
            rows = tx.run("SELECT instance, host, pid, pid_start, %s - beat_at AS age FROM cluster_nodes "
                          "WHERE node_id=:node FOR UPDATE" % DB_NOW, node=node_id)
            holder = None
            if rows and rows[0]["instance"] != instance.token:
                holder = rows[0]
                if holder["age"] < ttl_s and not gone(holder):
                    raise NodeIdHeld(holder, holder["age"])
            self._upsert(tx, node_id, instance)
        self._ready = True
        return holder

    @staticmethod
    def _upsert(tx, node_id, instance):
        tx.run("INSERT INTO cluster_nodes (node_id, instance, host, pid, pid_start, beat_at) VALUES "
               "(:node, :instance, :host, :pid, :pid_start, %s) ON CONFLICT (node_id) DO UPDATE SET "
               "instance=EXCLUDED.instance, host=EXCLUDED.host, pid=EXCLUDED.pid, pid_start=EXCLUDED.pid_start, "
               "beat_at=EXCLUDED.beat_at" % DB_NOW, node=node_id, instance=instance.token, host=instance.host,
               pid=instance.pid, pid_start=instance.pid_start)

    def beat(self, node_id: str, instance) -> bool:
        """This node's heartbeat; False when its row was held by another instance (left alone)."""
        with self._db.transaction() as tx:
            self._schema(tx)
            tx.run("UPDATE cluster_nodes SET beat_at=%s WHERE node_id=:node AND instance=:instance" % DB_NOW,
                   node=node_id, instance=instance.token)
            if tx.row_count() == 1:
                self._ready = True
                return True
            # no row (PostgreSQL was away at start, or a survivor took this node for dead): ours again
            tx.run("INSERT INTO cluster_nodes (node_id, instance, host, pid, pid_start, beat_at) VALUES "
                   "(:node, :instance, :host, :pid, :pid_start, %s) ON CONFLICT (node_id) DO NOTHING" % DB_NOW,
                   node=node_id, instance=instance.token, host=instance.host, pid=instance.pid,
                   pid_start=instance.pid_start)
            self._ready = True
            return tx.row_count() == 1

    def age(self, node_id: str) -> float | None:
        """Seconds since `node_id`'s last heartbeat (server clock), None when it has no row."""
        rows = self._db.run("SELECT %s - beat_at AS age FROM cluster_nodes WHERE node_id=:node" % DB_NOW,
                            node=node_id)
        return rows[0]["age"] if rows else None

    def stale(self, ttl_s: float) -> list[tuple[str, str]]:
        """(node id, instance) of the rows without a heartbeat for `ttl_s`."""
        rows = self._db.run("SELECT node_id, instance FROM cluster_nodes WHERE beat_at < %s - :ttl" % DB_NOW,
                            ttl=float(ttl_s))
        return [(r["node_id"], r["instance"]) for r in rows]

    def take_dead(self, node_id: str, instance: str | None, ttl_s: float) -> bool:
        """Remove `node_id`'s row if it is (still) stale and held by `instance` (None: whatever
        instance, or no row at all); True for the one caller that removed it (or found none)."""
        if instance is None:
            with self._db.transaction() as tx:
                tx.run("DELETE FROM cluster_nodes WHERE node_id=:node AND beat_at < %s - :ttl" % DB_NOW,
                       node=node_id, ttl=float(ttl_s))
                if tx.row_count() == 1:
                    return True
                return not tx.run("SELECT 1 AS one FROM cluster_nodes WHERE node_id=:node", node=node_id)
        with self._db.transaction() as tx:
            tx.run("DELETE FROM cluster_nodes WHERE node_id=:node AND instance=:instance AND beat_at < %s - :ttl"
                   % DB_NOW, node=node_id, instance=instance, ttl=float(ttl_s))
            return tx.row_count() == 1

    def leave(self, node_id: str, instance) -> None:
        self._db.run("DELETE FROM cluster_nodes WHERE node_id=:node AND instance=:instance", node=node_id,
                     instance=instance.token)
