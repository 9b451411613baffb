"""The n-gram model a bundle may carry: serving agrees with scoring, storage, the mixture."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from bot.engine.bundle import NGRAM_FILE, BundleError, Vocab, load_bundle
from bot.engine.ngram import NGram
from bot.engine.scheduler import Request, generate_once
from bot.engine.sessions import StepModel

from .bundles import FIXTURES, make_bundle

TEXT = (FIXTURES / "shakespeare_excerpt.txt").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def vocab():
    return Vocab.build(TEXT)


@pytest.fixture(scope="module")
def ngram(vocab):
    return NGram.fit(vocab.encode(TEXT[:-500])[0], len(vocab), order=5)


def test_serving_distribution_agrees_with_scoring_one_character_at_a_time(ngram, vocab):
    ids = vocab.encode(TEXT[-500:])[0]
    scored = ngram.log_probs(ids)
    state = ngram.start(1)
    for t in range(len(ids) - 1):
        state = ngram.advance(state, ids[t : t + 1])
        dist = ngram.distribution(state)[0]
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.log(dist[ids[t + 1]]) == pytest.approx(scored[t + 1], abs=1e-12)
    # Only the last order-1 characters matter: starting over from them lands in the same state.
    assert (ngram.state_after(list(ids[:-1])) == state[0]).all()


def test_rows_of_a_batch_are_computed_independently(ngram, vocab):
    ids = vocab.encode(TEXT[-500:])[0]
    states = np.stack([ngram.state_after(list(ids[: 7 * i])) for i in range(40)])
    together = ngram.distribution(states)
    for i in (0, 1, 17, 39):
        assert (ngram.distribution(states[i : i + 1])[0] == together[i]).all()


def test_saved_model_loads_to_the_same_distributions_and_junk_is_refused(ngram, tmp_path):
    path = tmp_path / NGRAM_FILE
    ngram.save(path)
    again = NGram.load(path)
    states = np.stack([ngram.start(1)[0], ngram.state_after([3, 5, 8, 2])])
    assert (again.distribution(states) == ngram.distribution(states)).all()
    (tmp_path / "junk.npz").write_bytes(b"not numpy")
    with pytest.raises(ValueError, match="not an n-gram model"):
        NGram.load(tmp_path / "junk.npz")


def test_mixture_is_the_weighted_sum_of_both_distributions(ngram):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, ngram.size)).astype(np.float32)
    states = np.stack([ngram.start(1)[0], ngram.state_after([3, 5]), ngram.state_after([7])])
    counted = ngram.distribution(states)
    network = np.exp(logits - logits.max(1, keepdims=True))
    network /= network.sum(1, keepdims=True)
    mixed = np.exp(ngram.mixed_logits(logits, states, 0.3))
    # float32, as onnxruntime gives the logits
    assert np.allclose(mixed, 0.3 * network + 0.7 * counted, rtol=1e-5, atol=0)
    assert np.allclose(mixed.sum(1), 1.0)


def test_a_bundle_whose_ngram_dominates_writes_its_corpus_phrases(tmp_path):
    """Greedy text from a random network that leans on a 6-gram model of its corpus is made of
    the corpus's 6-grams; the same network alone is not."""
    prompt = TEXT[:40]
    request = Request(prompt=prompt, length=200, temperature=0, seed=1)
    corpus_grams = {TEXT[i : i + 6] for i in range(len(TEXT) - 5)}
    share = {}
    for name, ngram in (("mixed", 6), ("alone", 0)):
        path = make_bundle(tmp_path / name, ngram=ngram, ngram_weight=0.1)
        written = asyncio.run(generate_once(path, request, "cpu")).text[len(prompt) - 5 :]
        grams = [written[i : i + 6] for i in range(len(written) - 5)]
        share[name] = sum(g in corpus_grams for g in grams) / len(grams)
    assert share["mixed"] > 0.8 > 0.2 > share["alone"], share


def test_broken_ngram_sections_are_refused_with_a_reason(tmp_path):
    path = make_bundle(tmp_path, ngram=3)
    assert StepModel.load(path, providers="cpu").ngram.order == 3
    card = json.loads((path / "card.json").read_text())
    card["ngram"]["weight"] = 1.5
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="weight"):
        load_bundle(path)
    card["ngram"]["weight"] = 0.5
    card["ngram"]["order"] = "3"
    (path / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="order"):
        load_bundle(path)
    card["ngram"]["order"] = 3
    (path / "card.json").write_text(json.dumps(card))
    (path / NGRAM_FILE).write_bytes(b"truncated")
    with pytest.raises(BundleError, match="not an n-gram model"):
        StepModel.load(path, providers="cpu")
    (path / NGRAM_FILE).unlink()
    with pytest.raises(BundleError, match="missing"):
        StepModel.load(path, providers="cpu")
    # One fitted over another vocabulary.
    other = make_bundle(tmp_path, style="other", text=TEXT[:300], ngram=3)
    (path / NGRAM_FILE).write_bytes((other / NGRAM_FILE).read_bytes())
    with pytest.raises(BundleError, match=r"ids but vocab\.json holds"):
        StepModel.load(path, providers="cpu")
