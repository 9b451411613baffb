"""The onnxruntime row kernel that normalises candidate rows: the shipped file is what
`export/kernels.py` builds, its values are numpy's, a row's value does not depend on the rows
beside it, and where it cannot run the engine falls back to numpy without a word to users."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from bot.engine import kernels
from bot.engine.scheduler import _logsumexp, _normaliser


def exact(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    top = x.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))[:, 0]


def scores(rows: int, vocab: int = 7586, seed: int = 0) -> np.ndarray:
    """Rows shaped like a Chinese style's logits: most ids unlikely, a few likely."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, vocab)).astype(np.float32) * 3 - 4
    x[np.arange(rows), rng.integers(0, vocab, rows)] += 15
    return x


def test_the_shipped_kernel_is_what_export_builds():
    kernels_builder = pytest.importorskip("export.kernels")
    for name, build in kernels_builder.BUILDERS.items():
        assert (kernels.KERNELS / name).read_bytes() == build().SerializeToString(), (
            f"{name} is stale: run `python -m export kernels`"
        )


def test_logsumexp_matches_numpy_in_float64():
    x = scores(64)
    x[3, :5000] = -np.inf  # a masked row: what is left is summed
    x[4, 7] = -np.inf
    got = kernels.logsumexp(x)
    assert got is not None and got.dtype == np.float64
    np.testing.assert_allclose(got, exact(x), rtol=0, atol=2e-5)
    np.testing.assert_allclose(got, _logsumexp(x.copy()), rtol=0, atol=2e-5)


def test_a_row_of_nothing_sums_to_minus_infinity():
    x = scores(3)
    x[1] = -np.inf
    got = kernels.logsumexp(x)
    assert got[1] == -np.inf and np.isfinite(got[[0, 2]]).all()


def test_a_rows_value_is_the_same_alone_and_among_63_others():
    x = scores(64, seed=1)
    together = kernels.logsumexp(x)
    for j in (0, 17, 63):
        assert kernels.logsumexp(x[j : j + 1])[0] == together[j]
    assert np.array_equal(kernels.logsumexp(x[::-1].copy()), together[::-1])


def test_without_the_kernel_the_engine_sums_in_numpy(monkeypatch, tmp_path, caplog):
    x = scores(8, vocab=300, seed=2)
    with_kernel = _normaliser(x.copy())
    monkeypatch.setattr(kernels, "KERNELS", tmp_path)  # no kernel files here
    monkeypatch.setattr(kernels, "_sessions", {})
    monkeypatch.setattr(kernels, "_broken", set())
    with caplog.at_level(logging.WARNING, logger="bot.engine.kernels"):
        assert kernels.logsumexp(x) is None
        without = _normaliser(x.copy())
    assert "numpy does its work" in caplog.text
    np.testing.assert_allclose(without, exact(x), rtol=0, atol=1e-6)
    np.testing.assert_allclose(with_kernel, without, rtol=0, atol=2e-5)
