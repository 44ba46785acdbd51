"""The call records' tables (calls, call_events, streams, recordings) in SQLite (`SCHEMA`, and
`add_missing_columns` for a file an older callfork made) and in PostgreSQL (`PG_SCHEMA`: the same
tables and columns, SQLite's 64-bit INTEGER as BIGINT since recordings hold epoch milliseconds;
`seq` orders rows as SQLite's rowid does), the fields a Store may write in each, and the status
values callfork uses. `calls.node_id` is the id of the callfork node that created the
record ('' for a single process): at start a node closes only its own calls (docs/cluster.md)."""

__all__ = ["SCHEMA", "PG_SCHEMA", "add_missing_columns", "CALL_STATUSES", "STREAM_STATUSES", "CALL_FIELDS",
           "CALL_ALIASES", "STREAM_FIELDS", "RECORDING_FIELDS", "check_fields",
           "call_fields", "stream_fields"]

CALL_STATUSES = ('ringing', 'in-progress', 'completed', 'no-answer', 'busy', 'cancel', 'timeout', 'failed')
STREAM_STATUSES = ('in-progress', 'completed', 'failed')

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    uuid TEXT PRIMARY KEY,
    direction TEXT,
    from_number TEXT,
    to_number TEXT,
    answer_url TEXT,
    status TEXT,
    start_time REAL,
    answer_time REAL,
    end_time REAL,
    hangup_cause TEXT,
    hangup_cause_code INTEGER,
    hangup_cause_name TEXT,
    hangup_source TEXT,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    node_id TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS calls_status ON calls(status, start_time);
CREATE INDEX IF NOT EXISTS calls_start ON calls(start_time);
CREATE TABLE IF NOT EXISTS call_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    call_uuid TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS call_events_call ON call_events(call_uuid, id);
CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY,
    call_uuid TEXT NOT NULL,
    service_url TEXT,
    audio_track TEXT,
    bidirectional INTEGER,
    content_type TEXT,
    sampling_rate INTEGER,
    stream_timeout REAL,
    status_callback_url TEXT,
    status_callback_method TEXT,
    status TEXT,
    start_time REAL,
    end_time REAL,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS streams_call ON streams(call_uuid, created_at);
CREATE TABLE IF NOT EXISTS recordings (
    recording_id TEXT PRIMARY KEY,
    call_uuid TEXT NOT NULL,
    path TEXT,
    format TEXT,
    duration_ms INTEGER,
    start_ms INTEGER,
    end_ms INTEGER,
    end_reason TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS recordings_call ON recordings(call_uuid, created_at);
"""

# columns added after the first release: an older database file gets them at open
ADDED_CALL_COLUMNS = (("node_id", "TEXT NOT NULL DEFAULT ''"),)

PG_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS calls (
    uuid TEXT PRIMARY KEY, seq BIGSERIAL, node_id TEXT NOT NULL DEFAULT '',
    direction TEXT, from_number TEXT, to_number TEXT, answer_url TEXT, status TEXT,
    start_time DOUBLE PRECISION, answer_time DOUBLE PRECISION, end_time DOUBLE PRECISION,
    hangup_cause TEXT, hangup_cause_code BIGINT, hangup_cause_name TEXT, hangup_source TEXT, error TEXT,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS calls_status ON calls(status, start_time)",
    "CREATE INDEX IF NOT EXISTS calls_start ON calls(start_time)",
    "CREATE INDEX IF NOT EXISTS calls_node_live ON calls(node_id) WHERE end_time IS NULL",
    """CREATE TABLE IF NOT EXISTS call_events (
    id BIGSERIAL PRIMARY KEY, call_uuid TEXT NOT NULL, ts DOUBLE PRECISION NOT NULL, kind TEXT NOT NULL,
    detail TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS call_events_call ON call_events(call_uuid, id)",
    """CREATE TABLE IF NOT EXISTS streams (
    stream_id TEXT PRIMARY KEY, seq BIGSERIAL, call_uuid TEXT NOT NULL, service_url TEXT, audio_track TEXT,
    bidirectional BIGINT, content_type TEXT, sampling_rate BIGINT, stream_timeout DOUBLE PRECISION,
    status_callback_url TEXT, status_callback_method TEXT, status TEXT, start_time DOUBLE PRECISION,
    end_time DOUBLE PRECISION, error TEXT, created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS streams_call ON streams(call_uuid, created_at)",
    """CREATE TABLE IF NOT EXISTS recordings (
    recording_id TEXT PRIMARY KEY, seq BIGSERIAL, call_uuid TEXT NOT NULL, path TEXT, format TEXT,
    duration_ms BIGINT, start_ms BIGINT, end_ms BIGINT, end_reason TEXT,
    created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS recordings_call ON recordings(call_uuid, created_at)",
    # a cluster node's live call: what its hangup webhook needs, for the node that closes the call
    # if this one dies (callfork/node_death.py); not part of the call's record
    "CREATE TABLE IF NOT EXISTS call_hooks (call_uuid TEXT PRIMARY KEY, hook TEXT NOT NULL)",
)


def add_missing_columns(db):
    """Columns added since a SQLite database file was made (records.Database), added now."""
    have = {r['name'] for r in db.query('PRAGMA table_info(calls)')}
    for name, kind in ADDED_CALL_COLUMNS:
        if name not in have:
            db.execute('ALTER TABLE calls ADD COLUMN %s %s' % (name, kind))


CALL_FIELDS = ('direction', 'from_number', 'to_number', 'answer_url', 'status', 'start_time', 'answer_time',
               'end_time', 'hangup_cause', 'hangup_cause_code', 'hangup_cause_name', 'hangup_source', 'error')
CALL_ALIASES = {'from_': 'from_number', 'from': 'from_number', 'to': 'to_number'}
STREAM_FIELDS = ('call_uuid', 'service_url', 'audio_track', 'bidirectional', 'content_type', 'sampling_rate',
                 'stream_timeout', 'status_callback_url', 'status_callback_method', 'status', 'start_time',
                 'end_time', 'error')
RECORDING_FIELDS = ('call_uuid', 'path', 'format', 'duration_ms', 'start_ms', 'end_ms', 'end_reason')


def check_fields(fields, allowed, what):
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
        raise ValueError('unknown %s field(s): %s (known: %s)' % (what, ', '.join(unknown), ', '.join(allowed)))


def call_fields(fields):
    """A call's fields as a Store writes them (`from_`/`from`/`to` as from_number/to_number),
    checked: ValueError for an unknown field or status."""
    fields = {CALL_ALIASES.get(k, k): v for k, v in fields.items()}
    check_fields(fields, CALL_FIELDS, 'call')
    status = fields.get('status')
    if status is not None and status not in CALL_STATUSES:
        raise ValueError('call status %r is not one of %s' % (status, CALL_STATUSES))
    return fields


def stream_fields(fields):
    """Checks a stream's fields (ValueError for an unknown field or status, an empty call_uuid) and
    stores `bidirectional` as 0/1, in place; the Store checks that a new stream has a call_uuid."""
    check_fields(fields, STREAM_FIELDS, 'stream')
    status = fields.get('status')
    if status is not None and status not in STREAM_STATUSES:
        raise ValueError('stream status %r is not one of %s' % (status, STREAM_STATUSES))
    if 'bidirectional' in fields and fields['bidirectional'] is not None:
        fields['bidirectional'] = 1 if fields['bidirectional'] else 0
    if 'call_uuid' in fields and not fields['call_uuid']:
        raise ValueError('call_uuid cannot be empty')
