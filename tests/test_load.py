"""A small `make load`: 100 /poem interactions in bursts against the bot process, through the
loopback Discord, judged by the benchmark's own code (benchmarks/load.py)."""

from __future__ import annotations

import pytest

from benchmarks.load import Shape, run_load

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
