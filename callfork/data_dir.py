"""`data_dir` belongs to callfork's user alone (issue 12): it holds the REST token, the SQLite database
(calls, numbers, webhook parameters) and the recordings. Directories are created 0700 and files
0600 from the start, whatever the umask; at start, those of an earlier run that other users could
read are tightened (group and other bits removed), with a log line each.

FreeSWITCH reads the media and writes the recordings under `data_dir`, so it runs as callfork's user
(as before: callfork never made `recordings/` writable by another user). A directory callfork does
not own, or one shared through the sticky bit (`/tmp`), is left as it is, with a warning.
"""
from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("callfork.service")

DIR_MODE = 0o700
FILE_MODE = 0o600
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")   # SQLite creates them with the database file's mode


def private_dir(path: Path) -> None:
    """`path` as a directory only its owner can enter (created 0700, or tightened)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    tighten(path)


def private_file(path: Path) -> None:
    """`path` as a file only its owner can read: created empty with mode 0600 if missing, else tightened."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))
    except FileExistsError:
        tighten(path)


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, a file that is never readable by others, not even for a moment."""
    private_file(path)
    with open(path, "w") as fh:
        fh.write(text)


def private_database(path: Path) -> None:
    """The SQLite file 0600 before SQLite opens it (its -wal and -shm files then get the same mode);
    companions an earlier run left are tightened."""
    private_file(path)
    for suffix in SQLITE_COMPANIONS:
        tighten(path.with_name(path.name + suffix))


def tighten(path: Path) -> None:
    """Remove the group and other permission bits of an existing `path` (logged); missing: nothing."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    mode = stat.S_IMODE(st.st_mode)
    if not mode & 0o077:
        return
    if st.st_uid != os.geteuid():
        log.warning("%s can be read by other users (mode %04o) and belongs to another user: "
                    "left as it is", path, mode)
        return
    if stat.S_ISDIR(st.st_mode) and mode & stat.S_ISVTX:
        log.warning("%s is a shared directory (sticky bit, mode %04o): left as it is; give data_dir a "
                    "directory of callfork's own", path, mode)
        return
    new = mode & ~0o077
    os.chmod(path, new)
    log.warning("%s could be read by other users (mode %04o): now %04o", path, mode, new)
