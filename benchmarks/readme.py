"""The README's figures, written from the committed results so that they cannot drift.

`python -m benchmarks.readme` rewrites the paragraph between the README's `measurements`
markers from `benchmarks/results/serve.json` and `footprint.json` (`make bench` runs it after
the benchmarks); `tests/test_readme.py` fails when the README says anything else.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
BEGIN = "<!-- measurements: written by `python -m benchmarks.readme` from benchmarks/results -->"
END = "<!-- /measurements -->"


def _at(rows: list[dict], concurrency: int) -> dict:
    return next(r for r in rows if r["concurrency"] == concurrency)


def measurements(results: Path = RESULTS) -> str:
    """The paragraph, from the results as committed."""
    serve = json.loads((results / "serve.json").read_text(encoding="utf-8"))
    footprint = json.loads((results / "footprint.json").read_text(encoding="utf-8"))
    fp32, int8 = _at(serve["a_engine"], 64), _at(serve["a_engine_int8"], 64)
    summary = serve["summary"]
    ready, fp32_ready = footprint["int8"], footprint["fp32"]  # the styles serve int8
    cpus, cpu = serve["machine"]["cpus"], serve["machine"]["cpu"]
    return (
        f"On this project's {cpus}-core CI machine ({cpu}, no GPU), the shipped "
        f"{serve['style']} model "
        f"(`{serve['style']}/{serve['version']}`) writes {fp32['chars_per_second']:,.0f} "
        f"characters/s in fp32 and {int8['chars_per_second']:,.0f} in int8 for 64 concurrent "
        f"{serve['length']}-character poems (p99 {fp32['p99']:.2f} s and {int8['p99']:.2f} s), "
        f"{summary['a_over_c_at_64']:,.0f}x TensorFlow's one-step loop and "
        f"{summary['a_over_d_at_64']:,.0f}x Keras `predict` on the growing window "
        f"(`benchmarks/results/serve.md`); the serving process with all "
        f"{len(ready['styles'])} styles loaded (int8, as they serve) takes "
        f"{ready['rss_ready_mb']:.0f} MB ({fp32_ready['rss_ready_mb']:.0f} MB in fp32) and is "
        f"ready in {ready['seconds_to_ready_median']:.2f} s (`benchmarks/results/footprint.md`)."
    )


def _wrap(text: str, width: int = 96) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    return "\n".join([*lines, line])


def block(results: Path = RESULTS) -> str:
    return f"{BEGIN}\n{_wrap(measurements(results))}\n{END}"


def quoted(readme: Path = README) -> str:
    """The README's block as it stands (ValueError when its markers are missing)."""
    found = re.search(re.escape(BEGIN) + r".*?" + re.escape(END), readme.read_text(), re.S)
    if found is None:
        raise ValueError(f"{readme} has no measurements block ({BEGIN!r} ... {END!r})")
    return found.group(0)


def main() -> int:
    text = README.read_text(encoding="utf-8")
    new = text.replace(quoted(), block())
    if new != text:
        README.write_text(new, encoding="utf-8")
        print(f"rewrote the measurements in {README.name}")
    else:
        print(f"{README.name} already quotes the committed results")
    return 0


if __name__ == "__main__":
    sys.exit(main())
