"""The copy guard: a bundle that carries one never writes k consecutive characters of its
training text (whitespace and punctuation aside), whatever the seed or the prompt, even a
prompt copied from the text; seeded and batch-invariant; a bundle whose index does not match
its vocabulary is refused; end to end, /poem with a prompt from the corpus does not go on
with it."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.engine.bundle import BundleError, load_bundle
from bot.engine.copyguard import GUARD_FILE, CopyIndex
from bot.engine.scheduler import Request, Scheduler
from bot.engine.sessions import StepModel

from .botworld import asynchronous, bot_world, make_settings
from .bundles import FIXTURES, make_bundle

TEXT = (FIXTURES / "shakespeare_excerpt.txt").read_text(encoding="utf-8")
K = 6


def normalised(text: str) -> str:
    return "".join(c for c in text if c.isalnum())


_FLAT = normalised(TEXT)
GRAMS = {_FLAT[i : i + K] for i in range(len(_FLAT) - K + 1)}


def copies(text: str) -> bool:
    flat = normalised(text)
    return any(flat[i : i + K] in GRAMS for i in range(len(flat) - K + 1))


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The same copying model (an n-gram mixture that is almost all n-gram), with and
    without a guard of K."""
    root = tmp_path_factory.mktemp("models")
    common = dict(text=TEXT, ngram=6, ngram_weight=0.02, units=16, seed=3)
    open_ = make_bundle(root, "open", **common)
    guarded = make_bundle(root, "guarded", copy_guard=K, **common)
    return StepModel.load(open_, providers="cpu"), StepModel.load(guarded, providers="cpu")


def write(model: StepModel, requests: list[Request]):
    async def go():
        scheduler = Scheduler(model)
        try:
            return await asyncio.gather(*(scheduler.generate(r) for r in requests))
        finally:
            await scheduler.close()

    return asyncio.run(go())


def test_without_the_guard_the_model_copies_and_with_it_never(models):
    unguarded, guarded = models
    requests = [Request(length=300, seed=s) for s in range(24)]
    assert sum(copies(r.text) for r in write(unguarded, requests)) >= 12
    assert not any(copies(r.text) for r in write(guarded, requests))


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    seed=st.integers(0, 2**40),
    start=st.integers(0, len(TEXT) - 200),
    size=st.integers(0, 40),
    temperature=st.sampled_from([0.0, 0.5, 1.0]),
)
def test_no_sample_ever_holds_a_run_of_k_even_after_a_copied_prompt(
    models, seed, start, size, temperature
):
    _, guarded = models
    prompt = TEXT[start : start + size]  # a prompt taken from the training text itself
    result = write(
        guarded, [Request(prompt=prompt, length=120, seed=seed, temperature=temperature)]
    )[0]
    written = result.text[len(prompt) :]
    # Nothing written completes a run of K with the prompt's end, nor on its own.
    tail = normalised(prompt)[-(K - 1) :]
    flat = tail + normalised(written)
    assert not any(flat[i : i + K] in GRAMS for i in range(len(flat) - K + 1)), result.text


def test_guarded_text_is_seeded_and_the_same_among_63_others(models):
    _, guarded = models
    alone = write(guarded, [Request(length=200, seed=77)])[0].text
    crowd = write(
        guarded, [Request(length=200, seed=77)] + [Request(length=150, seed=s) for s in range(63)]
    )
    assert crowd[0].text == alone


def test_the_index_round_trips_and_a_mismatched_one_is_refused(tmp_path):
    path = make_bundle(tmp_path / "models", "g", text=TEXT, copy_guard=K)
    bundle = load_bundle(path)
    index = bundle.load_guard()
    rebuilt = CopyIndex.build(TEXT, bundle.vocab.chars, bundle.vocab.unk_id, K)
    assert np.array_equal(index.grams, rebuilt.grams) and np.array_equal(
        index.hashes, rebuilt.hashes
    )
    assert index.holds_copy(bundle.vocab.encode(TEXT[100:160])[0])
    assert not index.holds_copy(bundle.vocab.encode(TEXT[100 : 100 + K - 1])[0])
    # An index built over another vocabulary (one character fewer) is refused with a reason.
    other = CopyIndex.build(TEXT, bundle.vocab.chars[:-1], bundle.vocab.unk_id, K)
    other.save(path / GUARD_FILE)
    with pytest.raises(BundleError, match="another vocabulary"):
        StepModel.load(path, providers="cpu")
    card = json.loads((path / "card.json").read_text())
    card["copy_guard"]["k"] = 1
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="copy_guard k"):
        load_bundle(path)
    (path / GUARD_FILE).unlink()
    card["copy_guard"]["k"] = K
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="missing"):
        StepModel.load(path, providers="cpu")


@asynchronous
async def test_a_poem_from_a_copied_prompt_does_not_go_on_with_the_text(tmp_path):
    models = tmp_path / "models"
    make_bundle(
        models, "bard", text=TEXT, ngram=6, ngram_weight=0.02, units=16, seed=3, copy_guard=K
    )
    settings_ = make_settings(tmp_path, models, default_style="bard")
    prompt = TEXT[400:430]
    async with bot_world(tmp_path, settings=settings_) as w:
        for seed in range(4):
            _, message = await w.poem(
                {"style": "bard", "prompt": prompt, "length": 200, "seed": seed}
            )
            shown = message.embeds[0]["description"].replace("\\", "")
            flat = normalised(prompt)[-(K - 1) :] + normalised(shown[len(prompt) :])
            assert not any(flat[i : i + K] in GRAMS for i in range(len(flat) - K + 1)), shown
        _, info = await w.run("model", w.operator, {"style": "bard"}, subcommand="info")
        assert "copy guard" in json.dumps(info.embeds[0]).lower()


def test_the_sliding_hash_is_always_the_context_s_own(models):
    _, guarded = models
    index, vocab = guarded.guard, guarded.bundle.vocab
    ids = np.array(vocab.encode(TEXT[:400])[0], np.int64)
    contexts, start = index.context([])
    contexts, hashes = contexts[None, :].copy(), np.array([start], np.uint64)
    for i in ids.tolist():
        index.advance(contexts, hashes, np.array([0]), np.array([i]))
        assert hashes[0] == index.context(contexts[0])[1]
