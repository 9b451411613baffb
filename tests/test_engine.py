"""The continuous-batching scheduler: what a caller of the engine sees."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bot.engine.scheduler import Busy, Limits, Request, Scheduler
from bot.engine.sessions import StepModel, cuda_loads
from export import graphs

from .bundles import make_bundle
from .stepping import HeldSteps, ManualClock, until

LONG_PROMPT = (
    "O, that this too too solid flesh would melt, thaw and resolve itself into a dew! " * 3
)


@pytest.fixture(scope="module")
def bundle_path(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("models"), units=48, scale=2.0, int8=True)


@pytest.fixture(scope="module")
def model(bundle_path):
    return StepModel.load(bundle_path, providers="cpu")


@pytest.fixture
def held(model):
    """The test model with its steps held until the test lets them go."""
    stepper = HeldSteps(model)
    yield stepper
    stepper.release()


@pytest.fixture(scope="module")
def int8_model(bundle_path):
    return StepModel.load(bundle_path, providers="cpu", int8=True)


@pytest.fixture(scope="module")
def embedding_int8_model(tmp_path_factory):
    """The test model's int8 graph with the first layer's input multiplied out from the
    embedding at each step, as for a vocabulary too large for a table (the Chinese styles')."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(graphs, "TABLE_BYTES", 0)
        path = make_bundle(tmp_path_factory.mktemp("models"), units=48, scale=2.0, int8=True)
    return StepModel.load(path, providers="cpu", int8=True)


@pytest.fixture(scope="module")
def bound_model(bundle_path):
    """IO binding on the CPU: the state lives in onnxruntime's values, as on a GPU."""
    return StepModel.load(bundle_path, providers="cpu", io_binding=True)


@pytest.fixture(scope="module")
def ngram_model(tmp_path_factory):
    """A bundle that mixes a 6-gram model of its corpus into the network's distribution."""
    path = make_bundle(tmp_path_factory.mktemp("models"), units=48, scale=2.0, ngram=6)
    return StepModel.load(path, providers="cpu")


@pytest.fixture(scope="module")
def variant_bundles(tmp_path_factory):
    """A bundle of each other cell (LSTM with peepholes, coupled gates; GRU), int8 graph too,
    with random biases."""
    root = tmp_path_factory.mktemp("models")
    return {
        cell: make_bundle(root, style=cell, cell=cell, units=48, scale=2.0, int8=True, bias=0.5)
        for cell in ("peephole", "coupled", "gru")
    }


@pytest.fixture(scope="module")
def variant_models(variant_bundles):
    """Each other cell's model, fp32 and int8: `peephole`, `peephole_int8`, `coupled`, ..."""
    return {
        f"{cell}{'_int8' if int8 else ''}": StepModel.load(path, providers="cpu", int8=int8)
        for cell, path in variant_bundles.items()
        for int8 in (False, True)
    }


def a_model(name: str, request) -> StepModel:
    """A model by its fixture's name, or by its name among the variant models."""
    if name.endswith("model"):
        return request.getfixturevalue(name)
    return request.getfixturevalue("variant_models")[name]


def run(coro):
    return asyncio.run(coro)


async def generate_all(scheduler, requests):
    try:
        return await asyncio.gather(*(scheduler.generate(r) for r in requests))
    finally:
        await scheduler.close()


@pytest.mark.parametrize(
    "variant",
    [
        *("model", "int8_model", "embedding_int8_model", "bound_model", "ngram_model"),
        *("peephole", "peephole_int8", "coupled", "coupled_int8", "gru_int8"),
    ],
)
def test_same_seed_same_text_alone_or_among_63_others(variant, request):
    model = a_model(variant, request)
    target = Request(prompt="First Citizen:", length=120, temperature=0.9, seed=42)
    alone = run(generate_all(Scheduler(model), [target]))[0]
    others = [
        Request(
            prompt="ROMEO:"[: i % 7],
            length=40 + 3 * i,
            temperature=0.3 + i / 50,
            top_k=i % 5,
            top_p=1.0 - (i % 3) / 10,
            seed=i,
        )
        for i in range(63)
    ]
    crowd = [*others[:20], target, *others[20:]]
    together = run(generate_all(Scheduler(model, Limits(max_batch=64)), crowd))
    assert together[20].text == alone.text
    assert together[20].seed == 42
    again = run(generate_all(Scheduler(model), [target]))[0]
    assert again.text == alone.text


def test_different_seeds_differ_and_no_seed_gets_one_reported(model):
    a, b, c = run(
        generate_all(
            Scheduler(model),
            [Request(length=80, seed=1), Request(length=80, seed=2), Request(length=80)],
        )
    )
    assert a.text != b.text
    assert isinstance(c.seed, int) and 0 <= c.seed < 2**64
    replay = run(generate_all(Scheduler(model), [Request(length=80, seed=c.seed)]))[0]
    assert replay.text == c.text


def test_temperature_zero_is_greedy_whatever_the_seed(model):
    a, b = run(
        generate_all(
            Scheduler(model),
            [
                Request(length=60, temperature=0.0, seed=1),
                Request(length=60, temperature=0.0, seed=99),
            ],
        )
    )
    assert a.text == b.text


def test_requests_join_and_leave_the_running_batch(held):
    async def joins(scheduler, request):
        """`request` joins the batch at the step the test lets through, and runs to its end
        in steps of more than one row (the long request alone is held meanwhile)."""
        task = asyncio.create_task(scheduler.generate(request))
        await until(lambda: scheduler.queued == 1, what="the request queued")
        held.allow(1)
        return await asyncio.wait_for(task, 30)

    async def scenario():
        scheduler = Scheduler(held, Limits(max_batch=8))
        long = asyncio.create_task(scheduler.generate(Request(length=300, seed=1)))
        await held.reached(1)
        assert scheduler.active == 1
        held.let(lambda ids: len(ids) > 1)
        short = await joins(scheduler, Request(length=20, seed=2))
        # The short request joined the running batch and left it while the long one ran on.
        assert not long.done()
        assert held.steps < 300
        assert scheduler.active == 1
        third = await joins(scheduler, Request(length=10, seed=3))
        assert not long.done()
        held.release()
        done = await long
        await scheduler.close()
        return short, third, done, scheduler.steps

    short, third, done, steps = run(scenario())
    assert len(short.text) == 20 and len(third.text) == 10 and len(done.text) == 300
    assert steps < 300 + 20 + 10  # not served one after another


def test_prompt_is_kept_and_unknown_characters_are_named(model):
    result = run(
        generate_all(Scheduler(model), [Request(prompt="ROMEO 愛 😀:", length=30, seed=5)])
    )[0]
    assert result.text.startswith("ROMEO 愛 😀:")
    assert len(result.text) == len("ROMEO 愛 😀:") + 30
    assert result.unknown == ["愛", "😀"]
    assert "\ufffd" not in result.text


def test_queue_bound_answers_busy_at_once(held):
    async def scenario():
        scheduler = Scheduler(held, Limits(max_batch=1, max_queue=1))
        first = asyncio.create_task(scheduler.generate(Request(length=200, seed=1)))
        await held.reached(1)
        second = asyncio.create_task(scheduler.generate(Request(length=10, seed=2)))
        await until(lambda: scheduler.queued == 1, what="the second request queued")
        with pytest.raises(Busy) as busy:
            await scheduler.generate(Request(length=10, seed=3))
        # At once: while the first request's first step was still held, no slot could free.
        assert held.steps == 0
        held.release()
        await asyncio.gather(first, second)
        await scheduler.close()
        return busy.value

    busy = run(scenario())
    assert busy.retry_after >= 1 and "waiting" in str(busy)


def test_deadline_gives_busy_not_an_endless_wait(held):
    async def scenario():
        clock = ManualClock()
        scheduler = Scheduler(held, Limits(max_batch=1, deadline=0.15), clock=clock)
        tasks = [
            asyncio.create_task(scheduler.generate(Request(length=2000, seed=i))) for i in range(2)
        ]
        await held.reached(1)  # the first is being written, the second waits for the slot
        clock.advance(0.2)  # past both deadlines
        held.release()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await scheduler.close()
        return results, scheduler.steps

    (writing, waiting), steps = run(scenario())
    assert isinstance(writing, Busy) and "took too long" in str(writing)
    assert isinstance(waiting, Busy) and "waited too long" in str(waiting)
    assert steps < 2000  # the first was stopped at its deadline, not written to its end


@pytest.mark.parametrize(
    "bad",
    [
        Request(length=0),
        Request(length=10**6),
        Request(temperature=math.nan),
        Request(temperature=-1.0),
        Request(temperature=math.inf),
        Request(top_p=0.0),
        Request(top_k=-2),
        Request(seed=-1),
        Request(seed=2**64),
        Request(prompt="x" * 10_000),
    ],
)
def test_bad_options_are_refused_with_a_reason(model, bad):
    with pytest.raises(ValueError):
        run(generate_all(Scheduler(model), [bad]))


def test_seed_at_the_64_bit_edge(model):
    result = run(generate_all(Scheduler(model), [Request(length=10, seed=2**64 - 1)]))[0]
    assert result.seed == 2**64 - 1 and len(result.text) == 10


def test_cancelled_request_frees_its_slot(held):
    async def scenario():
        scheduler = Scheduler(held, Limits(max_batch=1))
        doomed = asyncio.create_task(scheduler.generate(Request(length=2000, seed=1)))
        await held.reached(1)
        doomed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await doomed
        held.release()
        result = await asyncio.wait_for(scheduler.generate(Request(length=20, seed=2)), 30)
        await scheduler.close()
        return result, scheduler.steps

    result, steps = run(scenario())
    assert len(result.text) == 20
    assert steps < 2000  # the cancelled request's row stopped; it did not run to its end


def test_close_lets_requests_in_flight_finish_and_refuses_new_ones(held):
    async def scenario():
        scheduler = Scheduler(held)
        inflight = [
            asyncio.create_task(scheduler.generate(Request(length=100, seed=i))) for i in range(5)
        ]
        await held.reached(1)
        assert scheduler.active == 5
        closing = asyncio.create_task(scheduler.close())
        await asyncio.sleep(0)  # one turn of the loop: close() has begun
        with pytest.raises(Busy):
            await scheduler.generate(Request(length=5))
        assert not any(task.done() for task in inflight)  # still in flight when it closed
        held.release()
        await closing
        return await asyncio.gather(*inflight)

    assert [len(r.text) for r in run(scenario())] == [100] * 5


def test_event_loop_stays_responsive_while_generating(held):
    async def scenario():
        scheduler = Scheduler(held)
        work = asyncio.gather(*(scheduler.generate(Request(length=400, seed=i)) for i in range(32)))
        # Each turn of the event loop lets one step through: were a step (or the sampling
        # after it) run on the loop, the loop would wait for itself and the step never come.
        turns = 0
        while not work.done():
            turns += 1
            held.allow(1)
            await asyncio.sleep(0.001)
        poems = await work
        await scheduler.close()
        return poems, turns, held.steps

    poems, turns, steps = run(scenario())
    assert [len(p.text) for p in poems] == [400] * 32
    assert steps <= turns


def test_a_session_of_its_own_beside_the_shared_pool_is_refused_in_words(model, bundle_path):
    from bot.engine import sessions

    assert sessions._shared_pool  # set up by the first session, the model's
    with pytest.raises(sessions.ProviderError, match="share one onnxruntime thread pool"):
        StepModel.load(bundle_path, providers="cpu", threads=2)


def test_providers_auto_runs_on_the_cpu_here_and_cuda_is_an_error_not_a_fallback(tmp_path):
    import onnxruntime as ort

    from bot.engine.sessions import ProviderError

    path = make_bundle(tmp_path)
    assert StepModel.load(path, providers="auto").provider in ort.get_available_providers()
    if "CUDAExecutionProvider" in StepModel.load(path, providers="auto").session.get_providers():
        pytest.skip("this machine has a working GPU; the refusal cannot be shown here")
    with pytest.raises(ProviderError, match="cuda"):
        StepModel.load(path, providers="cuda")
    with pytest.raises(ProviderError):
        StepModel.load(path, providers="tpu")


def test_a_failing_step_fails_its_batch_and_the_engine_keeps_serving(model, monkeypatch):
    async def scenario():
        scheduler = Scheduler(model)
        real_step = model.step
        calls = {"n": 0}

        def flaky(ids, states):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("device lost")
            return real_step(ids, states)

        monkeypatch.setattr(model, "step", flaky)
        with pytest.raises(RuntimeError, match="device lost"):
            await scheduler.generate(Request(length=50, seed=1))
        after = await scheduler.generate(Request(length=50, seed=1))
        await scheduler.close()
        return after

    assert len(run(scenario()).text) == 50


@pytest.mark.parametrize(
    ("cell", "ngram"), [("lstm", 0), ("lstm", 6), ("peephole", 0), ("coupled", 0)]
)
def test_prompt_is_read_in_one_prefill_run_and_writes_what_stepping_writes(cell, ngram, tmp_path):
    model, stepping = (
        StepModel.load(
            make_bundle(tmp_path / str(p), cell=cell, units=48, scale=2.0, prefill=p, ngram=ngram),
            providers="cpu",
        )
        for p in (True, False)
    )
    assert model.prefill_session is not None and stepping.prefill_session is None
    request = Request(prompt=LONG_PROMPT, length=60, temperature=0.8, seed=5)
    counts = []
    texts = []
    for m in (model, stepping):
        scheduler = Scheduler(m)
        texts.append(run(generate_all(scheduler, [request]))[0].text)
        counts.append(scheduler.steps)
    assert texts[0] == texts[1]
    # One step per written character with prefill; one more per prompt character without.
    assert counts == [60, 60 + len(LONG_PROMPT)]


@pytest.mark.parametrize(
    ("pair", "products"),
    [("plain", 3), ("embedding", 3), ("peephole", 3), ("coupled", 3), ("gru", 4)],
)
def test_int8_step_stays_close_to_fp32(pair, products, model, int8_model, request):
    if pair == "embedding":
        int8_model = a_model("embedding_int8_model", request)
    elif pair != "plain":
        model, int8_model = a_model(pair, request), a_model(f"{pair}_int8", request)
    ops = [node.op_type for node in onnx.load(int8_model.bundle.model_path(True)).graph.node]
    # The first layer's input is a table: its recurrent product, then one product of [x, h]
    # for the second layer (a GRU's x and h apart), and the logits; each activation
    # quantised once for the product that reads it. A vocabulary too large for a table of
    # projections looks its embedding up and multiplies it out in float32.
    assert ops.count("MatMulIntegerToFloat") == ops.count("QuantizeLinear") == products
    assert "MatMulInteger" not in ops and "DequantizeLinear" not in ops
    assert ops.count("MatMul") == (pair == "embedding")
    rng = np.random.default_rng(3)
    ids = rng.integers(1, len(model.bundle.vocab), (16, 40))
    states32, states8 = model.zero_states(16), int8_model.zero_states(16)
    worst = 0.0
    for t in range(ids.shape[1]):
        logits32, states32 = model.step(ids[:, t], states32)
        logits8, states8 = int8_model.step(ids[:, t], states8)
        p32 = np.exp(logits32 - logits32.max(1, keepdims=True))
        p8 = np.exp(logits8 - logits8.max(1, keepdims=True))
        p32, p8 = p32 / p32.sum(1, keepdims=True), p8 / p8.sum(1, keepdims=True)
        worst = max(worst, float(np.abs(p32 - p8).sum(1).max()))
    assert worst < 0.05  # total variation between the two next-character distributions


def test_io_binding_keeps_the_state_in_onnxruntime_between_steps(bound_model, model):
    states = bound_model.to_device(bound_model.zero_states(3))
    logits, states = bound_model.step(np.array([1, 2, 3]), states)
    assert all(isinstance(s, ort.OrtValue) for s in states)
    expected, _ = model.step(np.array([1, 2, 3]), model.zero_states(3))
    assert np.array_equal(logits, expected)


@pytest.mark.skipif(not cuda_loads(), reason="no CUDA device or onnxruntime-gpu on this machine")
def test_cuda_keeps_the_state_on_the_device_and_matches_the_cpu(bundle_path, model):
    gpu = StepModel.load(bundle_path, providers="cuda")
    assert gpu.provider == "CUDAExecutionProvider" and gpu.io_binding
    ids = np.arange(1, 9)
    states, cpu_states = gpu.to_device(gpu.zero_states(8)), model.zero_states(8)
    for _ in range(20):
        logits, states = gpu.step(ids, states)
        expected, cpu_states = model.step(ids, cpu_states)
        assert np.abs(logits - expected).max() < 1e-3
    assert all(s.device_name().lower() == "cuda" for s in states)
    text = run(generate_all(Scheduler(gpu), [Request(prompt=LONG_PROMPT, length=50, seed=1)]))
    assert len(text[0].text) == len(LONG_PROMPT) + 50


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are Linux's")
def test_the_step_thread_gives_way_to_the_event_loop(model):
    # The loop acknowledges Discord within 3 s; steps can wait. The OS must favour the loop.
    seen = {}

    class Watched(StepModel):
        def step(self, ids, states):
            tid = threading.get_native_id()
            seen["step"] = os.getpriority(os.PRIO_PROCESS, tid)
            return super().step(ids, states)

    watched = Watched.__new__(Watched)
    watched.__dict__.update(model.__dict__)

    async def scenario():
        seen["loop"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        scheduler = Scheduler(watched, Limits())
        await scheduler.generate(Request(length=5, seed=1))
        await scheduler.close()

    run(scenario())
    assert seen["step"] > seen["loop"]
