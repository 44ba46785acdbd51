"""records/pg_db.py's connections and their prepared statements when things go wrong, on a real
PostgreSQL: a connection the server terminated while it sat in the pool (pg_terminate_backend, an
idle_session_timeout, a restart) is replaced before the next statement, which works; a statement
error inside a transaction rolls it back and leaves the connection and its prepared statements
usable; a greenlet killed mid-statement costs its connection, never the next caller's run; a
statement missing a parameter is a bad statement (ValueError), not an unavailable server (which
would keep a write in memory and retry it for ever); and a value's Python type may change between
runs of one prepared text as it may between runs of an unnamed statement (the server infers each
parameter's type from the SQL text alone: pg8000 sends no types with PARSE, only text values)."""
import gevent
import pg8000.native
import pytest
from pg8000.exceptions import DatabaseError

from cluster_servers import PostgresServer
from pg_support import fresh_dsn, rows
from records.pg_db import PgDatabase, PgUnavailable
from waiting import wait_until


@pytest.fixture(scope="module")
def server():
    with PostgresServer() as pg:
        yield pg


@pytest.fixture
def dsn(server):
    return fresh_dsn(server)


@pytest.fixture
def db(dsn):
    database = PgDatabase(dsn, pool_size=1)   # one connection: every run shares it
    yield database
    database.close()


def backend_pid(db):
    return db.run("SELECT pg_backend_pid() AS pid")[0]["pid"]


def terminate(dsn, pid):
    """What an operator's pg_terminate_backend does to one of the pool's idle connections."""
    assert rows(dsn, f"SELECT pg_terminate_backend({pid}) AS done") == [{"done": True}]
    wait_until(lambda: not rows(dsn, f"SELECT 1 AS one FROM pg_stat_activity WHERE pid={pid}"), 5,
               "the terminated backend gone")


def test_a_connection_terminated_in_the_pool_is_replaced_before_the_next_run(db, dsn):
    db.run("CREATE TABLE things (id int PRIMARY KEY, name text)")
    db.run("INSERT INTO things (id, name) VALUES (:id, :name)", id=1, name="a")
    first = backend_pid(db)
    terminate(dsn, first)
    # its prepared statements went with it: the same text is prepared again on the new connection
    db.run("INSERT INTO things (id, name) VALUES (:id, :name)", id=2, name="b")
    assert backend_pid(db) != first
    terminate(dsn, backend_pid(db))
    with db.transaction() as tx:
        tx.run("INSERT INTO things (id, name) VALUES (:id, :name)", id=3, name="c")
    assert db.run("SELECT name FROM things WHERE id > :id ORDER BY id", id=0) == [
        {"name": "a"}, {"name": "b"}, {"name": "c"}]


def test_every_idle_connection_of_a_restarted_server_is_replaced(dsn):
    db = PgDatabase(dsn, pool_size=3)
    try:
        held = [db.transaction(autocommit=True) for _ in range(3)]
        pids = [tx.__enter__().run("SELECT pg_backend_pid() AS pid")[0]["pid"] for tx in held]
        for tx in held:
            tx.__exit__(None, None, None)
        for pid in pids:   # the three pooled connections all dropped, as by a restart
            terminate(dsn, pid)
        for i in range(4):
            assert db.run("SELECT :i::int AS i", i=i) == [{"i": i}]
        assert backend_pid(db) not in pids
    finally:
        db.close()


def test_a_statement_error_in_a_transaction_rolls_it_back_and_keeps_the_connection(db):
    db.run("CREATE TABLE unique_things (id int PRIMARY KEY)")
    pid = backend_pid(db)
    with pytest.raises(DatabaseError, match="duplicate key"):
        with db.transaction() as tx:
            tx.run("INSERT INTO unique_things (id) VALUES (:id)", id=1)
            tx.run("INSERT INTO unique_things (id) VALUES (:id)", id=1)
    assert db.run("SELECT count(*) AS n FROM unique_things WHERE id > :id", id=0) == [{"n": 0}]
    # a statement prepared for the first time inside the failed transaction fails as the server says
    with pytest.raises(DatabaseError, match="current transaction is aborted"):
        with db.transaction() as tx:
            tx.run("INSERT INTO unique_things (id) VALUES (:id)", id=2)
            with pytest.raises(DatabaseError, match="duplicate key"):
                tx.run("INSERT INTO unique_things (id) VALUES (:id)", id=2)
            tx.run("SELECT id FROM unique_things WHERE id = :id", id=2)
    with db.transaction() as tx:
        tx.run("INSERT INTO unique_things (id) VALUES (:id)", id=3)
        assert tx.run("SELECT id FROM unique_things WHERE id = :id", id=3) == [{"id": 3}]
    assert backend_pid(db) == pid
    assert len(db.run("SELECT name FROM pg_prepared_statements WHERE statement LIKE 'INSERT INTO unique%'")) == 1


def test_a_greenlet_killed_mid_statement_costs_its_connection_only(db, dsn):
    pid = backend_pid(db)
    sleeper = gevent.spawn(db.run, "SELECT pg_sleep(:s) AS slept", s=3)   # the server's own delay
    wait_until(lambda: rows(dsn, f"SELECT 1 AS one FROM pg_stat_activity WHERE pid={pid} AND state='active' "
                                 "AND query LIKE 'SELECT pg_sleep%'"), 5, "the statement running")
    sleeper.kill()
    # the killed run's connection (its reply still to come) is closed, never handed to this run
    assert db.run("SELECT :v::int AS v", v=5) == [{"v": 5}]
    assert backend_pid(db) != pid


def test_a_missing_parameter_is_a_bad_statement_not_an_unavailable_server(db):
    pid = backend_pid(db)
    with pytest.raises(ValueError, match="placeholder 'b'") as raised:
        db.run("SELECT :a::int + :b::int AS x", a=1)
    assert not isinstance(raised.value, PgUnavailable)
    with pytest.raises(ValueError):
        with db.transaction() as tx:
            tx.run("SELECT :a::int AS x", b=1)
    assert db.run("SELECT :a::int + :b::int AS x", a=1, b=2) == [{"x": 3}]
    assert backend_pid(db) == pid   # the connection was fine all along


def outcome(run):
    try:
        return ("rows", run())
    except DatabaseError as exc:
        return ("error", exc.args[0]["C"])


# (SQL, runs): each run's values, whose Python types differ from the first run's
CHANGING_KINDS = [
    ("INSERT INTO kinds (id, name, score, big, flag) VALUES (:id, :name, :score, :big, :flag) "
     "RETURNING id, name, score, big, flag",
     [dict(id=1, name="a", score=1, big=1, flag=True),
      dict(id=2, name=None, score=2.5, big=None, flag=None),
      dict(id=3, name="c", score=None, big=2 ** 40, flag=False),
      dict(id=4, name="d", score=1.5, big=2.0, flag=True),       # a float into BIGINT: the server's error
      dict(id=5, name="e", score=3, big=7, flag=1)]),            # an int into BOOLEAN: the server takes '1'
    ("SELECT id FROM kinds WHERE id = ANY(:ids) ORDER BY id",
     [dict(ids=[1, 2]), dict(ids=[]), dict(ids=[3]), dict(ids=None)]),
    ("SELECT CAST(:lease AS double precision) > 0 AS leased, COALESCE(:window, 0.5) AS w",
     [dict(lease=0, window=None), dict(lease=1.5, window=2), dict(lease=None, window=0.25)]),
    ("SELECT :v AS v", [dict(v=1), dict(v="x"), dict(v=None), dict(v=2.5), dict(v=True)]),
    ("UPDATE kinds SET score = :score WHERE flag = :flag", [dict(score=4, flag=True), dict(score=None, flag=False)]),
]


def test_a_value_whose_python_type_changes_between_runs_gives_what_an_unnamed_statement_gives(db, dsn):
    table = "CREATE TABLE kinds (id int PRIMARY KEY, name text, score double precision, big bigint, flag boolean)"
    db.run(table)
    host_port = dsn.rsplit("@", 1)[1].split("/")[0]
    other = fresh_dsn_of_database(dsn, "unnamed")
    plain = pg8000.native.Connection("callfork", host="127.0.0.1", port=int(host_port.split(":")[1]),
                                     database=other, timeout=5)
    try:
        plain.run(table)
        for sql, runs in CHANGING_KINDS:
            for params in runs:
                prepared = outcome(lambda: db.run(sql, **params))
                unnamed = outcome(lambda: rows_of(plain, sql, params))
                assert prepared == unnamed, (sql, params)
        # the prepared statements' parameter types are the text's, whatever the first run's values were
        types = {r["statement"]: r["parameter_types"] for r in db.run(
            "SELECT statement, parameter_types::text[] AS parameter_types FROM pg_prepared_statements")}
        assert types["SELECT $1 AS v"] == ["text"]
        assert types["SELECT id FROM kinds WHERE id = ANY($1) ORDER BY id"] == ["integer[]"]
    finally:
        plain.close()
    assert outcome(lambda: db.run(CHANGING_KINDS[0][0], **CHANGING_KINDS[0][1][3]))[1] == "22P02"


def fresh_dsn_of_database(dsn, name):
    """A second, empty database on the same server, for pg8000's own unnamed statements."""
    host_port = dsn.rsplit("@", 1)[1].split("/")[0]
    conn = pg8000.native.Connection("callfork", host="127.0.0.1", port=int(host_port.split(":")[1]),
                                    database="postgres", timeout=5)
    try:
        conn.run(f"DROP DATABASE IF EXISTS {name}")
        conn.run(f"CREATE DATABASE {name}")
    finally:
        conn.close()
    return name


def rows_of(conn, sql, params):
    result = conn.run(sql, **params)
    if not result or not conn.columns:
        return []
    names = [c["name"] for c in conn.columns]
    return [dict(zip(names, r)) for r in result]
