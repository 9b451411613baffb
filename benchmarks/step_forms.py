"""Which form of a layer steps faster, per cell: the ONNX LSTM/GRU operator, or one MatMul of
[x, h] with [W; R] and the gate arithmetic (export.graphs' two forms).

    python -m benchmarks.step_forms [--seconds 30] [--batches 8 64]

Each cell with the shape of the shipped shakespeare model (2 x 512 units, embedding 64, vocab
66; random weights: the time does not depend on their values), one step of a batch of rows
at a time, both forms taking turns in bursts of 10 steps for `--seconds` per cell and batch,
measured two ways: wall time in sessions made as the engine makes them (its shared pool of a
thread per core), the fastest burst (a shared machine only ever adds time) beside the median;
and CPU time in single-threaded sessions (the median burst), which other processes on the
machine disturb far less. Results go to benchmarks/results/step_forms.json and .md;
export.graphs' STEP_FORMS should name each cell's faster form.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from benchmarks.stats import cpu_name, isa_flags, write_results
from bot.engine.sessions import create_session
from export import graphs

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHAPE = {"vocab_size": 66, "layers": 2, "units": 512, "embedding": 64}  # shakespeare/v1
BURST = 10


def _stepper(model: onnx.ModelProto, batch: int, folder: Path, threads: int):
    """One step of `batch` rows of a graph, as a call: in the engine's shared thread pool
    (threads 0) or in a pool of its own."""
    path = folder / f"{model.graph.name}-{len(os.listdir(folder))}.onnx"
    onnx.save(model, path)
    session = create_session(path, "cpu", threads)
    names = [i.name for i in session.get_inputs()]
    rng = np.random.default_rng(0)
    units = session.get_inputs()[1].shape[1]
    feeds = {names[0]: rng.integers(0, SHAPE["vocab_size"], batch)}
    # States as a running batch holds them: in (-1, 1).
    feeds.update({n: rng.uniform(-1, 1, (batch, units)).astype(np.float32) for n in names[1:]})
    session.run(None, feeds)  # onnxruntime plans on the first run
    return lambda: session.run(None, feeds)


def _turns(steps: dict[str, Any], seconds: float, clock) -> dict[str, list[float]]:
    """Seconds per step (on `clock`) of each burst of each stepper, taking turns."""
    bursts: dict[str, list[float]] = {form: [] for form in steps}
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for form, step in steps.items():
            start = clock()
            for _ in range(BURST):
                step()
            bursts[form].append((clock() - start) / BURST)
    return bursts


def _forms(cell: str) -> tuple[graphs.StepWeights, dict[str, onnx.ModelProto]]:
    weights = graphs.random_weights(cell=cell, seed=0, **SHAPE)
    return weights, {form: graphs.step_graph(weights, form) for form in graphs.FORMS}


def _cpu_turns(cell: str, batch: int, seconds: float, folder: Path) -> dict[str, list[float]]:
    """_turns on CPU time in single-threaded sessions: in a process of its own, since a
    process whose sessions share the engine's pool cannot make one with a pool of its own."""
    steps = {form: _stepper(m, batch, folder, 1) for form, m in _forms(cell)[1].items()}
    return _turns(steps, seconds, time.process_time)


def measure(cell: str, batch: int, seconds: float, folder: Path) -> dict[str, Any]:
    """Seconds per step of each form of `cell` at `batch` rows, taking turns: wall time in the
    engine's pool, then CPU time on one thread."""
    weights, models = _forms(cell)
    engine = {form: _stepper(m, batch, folder, 0) for form, m in models.items()}
    walls = _turns(engine, seconds / 2, time.perf_counter)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as child:
        cpus = child.submit(_cpu_turns, cell, batch, seconds / 2, folder).result()
    row: dict[str, Any] = {"cell": cell, "batch": batch, "bursts": len(walls["operator"])}
    for form in graphs.FORMS:
        row[form] = {
            "best": min(walls[form]),
            "median": statistics.median(walls[form]),
            "cpu_one_thread": statistics.median(cpus[form]),
        }
    row["matmul_over_operator"] = row["operator"]["best"] / row["matmul"]["best"]
    row["matmul_over_operator_cpu"] = (
        row["operator"]["cpu_one_thread"] / row["matmul"]["cpu_one_thread"]
    )
    row["flops_per_step"] = weights.flops_per_char() * batch
    return row


def markdown(r: dict[str, Any]) -> str:
    lines = [
        "# The layer forms of the step",
        "",
        f"`python -m benchmarks.step_forms` on {r['cpu']} ({r['cpus']} CPUs; ISA: "
        f"{', '.join(r['isa']) or 'none of note'}); 2 x 512 units, embedding 64, vocab 66 "
        "(shakespeare's shape), random weights. Operator: one ONNX LSTM/GRU per layer (a "
        "coupled layer as the LSTM whose input gate is its forget gate negated: a third more "
        "multiplies); matmul: one MatMul of [x, h] with [W; R] and the gate arithmetic (a GRU: "
        f"x and h apart). The forms take turns in bursts of {BURST} steps, {r['seconds'] / 2:.0f}"
        " s per cell and batch in the engine's thread pool (wall time: the fastest burst, the "
        f"median in brackets), then {r['seconds'] / 2:.0f} s single-threaded (CPU time, the "
        "median burst: other processes disturb it far less). A speed ratio above 1: the "
        "matmul form is faster.",
        "",
        "| cell | batch | operator ms | matmul ms | matmul's speed / operator's "
        "| CPU ms, one thread: operator | matmul | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        op, mm = row["operator"], row["matmul"]
        lines.append(
            f"| {row['cell']} | {row['batch']} | {op['best'] * 1e3:.3f} ({op['median'] * 1e3:.3f}) "
            f"| {mm['best'] * 1e3:.3f} ({mm['median'] * 1e3:.3f}) "
            f"| {row['matmul_over_operator']:.2f} | {op['cpu_one_thread'] * 1e3:.3f} "
            f"| {mm['cpu_one_thread'] * 1e3:.3f} | {row['matmul_over_operator_cpu']:.2f} |"
        )
    lines += [
        "",
        f"Load average before the run: {r['load_before']}. Where the two measures disagree, "
        "the CPU time decides: it counts the work a form does, which other processes do not "
        "add to, while a burst's wall time in the pool also counts waiting for a thread the "
        "machine took away. The bundles' step graphs take the form `export.graphs.STEP_FORMS` "
        "names: " + ", ".join(f"{cell} {form}" for cell, form in graphs.STEP_FORMS.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.step_forms", description=__doc__)
    p.add_argument("--seconds", type=float, default=30.0, help="per cell and batch")
    p.add_argument("--batches", type=int, nargs="+", default=[8, 64])
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    report: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "isa": isa_flags(),
        "seconds": args.seconds,
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "shape": SHAPE,
        "rows": [],
    }
    with tempfile.TemporaryDirectory(prefix="step-forms-") as tmp:
        for cell in graphs.GATES:
            for batch in args.batches:
                row = measure(cell, batch, args.seconds, Path(tmp))
                report["rows"].append(row)
                print(
                    f"{cell:>9} batch {batch:>3}: matmul's speed / operator's "
                    f"{row['matmul_over_operator']:.2f} (wall, engine's pool), "
                    f"{row['matmul_over_operator_cpu']:.2f} (CPU, one thread)",
                    flush=True,
                )
    write_results(args.out, "step_forms", report, markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
