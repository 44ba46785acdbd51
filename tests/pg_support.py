"""A fresh PostgreSQL database per test on one PostgresServer (tests/cluster_servers.py), so tests
that share a server start from empty tables: `fresh_dsn(server)` creates it and returns its DSN."""
import itertools

import pg8000.native

_names = itertools.count(1)


def fresh_dsn(server) -> str:
    name = f"t{next(_names)}"
    conn = pg8000.native.Connection("callfork", host="127.0.0.1", port=server.port, database="postgres", timeout=5)
    try:
        conn.run(f"DROP DATABASE IF EXISTS {name}")
        conn.run(f"CREATE DATABASE {name}")
    finally:
        conn.close()
    return f"postgresql://callfork@127.0.0.1:{server.port}/{name}"


def rows(dsn: str, sql: str) -> list:
    """What another client (another node) reads from the database right now."""
    host_port, database = dsn.rsplit("@", 1)[1].split("/")
    conn = pg8000.native.Connection("callfork", host="127.0.0.1", port=int(host_port.split(":")[1]),
                                    database=database, timeout=5)
    try:
        result = conn.run(sql)
        names = [c["name"] for c in conn.columns]
        return [dict(zip(names, r)) for r in result]
    finally:
        conn.close()
