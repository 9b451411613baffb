"""A small `make load`: 100 /poem interactions in bursts against the bot process, through the
loopback Discord, judged by the benchmark's own code (benchmarks/load.py)."""

from __future__ import annotations

import pytest

from benchmarks.load import Shape, run_load
from benchmarks.loop_stalls import HOPS, hop_summary, hops, watched_load

from .botworld import asynchronous, make_models

pytestmark = pytest.mark.timeout(180)

SHAPE = Shape(
    interactions=100,
    users=40,
    channels=8,
    guilds=2,
    seconds=4.0,
    bursts=4,
    burst_seconds=0.3,
    min_length=20,
    max_length=400,
)
PROMPTS = {"verse": ["ROMEO:", "O gentle"], "tang": ["春風", "明月"]}


@asynchronous
async def test_a_burst_of_poems_is_acknowledged_in_time_and_answered_once_each(tmp_path):
    # Replies stream (edits every 0.05 s here, so that even these small poems do): each still
    # arrives once and whole, within the rate limits the loopback announces.
    report = await run_load(
        tmp_path,
        make_models(tmp_path),
        SHAPE,
        PROMPTS,
        DEFAULT_STYLE="verse",
        STREAM_EDIT_SECONDS="0.05",
    )
    assert report.problems == []
    assert report.summary["streamed_edits_per_poem"]["poems_streamed"] > 0
    assert report.summary["rate_limited_429s"] == 0
    counts = report.counts
    # Every user's first request comes with no cooldown, in a channel that is rarely full.
    assert counts["poem"] >= SHAPE.users // 2, counts
    assert counts["cooldown"] > 0, counts


@asynchronous
async def test_each_acknowledgement_is_followed_hop_by_hop_through_the_bot(tmp_path):
    # benchmarks.loop_stalls watches the bot process from inside (discord.py's own methods,
    # timed): every deferred poem request is found there, and its hops, on the one clock both
    # processes read, follow each other in order (none negative).
    report, records = await watched_load(
        tmp_path, make_models(tmp_path), SHAPE, PROMPTS, 2.0, DEFAULT_STYLE="verse"
    )
    assert report.problems == []
    ways = hops(report.outcomes, records)
    assert len(ways) >= report.counts["poem"] > 0
    for way in ways:
        assert min(way[name] for name, _ in HOPS) >= 0, way
    summary = hop_summary(ways)
    assert summary["count"] == len(ways)
    assert summary["ack"]["max"] == round(max(w["ack"] for w in ways), 1)
    assert len(summary["slowest"]) == min(10, len(ways))
