"""Shared by the outbox tests: fast retry settings and the `db_path` / `outboxes` fixtures (each
Outbox made through `outboxes` is stopped when the test ends). Import the fixtures by name."""
import pytest

from webhooks import Outbox

TOKEN = 'OUTBOX_TOKEN'
FAST = dict(auth_token=TOKEN, backoff_base_s=0.01, backoff_max_s=0.05, connect_timeout_s=1, read_timeout_s=5)


@pytest.fixture
def db_path(tmp_path):
    return str(tmp_path / 'callfork.db')


@pytest.fixture
def outboxes():
    made = []

    def make(db_path, **kw):
        args = dict(FAST)
        args.update(kw)
        box = Outbox(db_path, **args)
        made.append(box)
        return box
    yield make
    for box in made:
        box.stop(timeout=1)
