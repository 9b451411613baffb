"""Operators add and retrain styles from Discord: real training and export child processes on
a tiny corpus, the new version then answering /poem."""

from __future__ import annotations

import gzip
import io
import zipfile

import pytest

from bot.engine.bundle import load_bundle

from .botworld import asynchronous, bot_world, footer, job_text
from .bundles import FIXTURES

pytest.importorskip("tensorflow", reason="retraining needs the train extra")

from training.speed import resolve_precision

pytestmark = pytest.mark.timeout(300)

CORPUS = (FIXTURES / "shakespeare_excerpt.txt").read_bytes()


def job_finished(record):
    text = job_text(record)
    return ("succeeded" in text or "failed" in text or "cancelled" in text) and text


@asynchronous
async def test_add_a_style_from_an_upload_then_retrain_it(tmp_path):
    async with bot_world(tmp_path) as w:
        # With a trigram model mixed in and coupled gates, which the retrain below must keep.
        record = await w.add_style(
            "bard", CORPUS, "bard.txt", epochs=2, size="small", ngram=3, cell="coupled"
        )
        done = await record.wait_for(job_finished, timeout=240)
        assert "succeeded" in done and "v1 is live" in done, done
        progress = record.messages[0]
        assert any("epoch 2/2" in v.body.get("content", "") for v in progress.versions)
        _, poem = await w.poem({"style": "bard", "prompt": "KING:", "length": 400})
        assert "bard v1" in footer(poem)
        # The new style plans themes from its own corpus.
        _, themed = await w.poem({"style": "bard", "about": "the people", "length": 400})
        assert footer(themed).startswith("about the people: people"), footer(themed)
        assert "people" in themed.embeds[0]["description"]
        v1 = load_bundle(tmp_path / "models" / "bard" / "v1")
        assert (v1.card["ngram"]["order"], v1.ngram_weight) == (3, 0.5)
        assert v1.card["cell"] == "coupled"

        record = await w.discord.invoke(
            w.guild,
            w.channel,
            w.operator,
            "model",
            {"style": "bard", "epochs": 1, "activate": True},
            subcommand="retrain",
        )
        await record.final(timeout=30)
        # The interaction token expires while the job runs: progress moves to the channel.
        w.discord.advance_clock(16 * 60)
        channel_message = await w.discord.wait_for(
            lambda: next(
                (
                    m
                    for m in w.discord.messages
                    if m.interaction_id is None and "v2 is live" in m.content
                ),
                None,
            ),
            timeout=240,
        )
        assert "Job 2" in channel_message.content
        v2 = load_bundle(tmp_path / "models" / "bard" / "v2")
        assert (v2.card["ngram"]["order"], v2.ngram_weight) == (3, 0.5)
        assert v2.card["cell"] == "coupled"
        # It compares the figures the engine serves (the mixtures'), markdown-escaped.
        served, live = (
            f"{b.card['metrics']['val_loss']:.4f}".replace(".", "\\.") for b in (v2, v1)
        )
        assert f"validation {served} vs live {live}" in channel_message.content
        # Both jobs trained with `python -m training`'s speed defaults (bfloat16 where native).
        for bundle in (v1, v2):
            assert bundle.card["training"]["speed"]["precision"] == resolve_precision("auto")[1]
        _, poem = await w.poem({"style": "bard", "length": 400})
        assert "bard v2" in footer(poem)
        _, jobs = await w.run("model", w.operator, subcommand="jobs")
        assert "job 1 · bard · succeeded" in jobs.content
        assert "job 2 · bard · succeeded" in jobs.content
        # Only the edits tried with the expired token (the bot then moved to the channel).
        assert {v.rule for v in w.discord.violations} <= {"token-expired"}


@pytest.mark.parametrize(
    ("filename", "data", "says"),
    [
        ("empty.txt", b"", "at least"),
        ("latin1.txt", "Caf\xe9 au lait. ".encode("latin-1") * 300, "not UTF-8"),
        ("poems.zip", None, "zip archive"),
        ("poems.txt.gz", gzip.compress(CORPUS), "gzip"),
        ("binary.bin", b"\x00\x01\x02" * 2000, "NUL"),
        ("short.txt", b"only a line\n", "at least"),
    ],
)
@asynchronous
async def test_unusable_uploads_are_refused_with_a_reason(tmp_path, filename, data, says):
    if data is None:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("poems.txt", CORPUS)
        data = buffer.getvalue()
    async with bot_world(tmp_path) as w:
        record = await w.add_style("junk", data, filename)
        reply = await record.final(timeout=30)
        assert reply.ephemeral and says in reply.content, reply.content
        assert await w.bot.jobs.listing() == []
        assert not (tmp_path / "models" / "junk").exists()


@asynchronous
async def test_a_refused_uploads_name_is_echoed_short_and_literal(tmp_path):
    # The name is the uploader's text: markdown or a mention in it must show as typed, and a
    # long one must not push the reply past Discord's 2,000 characters (it would reach nobody).
    name = "**loud** <@&1> " + "n" * 3000 + ".txt"
    async with bot_world(tmp_path) as w:
        record = await w.add_style("junk", "Caf\xe9 ".encode("latin-1") * 900, name)
        reply = await record.final(timeout=30)
        assert reply.ephemeral and "not UTF-8" in reply.content, reply.content
        assert r"\*\*loud\*\*" in reply.content and len(reply.content) < 400
        assert not w.discord.violations


@asynchronous
async def test_upload_over_the_size_cap_is_refused_before_download(tmp_path):
    from .botworld import make_models, make_settings

    settings = make_settings(tmp_path, make_models(tmp_path), max_corpus_bytes=10_000)
    async with bot_world(tmp_path, settings=settings) as w:
        record = await w.add_style("big", CORPUS, "big.txt")
        reply = await record.final(timeout=30)
        assert reply.ephemeral and "limit is 10,000" in reply.content
