"""Training throughput of each bundled configuration against this machine's FLOP limit, and
whether the input pipeline ever holds training back.

    python -m benchmarks.train_throughput [--steps 12]

For each bundled style, the model of its card (cell, layers, units, embedding, vocabulary,
batch size, sequence length) is trained for a few steps with the project's own pieces
(`training.model.build_model`, `training.train.windows`, Adam with clipping, the training
loss) on random ids of its vocabulary (speed does not depend on the text):

  - fit on the real tf.data pipeline (windows, shuffle, map, batch, prefetch);
  - fit on one batch held in memory (no input work at all): if the pipeline were the
    bottleneck, this would be faster;
  - the pipeline alone, iterated without training: how many characters per second it can feed.

The FLOP limit is 3 x the forward pass's matrix-multiply FLOPs per character (forward, and
backward ~2x forward) over the rate numpy multiplies the same shapes at on this machine: input
projections over the whole [batch x time] block, recurrent products one time step at a time.
Results go to benchmarks/results/train_throughput.json and .md.

    python -m benchmarks.train_throughput --options [--style tang] [--rounds 4]

The speed options of training/speed.py on one style's shape (the Tang one by default), each
alone and together, against the plain full-softmax float32 step at the card's batch: every
configuration is built and compiled first, then they take turns, `--steps` steps each, for
`--rounds` rounds, so a busy moment on a shared machine hits all of them alike; each one's
rate is its median round. Beside the wall clock, the process's CPU time (all its threads): on
a machine others share, the wall clock says what a run gets, the CPU time what a step costs.
Results go to benchmarks/results/train_options.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.stats import cpu_name, write_results
from bot.engine.bundle import active_version, load_bundle, styles
from export.graphs import GATES

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def forward_shapes(card: dict, batch: int, seq: int) -> list[tuple[int, int, int, int]]:
    """(count, rows, inner, outer) of the matrix multiplies of one forward pass of a batch."""
    gates = GATES[card["cell"]]
    units, width = card["units"], card["embedding"]
    shapes = []
    for _ in range(card["layers"]):
        shapes.append((1, batch * seq, width, gates * units))  # input projection, all steps
        shapes.append((seq, batch, units, gates * units))  # recurrent, one step at a time
        width = units
    shapes.append((1, batch * seq, units, card["vocab_size"]))  # logits
    return shapes


def matmul_rate(shapes: list[tuple[int, int, int, int]], seconds: float = 2.0) -> float:
    """FLOP/s numpy reaches on these shapes (the best of several timed passes)."""
    rng = np.random.default_rng(0)
    pairs = [
        (count, rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32))
        for count, m, k, n in shapes
    ]
    flops = sum(2 * count * m * k * n for count, m, k, n in shapes)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for count, a, b in pairs:
            for _ in range(count):
                a @ b
        best = min(best, time.perf_counter() - start)
    return flops / best


def card_model(card: dict):
    """The ModelConfig of a bundle's card."""
    from training.model import ModelConfig

    return ModelConfig(
        vocab_size=card["vocab_size"],
        cell=card["cell"],
        layers=card["layers"],
        units=card["units"],
        embedding=card["embedding"],
        dropout=card.get("dropout", 0.2),
    )


def measure(card: dict, steps: int) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    from training.model import NovelCharLoss, build_model
    from training.train import untuned, windows

    cfg = card["training"]["config"]
    batch, seq = cfg["batch_size"], cfg["seq_len"]
    model_cfg = card_model(card)
    ids = np.random.default_rng(0).integers(1, card["vocab_size"], (steps + 4) * batch * seq + 1)
    dataset = windows(ids, seq, batch, seed=1)
    model = build_model(model_cfg)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3, global_clipnorm=5.0), loss=NovelCharLoss(0, 0.0)
    )
    chars = steps * batch * seq

    def fit_rate(data) -> float:
        model.fit(data.take(2), epochs=1, verbose=0)  # trace and warm up
        start = time.perf_counter()
        model.fit(data.take(steps), epochs=1, verbose=0)
        return chars / (time.perf_counter() - start)

    pipeline = fit_rate(dataset)
    held = next(iter(dataset))
    in_memory = fit_rate(tf.data.Dataset.from_tensors(held).repeat().with_options(untuned()))
    start = time.perf_counter()
    fed = sum(1 for _ in dataset.take(steps))
    feed_rate = fed * batch * seq / (time.perf_counter() - start)

    shapes = forward_shapes(card, batch, seq)
    forward_flops = sum(2 * count * m * k * n for count, m, k, n in shapes) / (batch * seq)
    rate = matmul_rate(shapes)
    limit = rate / (3 * forward_flops)
    return {
        "batch_size": batch,
        "seq_len": seq,
        "forward_flops_per_char": forward_flops,
        "matmul_flops_per_second": rate,
        "flop_limited_chars_per_second": limit,
        "chars_per_second": pipeline,
        "chars_per_second_in_memory": in_memory,
        "pipeline_alone_chars_per_second": feed_rate,
        "share_of_flop_limit": pipeline / limit,
        "pipeline_over_in_memory": pipeline / in_memory,
        "card_chars_per_second": card["metrics"].get("chars_per_second"),
    }


# (name, sampled softmax candidates, bfloat16, XLA, batch size multiplier)
OPTIONS = [
    ("baseline: full softmax, float32", 0, False, False, 1),
    ("XLA", 0, False, True, 1),
    ("bfloat16", 0, True, False, 1),
    ("sampled softmax 1024", 1024, False, False, 1),
    ("sampled softmax 512", 512, False, False, 1),
    ("sampled 1024 + XLA", 1024, False, True, 1),
    ("sampled 1024 + bfloat16", 1024, True, False, 1),
    ("sampled 1024 + XLA + bfloat16", 1024, True, True, 1),
    ("batch x4", 0, False, False, 4),
    ("sampled 1024, batch x4", 1024, False, False, 4),
    ("sampled 512, batch x4", 512, False, False, 4),
    ("sampled 512, batch x8", 512, False, False, 8),
    ("sampled 1024, batch x8", 1024, False, False, 8),
    ("sampled 1024 + bfloat16, batch x4", 1024, True, False, 4),
    ("sampled 1024 + XLA, batch x4", 1024, False, True, 4),
    ("sampled 1024 + XLA + bfloat16, batch x4", 1024, True, True, 4),
]


def measure_options(
    card: dict, steps: int, rounds: int, options: list[tuple] | None = None
) -> list[dict[str, Any]]:
    import keras

    from training.model import NovelCharLoss, build_model
    from training.train import windows

    cfg = card["training"]["config"]
    model_cfg = card_model(card)
    rng = np.random.default_rng(0)
    options = options or OPTIONS
    runs = []
    for name, sampled, bf16, jit, times in options:
        batch, seq = cfg["batch_size"] * times, cfg["seq_len"]
        ids = rng.integers(1, card["vocab_size"], (steps + 4) * batch * seq + 1)
        keras.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
        model = build_model(model_cfg)
        keras.mixed_precision.set_global_policy("float32")
        if sampled:
            model.sample_softmax(sampled, np.bincount(ids, minlength=card["vocab_size"]), 0, 0.0)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-3, global_clipnorm=5.0),
            loss=NovelCharLoss(0, 0.0),
            jit_compile=jit,
        )
        data = windows(ids, seq, batch, seed=1)
        model.fit(data.take(2), epochs=1, verbose=0)  # trace, compile, warm up
        runs.append({"name": name, "model": model, "data": data, "chars": steps * batch * seq})
        print(f"built {name}", flush=True)
    rates: list[list[float]] = [[] for _ in runs]
    cpu_rates: list[list[float]] = [[] for _ in runs]
    for _ in range(rounds):
        for run, rate, cpu_rate in zip(runs, rates, cpu_rates, strict=True):
            start, cpu = time.perf_counter(), time.process_time()
            run["model"].fit(run["data"].take(steps), epochs=1, verbose=0)
            rate.append(run["chars"] / (time.perf_counter() - start))
            cpu_rate.append(run["chars"] / (time.process_time() - cpu))
    base, cpu_base = statistics.median(rates[0]), statistics.median(cpu_rates[0])
    return [
        {
            "option": run["name"],
            "sampled": option[1],
            "bfloat16": option[2],
            "xla": option[3],
            "batch_size": cfg["batch_size"] * option[4],
            "seq_len": cfg["seq_len"],
            "chars_per_second": statistics.median(rate),
            "chars_per_second_rounds": rate,
            "speedup": statistics.median(rate) / base,
            "chars_per_cpu_second": statistics.median(cpu_rate),
            "chars_per_cpu_second_rounds": cpu_rate,
            "cpu_speedup": statistics.median(cpu_rate) / cpu_base,
        }
        for run, rate, cpu_rate, option in zip(runs, rates, cpu_rates, options, strict=True)
    ]


def options_main(
    style: str,
    steps: int,
    rounds: int,
    out: Path,
    only: list[str] | None = None,
    version: str | None = None,
) -> int:
    from training.speed import bf16_hardware

    models = ROOT / "models"
    version = version or active_version(models, style) or "v1"
    card = load_bundle(models / style / version).card
    chosen = [OPTIONS[0], *(o for o in OPTIONS[1:] if not only or o[0] in only)]
    results = measure_options(card, steps, rounds, chosen)
    cpu = cpu_name()
    report = {
        "style": style,
        "version": version,
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "bf16_hardware": bf16_hardware(),
        "steps": steps,
        "rounds": rounds,
        "options": results,
    }
    lines = [
        "# Training speed options",
        "",
        f"`python -m benchmarks.train_throughput --options --style {style} --version {version} "
        f"--steps {steps} --rounds {rounds}"
        + (" --only " + " ".join(shlex.quote(o) for o in only) if only else "")
        + f"`: {cpu}, {os.cpu_count()} CPUs, native bfloat16: "
        f"{report['bf16_hardware'] or 'none'}. The {style}/{version} card's shape: "
        f"{card['layers']} x {card['cell'].upper()} {card['units']}, embedding "
        f"{card['embedding']}, vocabulary {card['vocab_size']}, on the real tf.data windows. "
        f"The configurations take turns, {steps} steps each, {rounds} rounds; medians of the "
        "rounds.",
        "",
        "| option | batch x seq | chars/s | vs baseline | chars per CPU-second | vs baseline |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['option']} | {r['batch_size']} x {r['seq_len']} | "
            f"{r['chars_per_second']:,.0f} | {r['speedup']:.2f}x | "
            f"{r['chars_per_cpu_second']:,.0f} | {r['cpu_speedup']:.2f}x |"
        )
    lines.append("")
    write_results(out, "train_options", report, "\n".join(lines))
    print("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_throughput", description=__doc__)
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--options", action="store_true", help="measure the speed options")
    p.add_argument("--style", default="tang", help="with --options: whose card's shape")
    p.add_argument("--rounds", type=int, default=4, help="with --options: turns each")
    p.add_argument(
        "--version",
        help="with --options: the style's version whose card gives the shape (default: the "
        "live one; the issue's Tang shape, 2 x 256, is tang/v1)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        metavar="OPTION",
        help="with --options: these options by name (the baseline always runs too)",
    )
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.options:
        return options_main(args.style, args.steps, args.rounds, args.out, args.only, args.version)
    models = ROOT / "models"
    report: dict[str, Any] = {}
    for style in styles(models):
        card = load_bundle(models / style / (active_version(models, style) or "v1")).card
        report[style] = {
            "model": f"{card['layers']}x{card['cell'].upper()} {card['units']}, "
            f"embedding {card['embedding']}, vocabulary {card['vocab_size']}",
            **measure(card, args.steps),
        }
        print(style, json.dumps(report[style]), flush=True)
    lines = [
        "# Training throughput",
        "",
        f"`python -m benchmarks.train_throughput --steps {args.steps}`, {os.cpu_count()} CPUs. "
        "FLOP limit = numpy's matrix-multiply rate on the training shapes / (3 x forward "
        "FLOPs per character).",
        "",
        "| style | model | batch x seq | chars/s (tf.data) | chars/s (batch in memory) | "
        "tf.data alone, chars/s | FLOP limit, chars/s | share of limit |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for style, r in report.items():
        lines.append(
            f"| {style} | {r['model']} | {r['batch_size']} x {r['seq_len']} | "
            f"{r['chars_per_second']:,.0f} | {r['chars_per_second_in_memory']:,.0f} | "
            f"{r['pipeline_alone_chars_per_second']:,.0f} | "
            f"{r['flop_limited_chars_per_second']:,.0f} | {r['share_of_flop_limit']:.0%} |"
        )
    lines.append("")
    write_results(args.out, "train_throughput", report, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
