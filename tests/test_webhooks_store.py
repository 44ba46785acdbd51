"""Store: call records, timeline, streams and recordings round-trip through a real SQLite file, and
share the file with the outbox; timeline rows kept in memory are seen by every reader and written
with the next write, by the timer, at close and at a clean exit."""
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gevent
import pytest

from waiting import wait_until
from records import Store
from sqlite_filler import fill, unfill
from webhooks import Outbox

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / 'callfork.db'))
    yield s
    s.close()


def test_call_round_trip_and_partial_updates(store):
    t0 = time.time()
    store.upsert_call('u1', direction='inbound', from_number='14155550100', to='14155550101',
                      answer_url='http://app/answer', status='ringing', start_time=t0)
    call = store.get_call('u1')
    assert (call['uuid'], call['direction'], call['from_number'], call['to_number'], call['status']) == \
        ('u1', 'inbound', '14155550100', '14155550101', 'ringing')
    assert call['start_time'] == t0 and call['answer_time'] is None
    store.upsert_call('u1', status='in-progress', answer_time=t0 + 1)
    store.upsert_call('u1', status='completed', end_time=t0 + 5, hangup_cause='NORMAL_CLEARING',
                      hangup_cause_code=4010, hangup_cause_name='End Of XML Instructions',
                      hangup_source='Answer XML', error=None)
    call = store.get_call('u1')
    assert call['from_number'] == '14155550100' and call['answer_url'] == 'http://app/answer'  # kept
    assert call['status'] == 'completed' and call['answer_time'] == t0 + 1 and call['end_time'] == t0 + 5
    assert call['hangup_cause_code'] == 4010 and call['hangup_source'] == 'Answer XML'
    assert store.get_call('missing') is None


def test_call_field_validation(store):
    with pytest.raises(ValueError):
        store.upsert_call('u1', colour='blue')
    with pytest.raises(ValueError):
        store.upsert_call('u1', status='exploded')
    assert store.get_call('u1') is None


def test_list_calls_filters_and_pages(store):
    t0 = time.time()
    for i in range(5):
        store.upsert_call('u%d' % i, status='ringing', start_time=t0 + i)
    store.upsert_call('u1', status='completed', end_time=t0 + 10)
    store.upsert_call('u3', status='in-progress')
    assert [c['uuid'] for c in store.list_calls()] == ['u4', 'u3', 'u2', 'u1', 'u0']  # newest first
    assert [c['uuid'] for c in store.list_calls(live_only=True)] == ['u4', 'u3', 'u2', 'u0']
    assert [c['uuid'] for c in store.list_calls(limit=2, offset=1)] == ['u3', 'u2']
    assert store.count_calls() == 5 and store.count_calls(live_only=True) == 4


def test_timeline(store):
    store.add_event('u1', 'verb', {'name': 'Speak', 'line': 2})
    store.add_event('u2', 'verb', {'name': 'Play'})
    store.add_event('u1', 'error', {'message': 'bad', 'obj': object()})  # not JSON: stored as text
    store.add_event('u1', 'webhook')
    events = store.timeline('u1')
    assert [e['kind'] for e in events] == ['verb', 'error', 'webhook']
    assert events[0]['detail'] == {'name': 'Speak', 'line': 2}
    assert events[1]['detail']['message'] == 'bad' and isinstance(events[1]['detail']['obj'], str)
    assert events[2]['detail'] == {}
    assert events[0]['ts'] <= events[1]['ts'] <= events[2]['ts']


def test_streams(store):
    store.upsert_stream('s1', call_uuid='u1', service_url='wss://app/ws', audio_track='both', bidirectional=True,
                        content_type='audio/x-l16;rate=8000', sampling_rate=8000, stream_timeout=86400,
                        status_callback_url='http://app/status', status_callback_method='POST',
                        status='in-progress', start_time=1.0)
    store.upsert_stream('s2', call_uuid='u1', service_url='wss://app/ws2', bidirectional=False, status='in-progress')
    store.upsert_stream('s3', call_uuid='u2', service_url='wss://other')
    store.upsert_stream('s1', status='failed', end_time=2.0, error='connection disconnected with the remote service')
    s1 = store.get_stream('s1')
    assert s1['bidirectional'] is True and s1['audio_track'] == 'both' and s1['sampling_rate'] == 8000
    assert s1['status'] == 'failed' and s1['end_time'] == 2.0 and s1['service_url'] == 'wss://app/ws'
    assert [s['stream_id'] for s in store.list_streams('u1')] == ['s1', 's2']
    assert store.get_stream('s2')['bidirectional'] is False
    assert store.get_stream('nope') is None
    with pytest.raises(ValueError):
        store.upsert_stream('s4', service_url='wss://x')  # a new stream needs its call
    with pytest.raises(ValueError):
        store.upsert_stream('s1', status='streaming')


def test_recordings(store):
    store.add_recording('r1', 'u1', path='/var/rec/r1.wav', format='wav', start_ms=1000)
    store.add_recording('r2', 'u1', path='/var/rec/r2.mp3', format='mp3')
    store.update_recording('r1', end_ms=43120, duration_ms=42120, end_reason='FinishedOnKey')
    r1 = store.get_recording('r1')
    assert (r1['call_uuid'], r1['path'], r1['format'], r1['start_ms'], r1['end_ms'], r1['duration_ms'],
            r1['end_reason']) == ('u1', '/var/rec/r1.wav', 'wav', 1000, 43120, 42120, 'FinishedOnKey')
    assert [r['recording_id'] for r in store.list_recordings('u1')] == ['r1', 'r2']
    assert store.list_recordings('u2') == []
    with pytest.raises(KeyError):
        store.update_recording('missing', end_reason='HungUp')
    with pytest.raises(ValueError):
        store.update_recording('r1', size=3)


def test_persists_and_shares_the_file_with_the_outbox(tmp_path):
    path = str(tmp_path / 'shared.db')
    store = Store(path)
    box = Outbox(path, auth_token='T')
    store.upsert_call('u1', status='ringing')
    box.enqueue('u1', 'http://127.0.0.1:9/x', 'POST', {'a': '1'})
    store.close()
    again = Store(path)
    assert again.get_call('u1')['status'] == 'ringing'
    assert box.depth() == 1


def test_many_greenlets_write_concurrently(store):
    def work(n):
        for i in range(20):
            store.upsert_call('g%d' % n, status='in-progress', start_time=float(i))
            store.add_event('g%d' % n, 'verb', {'i': i})
            gevent.sleep(0)
    gevent.joinall([gevent.spawn(work, n) for n in range(10)], timeout=10, raise_error=True)
    assert store.count_calls() == 10
    assert all(len(store.timeline('g%d' % n)) == 20 for n in range(10))


# ---------------------------------------------------------------- grouped timeline writes

def _rows_on_disk(path, table='call_events'):
    """What another connection (another process) reads from the file right now."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute('SELECT COUNT(*) FROM %s' % table).fetchone()[0]
    finally:
        conn.close()


def test_kept_timeline_rows_are_seen_by_every_reader_of_the_store(tmp_path):
    path = str(tmp_path / 'callfork.db')
    store = Store(path, flush_delay_s=60)
    try:
        store.add_event('u1', 'verb', {'n': 1})
        assert _rows_on_disk(path) == 0          # kept in memory for now
        assert [e['detail'] for e in store.timeline('u1')] == [{'n': 1}]
        assert _rows_on_disk(path) == 1          # a read writes them first
    finally:
        store.close()


def test_kept_rows_go_out_with_the_next_write_and_with_the_timer(tmp_path):
    path = str(tmp_path / 'callfork.db')
    store = Store(path, flush_delay_s=0.3)
    try:
        store.add_event('u1', 'document_fetched', {})
        store.add_event('u1', 'answered', {})
        store.upsert_call('u1', status='in-progress')
        assert _rows_on_disk(path) == 2 and _rows_on_disk(path, 'calls') == 1   # one transaction
        store.add_event('u1', 'verb', {})
        started = time.monotonic()
        wait_until(lambda: _rows_on_disk(path) == 3, 3, 'the timer wrote the row')
        assert time.monotonic() - started >= 0.2
        assert [e['kind'] for e in store.timeline('u1')] == ['document_fetched', 'answered', 'verb']
    finally:
        store.close()


def test_close_and_a_clean_exit_write_kept_rows(tmp_path):
    path = str(tmp_path / 'callfork.db')
    store = Store(path, flush_delay_s=60)
    store.add_event('u1', 'verb', {})
    store.close()
    assert _rows_on_disk(path) == 1
    child = textwrap.dedent('''
        from gevent import monkey; monkey.patch_all()
        import sys
        from records import Store
        store = Store(sys.argv[1], flush_delay_s=60)
        store.add_event('u2', 'verb', {})
        store.add_event('u2', 'error', {'message': 'x'})
        sys.exit(0)   # no close(): the exit hook writes them
    ''')
    done = subprocess.run([sys.executable, '-c', child, path], cwd=str(REPO), capture_output=True, timeout=30,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert done.returncode == 0, done.stderr
    assert _rows_on_disk(path) == 3


def test_no_delay_writes_each_row_at_once(tmp_path):
    path = str(tmp_path / 'callfork.db')
    store = Store(path, flush_delay_s=0)
    try:
        store.add_event('u1', 'verb', {})
        assert _rows_on_disk(path) == 1
    finally:
        store.close()


def test_a_refused_write_is_kept_in_order_and_written_when_the_database_takes_it(tmp_path):
    path = str(tmp_path / 'callfork.db')
    store = Store(path, flush_delay_s=60, busy_timeout_ms=50)
    try:
        store.add_event('u1', 'verb', {})
        with pytest.raises(ValueError):
            store.upsert_stream('s1', service_url='wss://x')   # refused before anything is written
        blocker = sqlite3.connect(path, timeout=0)
        blocker.execute('BEGIN IMMEDIATE')                     # another writer holds the file
        store.upsert_call('u1', status='ringing')              # kept, not raised into the call
        store.add_event('u1', 'answered', {})
        store.upsert_call('u1', status='in-progress')          # queued behind the first
        store.update_recording('not-there-yet', end_reason='x')   # no KeyError: not known yet
        health = store.health()
        assert not health['writable'] and 'locked' in health['error']
        assert health['kept'] == 5 and health['dropped'] == 0
        assert store.get_call('u1') is None                    # reads see the file
        blocker.rollback()
        blocker.close()
        wait_until(lambda: store.health()['writable'], 5, 'the timer wrote the kept writes')
        assert store.health()['kept'] == 0
        assert store.get_call('u1')['status'] == 'in-progress'
        assert [e['kind'] for e in store.timeline('u1')] == ['verb', 'answered']
    finally:
        store.close()


def test_a_full_database_keeps_writes_within_a_bound_then_writes_them(tmp_path):
    path = str(tmp_path / 'callfork.db')
    store = Store(path, flush_delay_s=60, max_bytes=1 << 20, max_backlog=30)
    try:
        fill(path, 1.5)            # the file is past the Store's cap: SQLite answers SQLITE_FULL
        for n in range(40):
            store.upsert_call('c%d' % n, status='ringing', from_number='x' * 500)
        health = store.health()
        assert not health['writable'] and 'full' in health['error']
        assert health['dropped'] > 0 and health['kept'] <= 30   # bounded, and the loss counted
        unfill(path)
        wait_until(lambda: store.health()['writable'], 5, 'the kept writes went in')
        assert store.count_calls() == health['kept'] + (40 - health['kept'] - health['dropped'])
        assert store.get_call('c0')['status'] == 'ringing'
    finally:
        store.close()
