"""Serving speed: the engine against the usual ways of sampling a char-RNN, in one run.

    python -m benchmarks.serve [--style shakespeare] [--length 400] [--quick]

On the bundled model, 400-character requests from 1, 8, 64 and 256 concurrent clients (each
sends its next request when its last one is answered), aggregate characters per second and
per-request latency p50/p99 for:

  a.  the engine: continuous batching (fp32, and the per-row int8 graph), each level run 5
      times with fp32 and int8 taking turns, the median reported;
  b.  the engine with batching off: one request at a time on onnxruntime (fp32, and int8 for
      the same comparison within int8);
  c.  TensorFlow: the text-generation tutorial's `OneStep`, a tf.function that carries the
      state and samples with tf.random.categorical, batch 1;
  d.  Keras `model.predict` on the whole window so far for every character (textgenrnn's way).

The TensorFlow model gets the bundle's own weights, so every variant computes the same network.
b, c and d serve one request at a time: where they are not run at a concurrency (too slow to
wait for), their rate is the rate measured at concurrency 1 and each request's latency is the
time to serve the c requests ahead of and including it, marked "derived".

Also: the machine's fp32 matrix-multiply rate on the step's own shapes (numpy, and
onnxruntime's MatMul, the better of them is the roofline) and the step's FLOPs, so the engine's
share of the roofline is printed, with the most a / b can be at that roofline; the same for
int8 against onnxruntime's MatMulInteger (uint8 x int8) on the int8 step's products; the event
loop's timer lag under load; what a 200-character prompt costs next to writing 200
characters; and a 七律 written with candidates on the live tang model (32 a line at
concurrency 1, 8 a line for 64 concurrent clients, the bot's default limits). Results go to
benchmarks/results/serve.json and serve.md, with the CPU and its instruction-set extensions.
Timings on shared machines are noisy: compare the ratios, which come from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from benchmarks.stats import cpu_name, isa_flags, percentile, write_results
from bot.config import Settings
from bot.engine.bundle import active_version, load_bundle
from bot.engine.heap import LoopCollector
from bot.engine.scheduler import Limits, Request, Scheduler
from bot.engine.sessions import StepModel, load_model
from bot.forms import catalog
from export.graphs import StepWeights, form_of, read_weights

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONCURRENCY = (1, 8, 64, 256)
# Runs of each engine level: the machine's speed drifts over minutes; a median of five
# alternating runs is steadier than of three.
REPEATS = 5
# The summary table: label, key in the summary, format, the target.
SUMMARY_ROWS = (
    ("a / b at 64", "a_over_b_at_64", ".1f", ">= 15"),
    ("... its bound: the roofline's chars/s / b's", "a_over_b_bound_at_64", ".1f", ""),
    ("... in int8 (both a and b)", "int8_a_over_b_at_64", ".1f", ""),
    ("a / c at 64", "a_over_c_at_64", ".1f", ">= 10"),
    ("a / d at 64", "a_over_d_at_64", ",.0f", ">= 1000"),
    ("engine share of the matmul roofline at 64", "share_of_roofline_at_64", ".0%", ""),
    ("... of numpy's rate alone", "share_of_numpy_roofline_at_64", ".0%", ""),
    (
        "... of the better rate sustained beside it (taking turns)",
        "share_of_sustained_roofline_at_64",
        ".0%",
        ">= 85%",
    ),
    ("... of numpy's rate sustained beside it", "share_of_sustained_numpy_at_64", ".0%", ""),
    ("p99 latency at 64, s", "p99_at_64", ".2f", "<= 2.5"),
    ("p50 latency at 1, s", "p50_at_1", ".3f", "<= 0.6"),
    ("event-loop timer lag p99 at 256, s", "loop_lag_p99_at_256", ".3f", "<= 0.050"),
    ("200-char prompt / writing 200 chars", "prompt_over_generate_200", ".2f", "<= 0.5"),
    ("int8 / fp32 throughput at 64", "int8_over_fp32_at_64", ".2f", ">= 3"),
    (
        "int8 engine share of MatMulInteger's rate sustained beside it at 64",
        "int8_share_of_matmulinteger_at_64",
        ".0%",
        ">= 60%",
    ),
    ("七律, 32 candidates a line, p50 at 1, s", "qilv_candidates_p50_at_1", ".3f", "<= 0.15"),
    ("七律, 8 candidates a line, p99 at 64, s", "qilv_candidates_p99_at_64", ".2f", "<= 3"),
)
QILV_STYLE = "tang"


# The roofline ------------------------------------------------------------------------------
Kernel = tuple[Callable[[], Any], float]  # one pass over a step's matmul shapes, its FLOPs


def numpy_matmuls(shapes: list[tuple[int, int]], batch: int) -> Kernel:
    """numpy multiplying [batch, inner] by every [inner, outer] weight of a step."""
    rng = np.random.default_rng(0)
    pairs = [
        (rng.standard_normal((batch, k), np.float32), rng.standard_normal((k, n), np.float32))
        for k, n in shapes
    ]

    def once() -> None:
        for a, b in pairs:
            a @ b

    return once, _matmul_flops(shapes, batch)


def ort_matmuls(shapes: list[tuple[int, int]], batch: int, integer: bool = False) -> Kernel:
    """onnxruntime's MatMul (MLAS) on the same shapes, in one graph; with `integer`, its
    MatMulInteger on uint8 activations and int8 weights, as the int8 graph multiplies."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inputs, outputs, nodes, inits, feeds = [], [], [], [], {}
    kind, out = (TensorProto.UINT8, TensorProto.INT32) if integer else (TensorProto.FLOAT,) * 2
    for i, (k, n) in enumerate(shapes):
        inputs.append(helper.make_tensor_value_info(f"x{i}", kind, [batch, k]))
        outputs.append(helper.make_tensor_value_info(f"y{i}", out, [batch, n]))
        if integer:
            weight = rng.integers(-63, 64, (k, n)).astype(np.int8)
            feeds[f"x{i}"] = rng.integers(0, 256, (batch, k)).astype(np.uint8)
            nodes.append(helper.make_node("MatMulInteger", [f"x{i}", f"w{i}", "zero"], [f"y{i}"]))
        else:
            weight = rng.standard_normal((k, n), np.float32)
            feeds[f"x{i}"] = rng.standard_normal((batch, k), np.float32)
            nodes.append(helper.make_node("MatMul", [f"x{i}", f"w{i}"], [f"y{i}"]))
        inits.append(numpy_helper.from_array(weight, f"w{i}"))
    if integer:
        inits.append(numpy_helper.from_array(np.array(128, np.uint8), "zero"))
    model = helper.make_model(
        helper.make_graph(nodes, "matmuls", inputs, outputs, inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    model.ir_version = 8
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return (lambda: session.run(None, feeds)), _matmul_flops(shapes, batch)


def _matmul_flops(shapes: list[tuple[int, int]], batch: int) -> float:
    return float(sum(2 * batch * k * n for k, n in shapes))


def best_rate(kernel: Kernel, seconds: float = 1.0) -> float:
    """FLOP/s of the kernel's fastest burst: the most the machine gives, briefly."""
    once, flops = kernel
    return flops / _best_time(once, seconds)


def sustained_rate(kernel: Kernel, seconds: float) -> float:
    """FLOP/s of the kernel run back to back for `seconds`, as the engine runs."""
    once, flops = kernel
    once()
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        once()
        calls += 1
    return calls * flops / (time.perf_counter() - start)


def sustained_pairs(
    model: StepModel, length: int, flops: float, kernels: dict[str, Kernel], repeats: int = REPEATS
) -> list[dict[str, float]]:
    """The engine at concurrency 64 (`flops`: the operations of its step's products per
    character), each run followed by every kernel sustained for as long as that run took: the
    engine's share of a rate measured the way the engine runs, under the same conditions (the
    best-burst roofline also counts moments no sustained load gets)."""
    pairs = []
    for _ in range(repeats):
        run = _engine_run(model, length, 64, True)
        seconds = run["requests"] * length / run["chars_per_second"]
        pair = {"engine": run["chars_per_second"] * flops}
        pair.update({name: sustained_rate(k, seconds) for name, k in kernels.items()})
        pairs.append(pair)
    return pairs


def _best_time(fn, seconds: float) -> float:
    """The fastest of several timed batches of calls: the machine's rate, not its noise."""
    for _ in range(3):
        fn()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(5):
            fn()
        best = min(best, (time.perf_counter() - start) / 5)
    return best


# The engine ---------------------------------------------------------------------------------
async def _clients(
    generate, concurrency: int, total: int, request: Callable[[int], Request]
) -> dict[str, Any]:
    """`concurrency` clients share `total` requests (`request` of a seed); each sends its next
    when answered. Returns the rate of characters written, latencies and the event loop's
    timer lag meanwhile."""
    latencies: list[float] = []
    lags: list[float] = []
    written = 0
    counter = iter(range(total))
    done = asyncio.Event()

    async def client() -> None:
        nonlocal written
        for seed in counter:
            start = time.perf_counter()
            result = await generate(request(seed))
            latencies.append(time.perf_counter() - start)
            written += len(result.text) - len(result.prompt)

    async def ticker() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - start - 0.01)

    tick = asyncio.create_task(ticker())
    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    wall = time.perf_counter() - start
    done.set()
    await tick
    return {
        "concurrency": concurrency,
        "requests": total,
        "chars_per_second": written / wall,
        "p50": percentile(latencies, 0.5),
        "p99": percentile(latencies, 0.99),
        "loop_lag_p99": percentile(lags, 0.99) if lags else 0.0,
        "measured": True,
    }


def _engine_run(model: StepModel, length: int, c: int, batching: bool) -> dict[str, Any]:
    """One closed-loop run of the engine at concurrency c (2c requests, at least 8)."""
    limits = Limits(
        max_batch=256 if batching else 1,
        max_queue=4096,
        deadline=3600.0,
        max_length=max(length, 2000),
    )

    async def run() -> dict:
        scheduler = Scheduler(model, limits)
        try:
            await scheduler.generate(Request(length=20, seed=0))  # warm-up
            return await _clients(
                scheduler.generate, c, max(2 * c, 8), lambda s: Request(length=length, seed=s)
            )
        finally:
            await scheduler.close()

    return asyncio.run(run())


def engine_runs(
    models: list[StepModel], length: int, levels, repeats: int = REPEATS
) -> list[list[dict[str, Any]]]:
    """The batching engine for each model at each concurrency. The models take turns, level
    by level, `repeats` times, so drift on a shared machine hits them alike; each model's row
    is its median run by chars/s, with the spread of the repeats."""
    out: list[list[dict[str, Any]]] = [[] for _ in models]
    for c in levels:
        runs: list[list[dict[str, Any]]] = [[] for _ in models]
        for _ in range(repeats):
            for i, model in enumerate(models):
                runs[i].append(_engine_run(model, length, c, True))
        for i, model in enumerate(models):
            ranked = sorted(runs[i], key=lambda r: r["chars_per_second"])
            row = dict(ranked[len(ranked) // 2])
            row["chars_per_second_runs"] = [r["chars_per_second"] for r in runs[i]]
            out[i].append(row)
            _say(row, "engine", model.int8)
    return out


def unbatched_runs(model: StepModel, length: int, levels, budget: float) -> list[dict[str, Any]]:
    """The engine with batching off; a level that would take longer than `budget` seconds is
    derived from the rate measured at the level before."""
    out: list[dict[str, Any]] = []
    for c in levels:
        if out:
            per_request = length / out[-1]["chars_per_second"]
            if max(2 * c, 8) * per_request > budget:
                out.append(_derived(c, per_request, length))
                continue
        out.append(_engine_run(model, length, c, False))
        _say(out[-1], "engine, batching off")
    return out


def _derived(concurrency: int, per_request: float, length: int) -> dict[str, Any]:
    """A one-at-a-time server with `concurrency` closed-loop clients: each request waits for
    the others ahead of it, so its latency is concurrency x the service time."""
    return {
        "concurrency": concurrency,
        "requests": 0,
        "chars_per_second": length / per_request,
        "p50": concurrency * per_request,
        "p99": concurrency * per_request,
        "loop_lag_p99": None,
        "measured": False,
    }


def prompt_cost(model: StepModel, prompt_chars: int, reps: int) -> dict[str, float]:
    """Seconds to read a prompt (request with the prompt and 1 character, minus one with no
    prompt and 1 character) next to seconds to write the same number of characters, alone."""
    verse = "Shall I compare thee to a summer's day? Thou art more lovely and more temperate. "
    text = (verse * (prompt_chars // len(verse) + 1))[:prompt_chars]

    async def timed(request: Request) -> float:
        scheduler = Scheduler(model, Limits(max_prompt=prompt_chars, deadline=3600.0))
        try:
            await scheduler.generate(Request(length=5, seed=0))
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                await scheduler.generate(request)
                times.append(time.perf_counter() - start)
            return statistics.median(times)
        finally:
            await scheduler.close()

    with_prompt = asyncio.run(timed(Request(prompt=text, length=1, seed=1)))
    bare = asyncio.run(timed(Request(length=1, seed=1)))
    write = asyncio.run(timed(Request(length=prompt_chars, seed=1)))
    read = max(with_prompt - bare, 0.0)
    return {
        "prompt_chars": prompt_chars,
        "read_seconds": read,
        "write_seconds": write,
        "ratio": read / write,
    }


def qilv_candidates(runs_at_1: int = 20) -> dict[str, Any]:
    """七律 on the live tang model at its own precision (int8: its card's `int8.serve`) with
    the bot's default limits (but no deadline: a slow machine's figure is measured, not
    refused): one client writing poems of 32 candidates a line one after another, then 64
    clients of 8 candidates a line (two poems each, closed loop); their latencies."""
    models = ROOT / "models"
    model = load_model(models / QILV_STYLE / active_version(models, QILV_STYLE), "cpu")
    bundle = model.bundle
    plan = catalog.plan(bundle.card, bundle.vocab.chars, bundle.path, form="qilv")

    def qilv(candidates: int) -> Callable[[int], Request]:
        return lambda seed: Request(
            length=plan.length, seed=seed, rules=plan.rules, candidates=candidates
        )

    limits = Limits(deadline=3600.0)

    async def run() -> dict[str, Any]:
        scheduler = Scheduler(model, limits)
        heap = LoopCollector(Settings.from_env().gc_seconds)  # collected as the bot collects
        try:
            await scheduler.generate(qilv(32)(0))  # warm-up
            heap.start()
            alone = await _clients(scheduler.generate, 1, runs_at_1, qilv(32))
            crowd = await _clients(scheduler.generate, 64, 128, qilv(8))
        finally:
            await heap.stop()
            await scheduler.close()
        return {
            "version": bundle.version,
            "precision": "int8" if model.int8 else "fp32",
            "max_batch": limits.max_batch,
            "at_1": alone,
            "at_64": crowd,
        }

    result = asyncio.run(run())
    print(
        f"七律 on {QILV_STYLE}/{result['version']}: 32 candidates a line at 1, p50 "
        f"{result['at_1']['p50']:.3f} s; 8 at 64, p99 {result['at_64']['p99']:.2f} s",
        flush=True,
    )
    return result


# TensorFlow ---------------------------------------------------------------------------------
def keras_model(weights: StepWeights):
    """The training graph (training.model.build_model) holding the bundle's weights."""
    from training.model import ModelConfig, build_model

    cfg = ModelConfig(
        vocab_size=weights.vocab_size,
        cell=weights.cell,
        layers=len(weights.layers),
        units=weights.units,
        embedding=weights.embedding.shape[1],
        dropout=0.0,
    )
    model = build_model(cfg)
    model.get_layer("embedding").set_weights([weights.embedding])
    u = weights.units
    for i, layer in enumerate(weights.layers):
        if weights.cell == "lstm":  # ONNX gate blocks i o f c -> Keras i f c o
            order = np.concatenate([np.arange(g * u, (g + 1) * u) for g in (0, 2, 3, 1)])
            bias = (layer.b[: 4 * u] + layer.b[4 * u :])[order]
            values = [layer.w[order].T, layer.r[order].T, bias]
        else:  # z r h in both; Keras keeps input and recurrent biases apart (reset_after)
            values = [layer.w.T, layer.r.T, layer.b.reshape(2, 3 * u)]
        model.get_layer(f"rnn_{i}").set_weights(values)
    model.get_layer("logits").set_weights([weights.dense_w, weights.dense_b])
    return model, cfg


def tf_one_step(model, cfg, length: int, requests: int, check: StepModel) -> dict[str, Any]:
    """The TensorFlow tutorial's OneStep: one tf.function call per character, state carried,
    tf.random.categorical sampling, batch 1."""
    import tensorflow as tf

    from training.model import forward, zero_states

    @tf.function
    def one_step(ids, states, temperature):
        logits, states = forward(model, cfg, ids, states)
        logits = logits[:, -1, :] / temperature
        return tf.random.categorical(logits, 1, dtype=tf.int32), states, logits

    # Same network: the first logits agree with onnxruntime's.
    ids = tf.constant([[3]], tf.int32)
    _, _, logits = one_step(ids, zero_states(cfg, 1), tf.constant(1.0))
    expected, _ = check.step(np.array([3]), check.zero_states(1))
    agreement = float(np.abs(logits.numpy() - expected).max())
    times = []
    for r in range(requests + 1):
        tf.random.set_seed(r)
        states, ids = zero_states(cfg, 1), tf.constant([[check.bundle.vocab.start_id]], tf.int32)
        start = time.perf_counter()
        for _ in range(length):
            ids, states, _ = one_step(ids, states, tf.constant(0.8))
        if r:  # the first request traces the function
            times.append(time.perf_counter() - start)
    per_request = statistics.median(times)
    return {"per_request": per_request, "max_abs_logit_diff_vs_onnx": agreement}


def keras_predict_window(model, length: int, points=(1, 100, 200, 400), reps: int = 3) -> dict:
    """Keras model.predict on the whole window so far, for each character: its cost grows
    with the window, so it is measured at a few window sizes and summed over 1..length."""
    costs = {}
    for t in points:
        window = np.ones((1, t), np.int32)
        model.predict(window, verbose=0)
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            model.predict(window, verbose=0)
            times.append(time.perf_counter() - start)
        costs[t] = statistics.median(times)
    slope, intercept = np.polyfit(list(costs), list(costs.values()), 1)
    per_request = float(sum(intercept + slope * t for t in range(1, length + 1)))
    return {"per_request": per_request, "seconds_at_window": costs}


# Report -------------------------------------------------------------------------------------
def _say(row: dict, name: str, int8: bool = False) -> None:
    tag = f"{name}{' int8' if int8 else ''}"
    print(
        f"{tag:>28} c={row['concurrency']:<4} {row['chars_per_second']:>9.0f} chars/s  "
        f"p50 {row['p50']:.3f} s  p99 {row['p99']:.3f} s"
        + ("" if row["measured"] else "  (derived)"),
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.serve", description=__doc__)
    p.add_argument("--style", default="shakespeare")
    p.add_argument("--length", type=int, default=400)
    p.add_argument("--quick", action="store_true", help="fewer levels, for a smoke run")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    models = ROOT / "models"
    path = models / args.style / (active_version(models, args.style) or "v1")
    bundle = load_bundle(path)
    step = onnx.load(bundle.model_path())
    weights, form = read_weights(step), form_of(step)
    levels = (1, 8) if args.quick else CONCURRENCY
    flops = weights.flops_per_char()
    shapes = weights.matmul_shapes(form)
    int8_shapes = weights.int8_shapes()
    int8_ops = float(sum(2 * k * n for k, n in int8_shapes))  # per character

    # The roofline first, while no onnxruntime session keeps threads busy: the products of the
    # step as its graph multiplies them (its form), and of the int8 step.
    kernels = {"numpy": numpy_matmuls(shapes, 64), "onnxruntime_matmul": ort_matmuls(shapes, 64)}
    integer = {"onnxruntime_matmulinteger": ort_matmuls(int8_shapes, 64, integer=True)}
    roof = {name: best_rate(kernel) for name, kernel in {**kernels, **integer}.items()}
    roof["numpy_batch1"] = best_rate(numpy_matmuls(shapes, 1))
    print(
        f"step: {flops / 1e6:.2f} MFLOP per character ({form} form); at batch 64: numpy "
        f"{roof['numpy'] / 1e9:.1f}, onnxruntime {roof['onnxruntime_matmul'] / 1e9:.1f} GFLOP/s,"
        f" MatMulInteger {roof['onnxruntime_matmulinteger'] / 1e9:.1f} GOP/s"
    )

    # The 七律 next, in a process that holds only what a bot would: timed after the runs
    # below, Python's collector walked what they left, as benchmarks.about found (2.25x there).
    qilv = None if args.quick else qilv_candidates()

    fp32 = StepModel(bundle, providers="cpu")
    has_int8 = bundle.model_path(int8=True).exists()
    int8 = StepModel(bundle, providers="cpu", int8=True) if has_int8 else None
    results: dict[str, Any] = {
        "style": bundle.style,
        "version": bundle.version,
        "length": args.length,
        "machine": {
            "cpus": os.cpu_count(),
            "arch": platform.machine(),
            "cpu": cpu_name(),
            "isa": isa_flags(),
            "onnxruntime": ort.__version__,
            "load_before": [round(x, 2) for x in os.getloadavg()],
        },
        "form": form,
        "flops_per_char": flops,
        "matmul_shapes": shapes,
        "int8_ops_per_char": int8_ops,
        "int8_shapes": int8_shapes,
        "roofline_flops": roof,
    }
    if qilv is not None:
        results["qilv"] = qilv
    budget = 30.0 if not args.quick else 5.0
    batched = engine_runs([fp32, *([int8] if int8 else [])], args.length, levels)
    results["a_engine"] = batched[0]
    if int8 is not None:
        results["a_engine_int8"] = batched[1]
    results["b_no_batching"] = unbatched_runs(fp32, args.length, levels, budget)
    if int8 is not None:
        results["b_no_batching_int8"] = unbatched_runs(int8, args.length, levels, budget)
    if 64 in levels:
        results["sustained_at_64"] = sustained_pairs(fp32, args.length, flops, kernels)
        if int8 is not None:
            results["sustained_int8_at_64"] = sustained_pairs(int8, args.length, int8_ops, integer)
    results["prompt"] = prompt_cost(fp32, 200, reps=5)
    print(
        f"prompt of 200 characters: read in {results['prompt']['read_seconds'] * 1e3:.1f} ms, "
        f"writing 200 takes {results['prompt']['write_seconds'] * 1e3:.1f} ms "
        f"(ratio {results['prompt']['ratio']:.2f})",
        flush=True,
    )
    # Roofline again after the runs: the better of the two measurements counts.
    roof["numpy"] = max(roof["numpy"], best_rate(kernels["numpy"]))

    model, cfg = keras_model(weights)
    one = tf_one_step(model, cfg, args.length, requests=2 if args.quick else 3, check=fp32)
    results["c_tf_one_step"] = [_derived(c, one["per_request"], args.length) for c in levels]
    results["c_tf_one_step"][0]["measured"] = True
    results["tf_logit_agreement"] = one["max_abs_logit_diff_vs_onnx"]
    window = keras_predict_window(model, args.length)
    results["d_keras_predict_window"] = [
        _derived(c, window["per_request"], args.length) for c in levels
    ]
    results["d_seconds_at_window"] = window["seconds_at_window"]
    for key, name in (("c_tf_one_step", "TF OneStep"), ("d_keras_predict_window", "Keras predict")):
        for row in results[key]:
            _say(row, name)

    results["summary"] = summarise(results)
    write_results(args.out, "serve", results, markdown(results))
    print(markdown(results))
    return 0


def _at(rows: list[dict], concurrency: int) -> dict | None:
    return next((r for r in rows if r["concurrency"] == concurrency), None)


def summarise(r: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets as ratios from this run."""
    a64, b64 = _at(r["a_engine"], 64), _at(r["b_no_batching"], 64)
    c64, d64 = _at(r["c_tf_one_step"], 64), _at(r["d_keras_predict_window"], 64)
    roofline = max(r["roofline_flops"]["numpy"], r["roofline_flops"]["onnxruntime_matmul"])
    out: dict[str, Any] = {}
    if a64 and b64 and c64 and d64:
        engine_flops = a64["chars_per_second"] * r["flops_per_char"]
        out.update(
            {
                "a_over_b_at_64": a64["chars_per_second"] / b64["chars_per_second"],
                # What a / b would be with the engine at 100% of the roofline: the most this
                # machine allows while b serves batch-1 steps at the rate it does.
                "a_over_b_bound_at_64": roofline / r["flops_per_char"] / b64["chars_per_second"],
                "a_over_c_at_64": a64["chars_per_second"] / c64["chars_per_second"],
                "a_over_d_at_64": a64["chars_per_second"] / d64["chars_per_second"],
                "engine_flops_at_64": engine_flops,
                "share_of_roofline_at_64": engine_flops / roofline,
                "share_of_numpy_roofline_at_64": engine_flops / r["roofline_flops"]["numpy"],
                "p99_at_64": a64["p99"],
            }
        )
        pairs = r.get("sustained_at_64")
        if pairs:
            out["share_of_sustained_roofline_at_64"] = statistics.median(
                p["engine"] / max(p["numpy"], p["onnxruntime_matmul"]) for p in pairs
            )
            out["share_of_sustained_numpy_at_64"] = statistics.median(
                p["engine"] / p["numpy"] for p in pairs
            )
        i64 = _at(r.get("a_engine_int8", []), 64)
        if i64:
            out["int8_over_fp32_at_64"] = i64["chars_per_second"] / a64["chars_per_second"]
        pairs = r.get("sustained_int8_at_64")
        if pairs:
            out["int8_share_of_matmulinteger_at_64"] = statistics.median(
                p["engine"] / p["onnxruntime_matmulinteger"] for p in pairs
            )
        j64 = _at(r.get("b_no_batching_int8", []), 64)
        if i64 and j64:
            out["int8_a_over_b_at_64"] = i64["chars_per_second"] / j64["chars_per_second"]
    a1, a256 = _at(r["a_engine"], 1), _at(r["a_engine"], 256)
    if a1:
        out["p50_at_1"] = a1["p50"]
    if a256:
        out["loop_lag_p99_at_256"] = a256["loop_lag_p99"]
    out["prompt_over_generate_200"] = r["prompt"]["ratio"]
    if "qilv" in r:
        out["qilv_candidates_p50_at_1"] = r["qilv"]["at_1"]["p50"]
        out["qilv_candidates_p99_at_64"] = r["qilv"]["at_64"]["p99"]
    return out


def markdown(r: dict[str, Any]) -> str:
    s = r["summary"]
    lines = [
        "# Serving speed",
        "",
        f"`python -m benchmarks.serve` on `{r['style']}/{r['version']}`, "
        f"{r['length']}-character requests, {r['machine']['cpus']} CPUs ({_machine(r)}), no "
        f"GPU. Step: {r['flops_per_char'] / 1e6:.2f} MFLOP per character (its matrix "
        f"multiplies; layers in the {r['form']} form), int8 step "
        f"{r['int8_ops_per_char'] / 1e6:.2f} MOP (its integer products). Closed "
        "loop: each client sends its next request when the last is answered. Rows marked * are "
        "derived from the one-at-a-time rate measured at concurrency 1 (latency = concurrency "
        f"x service time). Rows a are the median of {REPEATS} runs, fp32 and int8 taking turns.",
        "",
        "| variant | concurrency | chars/s | p50 s | p99 s | loop lag p99 ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "a_engine": "a. engine (fp32)",
        "a_engine_int8": "a. engine (int8)",
        "b_no_batching": "b. engine, batching off (fp32)",
        "b_no_batching_int8": "b. engine, batching off (int8)",
        "c_tf_one_step": "c. TF OneStep, batch 1",
        "d_keras_predict_window": "d. Keras predict on the window",
    }
    for key, name in names.items():
        for row in r.get(key, []):
            lag = row["loop_lag_p99"]
            lines.append(
                f"| {name} | {row['concurrency']}{'' if row['measured'] else '*'} | "
                f"{row['chars_per_second']:,.0f} | {row['p50']:.3f} | {row['p99']:.3f} | "
                f"{'' if lag is None else f'{lag * 1e3:.1f}'} |"
            )
    roof = r["roofline_flops"]
    lines += [
        "",
        "| measure | value | target |",
        "|---|---:|---|",
    ]

    lines += [
        f"| {label} | {format(s[key], fmt)} | {target} |"
        for label, key, fmt, target in SUMMARY_ROWS
        if key in s
    ]
    lines += [
        "",
        f"Matrix-multiply rate on the step's shapes at batch 64: numpy {roof['numpy'] / 1e9:.1f} "
        f"GFLOP/s, onnxruntime MatMul {roof['onnxruntime_matmul'] / 1e9:.1f} GFLOP/s (the "
        f"roofline is the better), each its fastest burst of 5 calls within a second; numpy "
        f"at batch 1: {roof['numpy_batch1'] / 1e9:.1f} GFLOP/s. "
        f"TensorFlow and onnxruntime logits agree to {r['tf_logit_agreement']:.1e}.",
        "",
    ]
    pairs, pairs8 = r.get("sustained_at_64"), r.get("sustained_int8_at_64")
    if pairs:

        def median(key: str, runs: list[dict[str, float]]) -> float:
            return statistics.median(p[key] for p in runs) / 1e9

        lines[-1:] = [
            f"Sustained, each right after one of {len(pairs)} engine runs at concurrency 64 and "
            f"for as long as it took (medians): engine {median('engine', pairs):.1f}, numpy "
            f"{median('numpy', pairs):.1f}, onnxruntime MatMul "
            f"{median('onnxruntime_matmul', pairs):.1f} GFLOP/s"
            + (
                f"; int8 engine {median('engine', pairs8):.1f}, onnxruntime MatMulInteger "
                f"{median('onnxruntime_matmulinteger', pairs8):.1f} GOP/s (best burst "
                f"{roof['onnxruntime_matmulinteger'] / 1e9:.1f})."
                if pairs8
                else "."
            ),
            "",
        ]
    if "qilv" in r:
        q = r["qilv"]
        lines[-1:] = [
            f"七律 with candidates on `{QILV_STYLE}/{q['version']}` "
            f"({q.get('precision', 'fp32')}, at most "
            f"{q['max_batch']} rows in the batch): 32 candidates a line, one poem at a time: "
            f"p50 {q['at_1']['p50']:.3f} s, p99 {q['at_1']['p99']:.3f} s over "
            f"{q['at_1']['requests']} poems; 8 a line from 64 clients ({q['at_64']['requests']}"
            f" poems): p50 {q['at_64']['p50']:.2f} s, p99 {q['at_64']['p99']:.2f} s, "
            f"event-loop lag p99 {q['at_64']['loop_lag_p99'] * 1e3:.0f} ms.",
            "",
        ]
    return "\n".join(lines)


def _machine(r: dict[str, Any]) -> str:
    m = r["machine"]
    return f"{m['cpu']}, {', '.join(m['isa'])}; load average before {m['load_before'][0]}"


if __name__ == "__main__":
    raise SystemExit(main())
