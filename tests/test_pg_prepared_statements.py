"""records/pg_db.py prepares a statement with parameters once per connection and runs it in one
round trip after that, on a real PostgreSQL: the same text is prepared once however often it runs,
with the right rows each time; at most PREPARED_MAX texts stay prepared on a connection; the server
plans each execution for its values; a table whose columns change under a prepared `SELECT *` (a
newer node altered it) gives the new columns on the next run, and inside a transaction the error
reaches the caller once and the run after it works (the stale statement is known by the server's
routine, whatever language its message is in); an error in a statement leaves the connection
usable."""
import pytest
from pg8000.exceptions import DatabaseError

from cluster_servers import PostgresServer
from pg_support import fresh_dsn
from records import pg_db
from records.pg_db import PgDatabase


@pytest.fixture(scope="module")
def server():
    with PostgresServer() as pg:
        yield pg


@pytest.fixture
def db(server):
    database = PgDatabase(fresh_dsn(server), pool_size=1)   # one connection: every run shares it
    yield database
    database.close()


def prepared(db, like):
    """The statements prepared on the pool's one connection whose text matches `like`."""
    return db.run("SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%s'" % like)


def test_a_statement_is_prepared_once_and_gives_each_run_its_own_values(db):
    db.run("CREATE TABLE things (id int PRIMARY KEY, name text)")
    for i in range(5):
        db.run("INSERT INTO things (id, name) VALUES (:id, :name)", id=i, name=f"n{i}")
    assert [r["name"] for r in db.run("SELECT name FROM things WHERE id >= :low ORDER BY id", low=3)] == ["n3", "n4"]
    assert db.run("SELECT name FROM things WHERE id >= :low ORDER BY id", low=5) == []
    assert len(prepared(db, "INSERT INTO things%")) == 1
    assert len(prepared(db, "SELECT name FROM things%")) == 1
    with db.transaction() as tx:
        tx.run("UPDATE things SET name = :name WHERE id < :id", name="x", id=2)
        assert tx.row_count() == 2
    assert db.run("SELECT count(*) AS n FROM things WHERE name = :name", name="x")[0]["n"] == 2


def test_the_server_plans_every_execution_for_its_values(db):
    assert db.run("SHOW plan_cache_mode") == [{"plan_cache_mode": "force_custom_plan"}]


def test_at_most_prepared_max_texts_stay_prepared_on_a_connection(db):
    for i in range(pg_db.PREPARED_MAX + 10):
        assert db.run(f"SELECT :v::int + {i} AS x", v=1) == [{"x": 1 + i}]
    assert len(prepared(db, "SELECT $1::int + %")) == pg_db.PREPARED_MAX
    assert db.run("SELECT :v::int + 0 AS x", v=7) == [{"x": 7}]   # forgotten first, prepared again


def test_a_table_that_changed_its_columns_under_a_prepared_select_star(db):
    db.run("CREATE TABLE rows (id int)")
    db.run("INSERT INTO rows (id) VALUES (:id)", id=1)
    assert db.run("SELECT * FROM rows WHERE id = :id", id=1) == [{"id": 1}]
    db.run("ALTER TABLE rows ADD COLUMN extra text DEFAULT 'new'")
    assert db.run("SELECT * FROM rows WHERE id = :id", id=1) == [{"id": 1, "extra": "new"}]

    db.run("ALTER TABLE rows ADD COLUMN more int DEFAULT 2")
    with pytest.raises(DatabaseError, match="cached plan"):   # the transaction failed: its caller decides
        with db.transaction() as tx:
            tx.run("SELECT * FROM rows WHERE id = :id", id=1)
    with db.transaction() as tx:
        assert tx.run("SELECT * FROM rows WHERE id = :id", id=1) == [{"id": 1, "extra": "new", "more": 2}]


def test_a_failing_statement_leaves_the_connection_and_its_statements_usable(db):
    db.run("CREATE TABLE unique_things (id int PRIMARY KEY)")
    db.run("INSERT INTO unique_things (id) VALUES (:id)", id=1)
    with pytest.raises(DatabaseError, match="duplicate key"):
        db.run("INSERT INTO unique_things (id) VALUES (:id)", id=1)
    with pytest.raises(DatabaseError, match="syntax error"):
        db.run("SELEC :id", id=1)
    db.run("INSERT INTO unique_things (id) VALUES (:id)", id=2)
    assert db.run("SELECT count(*) AS n FROM unique_things WHERE id > :id", id=0) == [{"n": 2}]
    assert len(prepared(db, "INSERT INTO unique_things%")) == 1


def test_a_stale_plan_is_known_by_the_servers_routine_not_its_words(db):
    """A server whose lc_messages is not English words the error in its language (PostgreSQL's
    German catalogue, postgres-15.mo, below): a stale statement found only by the English words
    would stay prepared and fail every run on that connection."""
    db.run("CREATE TABLE worded (id int)")
    assert db.run("SELECT * FROM worded WHERE id = :id", id=1) == []
    db.run("ALTER TABLE worded ADD COLUMN extra text")
    with pytest.raises(DatabaseError) as raised:
        with db.transaction() as tx:
            tx.run("SELECT * FROM worded WHERE id = :id", id=1)
    fields = raised.value.args[0]
    assert fields["R"] == "RevalidateCachedQuery" and fields["C"] == "0A000"
    german = DatabaseError(dict(fields, M="gecachter Plan darf den Ergebnistyp nicht ändern"))
    assert pg_db._prepare_again(german)
    assert not pg_db._prepare_again(DatabaseError(dict(fields, R="transformLockingClause",   # another 0A000
                                                         M="FOR UPDATE is not allowed with aggregate functions")))


def test_a_prepared_statement_the_session_lost_is_prepared_again(db):
    """A session that lost its prepared statements (DEALLOCATE ALL; a pooler such as PgBouncer
    handing the next statement to another server session) answers "prepared statement does not
    exist": the text is prepared again, and only a transaction's run sees the error."""
    db.run("CREATE TABLE lost (id int)")
    db.run("INSERT INTO lost (id) VALUES (:id)", id=1)
    db.run("DEALLOCATE ALL")
    db.run("INSERT INTO lost (id) VALUES (:id)", id=2)
    db.run("DEALLOCATE ALL")
    with pytest.raises(DatabaseError, match="does not exist"):
        with db.transaction() as tx:
            tx.run("INSERT INTO lost (id) VALUES (:id)", id=3)
    with db.transaction() as tx:
        tx.run("INSERT INTO lost (id) VALUES (:id)", id=4)
    assert db.run("SELECT id FROM lost WHERE id > :id ORDER BY id", id=0) == [{"id": 1}, {"id": 2}, {"id": 4}]
    assert len(prepared(db, "INSERT INTO lost%")) == 1
