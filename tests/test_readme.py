"""The README quotes the committed benchmark results, not figures from an older run."""

from __future__ import annotations

import json

from benchmarks.readme import RESULTS, block, measurements, quoted


def test_the_readme_quotes_the_committed_results():
    assert quoted() == block(), "run `python -m benchmarks.readme` after the benchmarks"


def test_the_paragraph_follows_the_results(tmp_path):
    for name in ("serve.json", "footprint.json"):
        (tmp_path / name).write_bytes((RESULTS / name).read_bytes())
    serve = json.loads((tmp_path / "serve.json").read_text())
    row = next(r for r in serve["a_engine_int8"] if r["concurrency"] == 64)
    row["chars_per_second"] = 12_345.4
    (tmp_path / "serve.json").write_text(json.dumps(serve))
    assert "12,345 in int8" in measurements(tmp_path)
    assert "12,345 in int8" not in measurements(RESULTS)
