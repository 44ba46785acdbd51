"""Filling a SQLite database file from outside, for the tests of what callfork does when its
database is full: another connection takes room in the file (a table of blobs that neither the
Store's nor the outbox's own size cap binds) and gives it back (the pages go to the free list)."""
import sqlite3


def fill(path, mb):
    """Another connection takes `mb` MB of the file."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute('CREATE TABLE filler (x BLOB)')
        conn.executemany('INSERT INTO filler VALUES (?)', [(b'x' * 65536,)] * int(mb * 16))
    conn.close()


def unfill(path):
    """The room `fill` took is free again."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute('DROP TABLE filler')   # its pages go to the free list: room again
    conn.close()
