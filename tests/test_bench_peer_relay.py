"""The relay benchmark's peer row (bench/peer_relay.py: the relay a user would write first, asyncio and
the `websockets` library) carries a few streams through the benchmark's own harness: every frame the
load generator sent in the window reaches the sink app as a Vobiz `media` message, whose payload the
sink decodes back to the send time (so the latency columns mean something)."""
from bench import relay


def test_the_peer_relay_carries_streams_in_the_relay_harness():
    row = relay.run_one(10, rate=8000, duration=1.0, warmup=0.5, log=print, kind="peer")
    assert row["started"] == 10
    assert row["sent"] >= 10 * 40   # 50 frames/s each over the 1 s window, less any late start
    assert row["lost"] == 0 and row["seq_gaps"] == 0
    assert row["received"] == row["sent"]
    # frames_in counts what the relay took in between two RPCs at the window's edges, while "sent" counts
    # by the frames' send times: a loaded machine shifts the two windows by a few frames either way
    assert 0.9 * row["sent"] <= row["frames_in"] <= 1.1 * row["sent"]
    assert row["lat_p50"] is not None and 0 < row["lat_p50"] < 1000
