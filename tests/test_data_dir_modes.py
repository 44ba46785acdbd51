"""data_dir is readable by callfork's user only (issue 12): a real Service creates its directories
0700 and the SQLite database (and the -wal/-shm files SQLite makes beside it) and the generated REST
token 0600 whatever the umask; what an earlier run left readable by others is tightened at start,
with a log line; a shared sticky directory is left alone."""
import logging
import os
import stat
from contextlib import contextmanager

from callfork.service import Service
from esl_app import load_config


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@contextmanager
def _service(data_dir, token=""):
    env = {"CALLFORK_SERVER_DATA_DIR": str(data_dir), "CALLFORK_SERVER_AUTH_TOKEN": token,
           "CALLFORK_FREESWITCH_ESL_PORT": "1",   # no FreeSWITCH: the control connection keeps trying
           "CALLFORK_SERVER_OUTBOUND_LISTEN": "127.0.0.1:0", "CALLFORK_SERVER_HTTP_LISTEN": "127.0.0.1:0",
           "CALLFORK_SERVER_RELAY_LISTEN": "127.0.0.1:0"}
    service = Service(load_config(None, env=env)).start()
    try:
        yield service
    finally:
        service.stop()


@contextmanager
def _umask(mask):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_data_dir_is_private_whatever_the_umask(tmp_path, capsys):
    data_dir = tmp_path / "new" / "var"
    with _umask(0o002), _service(data_dir) as service:
        assert service.auth_token and service.auth_token in capsys.readouterr().out
        for directory in (data_dir, data_dir / "recordings", data_dir / "media"):
            assert _mode(directory) == 0o700, directory
        db = data_dir / "callfork.sqlite3"
        for path in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm"), data_dir / "auth_token"):
            assert _mode(path) == 0o600, path
        assert (data_dir / "auth_token").read_text().strip() == service.auth_token


def test_what_an_earlier_run_left_open_is_tightened_with_a_log_line(tmp_path, caplog):
    data_dir = tmp_path / "var"
    with _umask(0o022), _service(data_dir):
        pass
    (data_dir / "auth_token").write_text("kept-token\n")
    loose = [data_dir, data_dir / "recordings", data_dir / "callfork.sqlite3", data_dir / "auth_token"]
    for path in loose:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    with caplog.at_level(logging.WARNING, logger="callfork.service"), _service(data_dir) as service:
        assert service.auth_token == "kept-token"
        for path in loose:
            assert _mode(path) == (0o700 if path.is_dir() else 0o600), path
            said = [r.getMessage() for r in caplog.records if str(path) in r.getMessage()]
            assert any("other users" in m for m in said), path
    # a configured token: a token file left from before is tightened all the same
    os.chmod(data_dir / "auth_token", 0o644)
    with _service(data_dir, token="configured") as service:
        assert service.auth_token == "configured" and _mode(data_dir / "auth_token") == 0o600


def test_a_shared_sticky_directory_is_left_as_it_is(tmp_path, caplog):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)   # as /tmp
    with caplog.at_level(logging.WARNING, logger="callfork.service"), _service(shared):
        assert _mode(shared) == 0o1777
        assert _mode(shared / "callfork.sqlite3") == 0o600
    assert any("shared directory" in r.getMessage() for r in caplog.records)
