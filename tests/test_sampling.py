"""Sampler properties a user relies on: greedy at 0, top-k/top-p bounds, seeded repeats."""

from __future__ import annotations

import numpy as np

from bot.engine.sampling import sample


def run(logits, temperature=1.0, top_k=0, top_p=1.0, u=None, banned=None, seed=0):
    n = logits.shape[0]
    full = lambda v, dtype: np.full(n, v, dtype) if np.isscalar(v) else np.asarray(v, dtype)  # noqa: E731
    if u is None:
        u = np.random.default_rng(seed).random(n)
    return sample(
        logits.astype(np.float32),
        full(temperature, np.float64),
        full(top_k, np.int64),
        full(top_p, np.float64),
        u,
        banned,
    )


def test_temperature_zero_is_argmax():
    logits = np.random.default_rng(1).standard_normal((50, 40))
    assert (run(logits, temperature=0.0) == logits.argmax(axis=1)).all()


def test_a_tiny_temperature_is_greedy_not_garbage():
    logits = np.random.default_rng(6).standard_normal((50, 40)) * 20
    for temperature in (5e-324, 1e-300, 1e-12):
        assert (run(logits, temperature=temperature, banned=0) == logits[:, 1:].argmax(1) + 1).all()


def test_banned_id_is_never_chosen_even_when_likeliest():
    logits = np.zeros((200, 10))
    logits[:, 0] = 50.0
    assert not (run(logits, temperature=0.0, banned=0) == 0).any()
    assert not (run(logits, temperature=2.0, banned=0, seed=3) == 0).any()


def test_top_k_never_leaves_the_top_k():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2000, 30))
    picked = run(logits, temperature=5.0, top_k=3, seed=4)
    top3 = np.argsort(-logits, axis=1)[:, :3]
    assert all(p in t for p, t in zip(picked, top3, strict=True))


def test_top_p_keeps_the_nucleus():
    # Probabilities 0.5, 0.3, 0.15, 0.05: top-p 0.75 keeps the first two (0.8 >= 0.75).
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.tile(np.log(probs), (5000, 1))
    picked = run(logits, top_p=0.75, seed=5)
    assert set(picked.tolist()) == {0, 1}
    share = (picked == 0).mean()
    assert abs(share - 0.5 / 0.8) < 0.03  # renormalised within the nucleus


def test_sampling_follows_the_distribution():
    probs = np.array([0.7, 0.2, 0.1])
    picked = run(np.tile(np.log(probs), (20_000, 1)), seed=6)
    counts = np.bincount(picked, minlength=3) / len(picked)
    assert np.abs(counts - probs).max() < 0.02


def test_same_draws_same_choices_and_rows_do_not_affect_each_other():
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((64, 100)) * 3
    temps = rng.uniform(0.2, 1.5, 64)
    ks = rng.integers(0, 20, 64)
    ps = rng.uniform(0.5, 1.0, 64)
    u = rng.random(64)
    together = sample(logits.astype(np.float32), temps, ks, ps, u, 0)
    alone = [
        sample(
            logits[i : i + 1].astype(np.float32),
            temps[i : i + 1],
            ks[i : i + 1],
            ps[i : i + 1],
            u[i : i + 1],
            0,
        )[0]
        for i in range(64)
    ]
    assert together.tolist() == alone


def test_per_row_temperatures_in_one_batch():
    logits = np.tile(np.array([3.0, 0.0, 0.0, 0.0]), (4000, 1))
    temps = np.where(np.arange(4000) < 2000, 0.05, 20.0)
    picked = run(logits, temperature=temps, seed=8)
    cold, hot = picked[:2000], picked[2000:]
    assert (cold == 0).all()
    assert 0.2 < (hot == 0).mean() < 0.4  # near uniform when hot


def test_top_k_and_top_p_over_a_large_vocabulary_keep_exactly_the_defined_set():
    """6,500 ids (the Chinese styles' size): the sampler sorts only the likeliest candidates,
    widening them when the nucleus is wide; the kept set must be the definition's."""
    from bot.engine.sampling import _nucleus

    rng = np.random.default_rng(11)
    vocab = 6500
    # Peaky rows (a small nucleus) and flat rows (a nucleus of thousands of ids).
    logits = np.concatenate(
        [rng.standard_normal((8, vocab)) * 4.0, rng.standard_normal((8, vocab)) * 0.3]
    )
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    for k, top in ((0, 0.9), (40, 1.0), (40, 0.5), (3000, 0.99), (0, 0.999)):
        ks, tops = np.full(len(p), k), np.full(len(p), top)
        kept = _nucleus(p, ks, tops) > 0
        for row, probs in enumerate(p):
            order = np.argsort(-probs, kind="stable")
            mass = np.cumsum(probs[order])
            needed = int((mass < top * probs.sum()).sum()) + 1
            size = min(k if 0 < k < vocab else vocab, needed)
            assert set(np.flatnonzero(kept[row])) == set(order[:size].tolist()), (k, top, row)


def test_draws_over_a_large_vocabulary_follow_the_distribution_and_skip_empty_ids():
    """6,500 ids, drawn block by block: the frequencies follow the probabilities, and ids
    with no mass (the banned one, a zeroed stretch) are never drawn."""
    rng = np.random.default_rng(4)
    vocab, n = 6500, 20000
    logits = rng.standard_normal(vocab) * 2.0
    logits[1000:1300] = -np.inf  # a run of impossible ids across block boundaries
    # Drawn 2,000 rows at a time (each row's draw is its own): the whole tile in float64
    # would be a gigabyte.
    u = np.random.default_rng(9).random(n)
    rows = np.tile(logits.astype(np.float32), (2000, 1))
    picked = np.concatenate([run(rows, u=u[i : i + 2000], banned=7) for i in range(0, n, 2000)])
    assert not np.isin(picked, [7, *range(1000, 1300)]).any()
    p = np.exp(logits - logits.max())
    p[7] = 0.0
    p /= p.sum()
    top = np.argsort(-p)[:20]  # the likeliest ids are drawn about as often as they should be
    observed = np.bincount(picked, minlength=vocab)[top] / n
    assert np.all(np.abs(observed - p[top]) < 4 * np.sqrt(p[top] / n) + 1e-3)


def test_a_rows_draw_over_a_large_vocabulary_is_the_same_alone_and_among_63_others():
    """Tang's 7,586 ids, drawn block by block: every sum runs along its own row."""
    rng = np.random.default_rng(12)
    logits = (rng.standard_normal((64, 7586)) * 3).astype(np.float32)
    logits[:, rng.integers(0, 7586, 3000)] = -np.inf  # masked ids, as the forms mask them
    temps = rng.uniform(0.3, 1.2, 64)
    u = rng.random(64)
    none, whole = np.zeros(64, np.int64), np.ones(64)
    together = sample(logits, temps, none, whole, u, 0)
    alone = [
        sample(logits[i : i + 1], temps[i : i + 1], none[:1], whole[:1], u[i : i + 1], 0)[0]
        for i in range(64)
    ]
    assert together.tolist() == alone
    assert np.isfinite(logits[np.arange(64), together]).all()
