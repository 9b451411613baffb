"""Forms in the engine: a writer's mask holds at every character, a poem ends where its form
ends, the same seed gives the same poem alone or among 63 others, and options a form cannot
take get a clear FormError before anything is written."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.engine.bundle import load_bundle
from bot.engine.constraints import Masks
from bot.engine.scheduler import Limits, Request, Scheduler
from bot.engine.sessions import StepModel
from bot.forms import catalog, tang
from bot.forms.rules import Allowed, FormError
from bot.forms.units import UnitWriter

from .bundles import make_bundle

ROOT = Path(__file__).resolve().parent.parent
TANG = ROOT / "models" / "tang" / "v1"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = make_bundle(tmp_path_factory.mktemp("models"), "tiny", units=24, seed=5)
    return StepModel.load(path, providers="cpu")


@pytest.fixture(scope="module")
def tang_model():
    return StepModel.load(TANG, providers="cpu")


def run(model: StepModel, requests: list[Request], errors: bool = False):
    async def go():
        scheduler = Scheduler(model, Limits(max_batch=64, max_length=5000))
        try:
            answers = (scheduler.generate(r) for r in requests)
            return await asyncio.gather(*answers, return_exceptions=errors)
        finally:
            await scheduler.close()

    return asyncio.run(go())


class PoolWriter:
    """Allows, at each character, a seeded choice among a few fixed character sets (and bans
    one character), and records every character it is told of against what it allowed."""

    def __init__(self, pool: list[frozenset[str]], seed: int, steps: int) -> None:
        self.pool, self.rng, self.steps = pool, random.Random(seed), steps
        self.current = self._next()
        self.broken: list[tuple[str, Allowed]] = []
        self.heard = 0

    def _next(self) -> Allowed:
        chosen = self.rng.sample(self.pool, self.rng.randint(1, 2))
        banned = frozenset(self.rng.choice(sorted(self.pool[0])))
        return Allowed(required=tuple(chosen), banned=banned)

    def allowed(self) -> Allowed:
        return self.current

    def advance(self, ch: str) -> None:
        a = self.current
        if ch in a.banned or any(ch not in s for s in a.required):
            self.broken.append((ch, a))
        self.heard += 1
        self.current = self._next()

    @property
    def done(self) -> bool:
        return self.heard >= self.steps

    def cut(self) -> int:
        return self.heard


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**31), temperature=st.sampled_from([0.0, 0.7, 1.5]))
def test_a_constrained_row_never_writes_a_character_its_mask_forbids(tiny, seed, temperature):
    chars = [c for c in tiny.bundle.vocab.chars[1:]]
    rng = random.Random(seed)
    # Overlapping sets whose pairs always share characters, so no mask is empty.
    common = frozenset(rng.sample(chars, 3))
    pool = [common | frozenset(rng.sample(chars, 8)) for _ in range(4)]
    writers: list[PoolWriter] = []

    def rules(s: int) -> PoolWriter:
        writers.append(PoolWriter(pool, s, 40))
        return writers[-1]

    results = run(
        tiny,
        [Request(length=200, temperature=temperature, seed=seed + k, rules=rules) for k in range(3)]
        + [Request(length=50, seed=seed)],  # an unconstrained neighbour
    )
    assert all(w.broken == [] for w in writers)
    assert all(w.done for w in writers)
    assert [len(r.text) for r in results[:3]] == [40, 40, 40]  # ended by the writer, not length
    assert len(results[3].text) == 50


def qijue(acrostic: str | None = "春夏秋冬", form: str | None = "qijue") -> catalog.PoemPlan:
    bundle = load_bundle(TANG)
    return catalog.plan(bundle.card, bundle.vocab.chars, TANG, form=form, acrostic=acrostic)


def test_tang_poems_keep_every_rule_and_the_acrostic(tang_model):
    plan = qijue()
    results = run(
        tang_model, [Request(length=plan.length, seed=s, rules=plan.rules) for s in range(12)]
    )
    for result in results:
        check = tang.check(result.text, "qijue", "春夏秋冬")
        assert check.all_rules, (result.text, check)
        assert result.whole and result.form == "qijue" and result.relaxed == ()


def test_without_a_form_the_seed_picks_one_and_its_rules_hold(tang_model):
    plan = qijue(acrostic=None, form=None)
    results = run(
        tang_model, [Request(length=plan.length, seed=s, rules=plan.rules) for s in range(16)]
    )
    forms = {r.form for r in results}
    assert len(forms) >= 3
    for r in results:
        assert tang.check(r.text, r.form).all_rules, r.text


def test_a_constrained_poem_is_the_same_alone_and_among_63_others(tang_model):
    plan, free = qijue(), qijue(acrostic=None, form="wulv")
    alone = run(tang_model, [Request(length=plan.length, seed=42, rules=plan.rules)])[0].text
    crowd = [Request(length=plan.length, seed=42, rules=plan.rules)]
    for k in range(63):
        if k % 3 == 0:
            crowd.append(Request(length=60, seed=k))  # unconstrained
        else:
            chosen = plan if k % 3 == 1 else free
            crowd.append(Request(length=chosen.length, seed=1000 + k, rules=chosen.rules))
    together = run(tang_model, crowd)
    assert together[0].text == alone
    assert together[0].text == run(tang_model, [crowd[0]])[0].text


def test_a_prompt_is_the_poems_beginning(tang_model):
    bundle = load_bundle(TANG)
    plan = catalog.plan(bundle.card, bundle.vocab.chars, TANG, form="wujue", prompt="白日依山盡")
    result = run(
        tang_model, [Request(prompt=plan.prompt, length=plan.length, seed=3, rules=plan.rules)]
    )[0]
    assert result.text.startswith("白日依山盡，")
    assert tang.check(result.text, "wujue").all_rules


def test_a_poem_cut_by_its_length_ends_at_its_last_whole_line(tiny):
    requests = [
        Request(length=n, seed=s, rules=lambda seed: UnitWriter("paragraph"))
        for s in range(8)
        for n in (60, 150, 400)
    ]
    results = run(tiny, requests, errors=True)
    poems = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, Exception)]
    assert all("did not hold one whole line" in str(e) for e in refused)
    assert any(not p.whole for p in poems) and len(poems) > len(refused)
    for p in poems:
        assert not p.text.startswith("\n")
        if p.whole:  # the paragraph ended at its blank line
            assert p.text.endswith("\n\n") and "\n\n" not in p.text[:-2]
        else:  # cut at the length: at its last whole line
            assert p.text.endswith("\n") and "\n\n" not in p.text


def test_a_length_that_holds_no_whole_line_is_refused(tiny):
    class OneLongLine(UnitWriter):
        def allowed(self) -> Allowed:
            return Allowed(banned=frozenset("\n"))

    with pytest.raises(ValueError, match="did not hold one whole line"):
        run(tiny, [Request(length=10, seed=1, rules=lambda s: OneLongLine("line"))])


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"form": "qijue", "acrostic": "春夏秋"}, "needs 4"),
        ({"acrostic": "春夏秋冬夏"}, "4 or 8"),
        ({"form": "qijue", "acrostic": "春☃秋冬"}, "does not know"),
        ({"form": "qijue", "acrostic": "春*夏秋"}, "no spaces, punctuation or markup"),
        ({"form": "qijue", "acrostic": "春\u202e夏秋冬"}, "control or invisible"),
        ({"form": "sonnet"}, "has no form"),
        ({"form": "qijue", "prompt": "白日依山盡黃河入"}, "at most the first line"),
        ({"form": "qijue", "prompt": "白日，"}, "breaks the form at character 3"),
        ({"form": "qilv", "length": 20}, "needs 64 characters"),
        ({"output_script": "cyrillic"}, "script must be one of"),
    ],
)
def test_options_a_form_cannot_take_are_refused_in_words(options, says):
    bundle = load_bundle(TANG)
    with pytest.raises(FormError, match=says):
        catalog.plan(bundle.card, bundle.vocab.chars, TANG, **options)


def test_an_acrostic_typed_in_simplified_works_on_the_traditional_model(tang_model):
    plan = qijue(acrostic="风花雪月")
    result = run(tang_model, [Request(length=plan.length, seed=9, rules=plan.rules)])[0]
    assert tang.check(result.text, "qijue", "風花雪月").all_rules, result.text


@settings(max_examples=150, deadline=None)
@given(
    acrostic=st.text(max_size=24),
    prompt=st.text(max_size=24),
    form=st.sampled_from([None, "qijue", "wulv", "sonnet", "", "QIJUE"]),
)
def test_any_options_give_a_plan_or_a_form_error_in_words(acrostic, prompt, form):
    """Whatever a user types into acrostic, prompt and form: a plan, or a FormError; never
    another exception (the Discord side and the page answer FormError in words)."""
    bundle = load_bundle(TANG)
    try:
        plan = catalog.plan(
            bundle.card, bundle.vocab.chars, TANG, form=form, acrostic=acrostic, prompt=prompt
        )
    except FormError as err:
        assert str(err) and len(str(err)) < 400
    else:
        assert plan.length >= 24 and plan.rules is not None


def test_what_writers_allow_is_kept_within_a_bound_and_read_back_right():
    """The combined rows the engine keeps per model (a writer's required and preferred sets)
    stay within their bound however many distinct sets writers name, and each row read back
    allows exactly what its sets do, less the banned characters; a preferred set that the
    bans empty is dropped, and said."""
    vocab = load_bundle(Path(__file__).resolve().parent.parent / "models" / "tang" / "v3").vocab
    masks = Masks(vocab)
    chars = [c for c in vocab.chars if tang.is_ideograph(c)]
    for i in range(masks._pair_limit + 50):
        one = frozenset(chars[i % len(chars)] + chars[(i * 7 + 1) % len(chars)])
        masks.addend(Allowed(required=(one,)))
    assert len(masks._pairs) <= masks._pair_limit
    han, level = frozenset(chars[:300]), frozenset(chars[100:120])
    addend, relaxed = masks.addend(
        Allowed(required=(han,), banned=frozenset(chars[100:110]), preferred=(level,))
    )
    allowed = {vocab.chars[i] for i in range(len(vocab.chars)) if addend[i] == 0}
    assert allowed == set(chars[110:120]) and not relaxed
    addend, relaxed = masks.addend(
        Allowed(required=(han,), banned=frozenset(chars[100:120]), preferred=(level,))
    )
    allowed = {vocab.chars[i] for i in range(len(vocab.chars)) if addend[i] == 0}
    assert allowed == set(chars[:300]) - set(chars[100:120]) and relaxed
    assert (
        masks.addend(Allowed(required=(frozenset(chars[:2]),), banned=frozenset(chars[:2])))[0]
        is None
    )
    # The engine adds them into a row's scores in place: the same row as scores + addend,
    # and a row nothing is allowed in is left as it was.
    scores = np.random.default_rng(1).standard_normal(len(vocab.chars)).astype(np.float32)
    for banned in (chars[100:110], chars[100:120], ""):
        asked = Allowed(required=(han,), banned=frozenset(banned), preferred=(level,))
        row = scores.copy()
        assert masks.add(asked, row) == masks.addend(asked)[1]
        assert np.array_equal(row, scores + masks.addend(asked)[0])
    row = scores.copy()
    stuck = Allowed(required=(frozenset(chars[:2]),), banned=frozenset(chars[:2]))
    assert masks.add(stuck, row) is None and np.array_equal(row, scores)


def test_a_vocabulary_is_one_character_set_however_often_a_poem_is_planned(tang_model):
    # The writers' tables are cached by vocabulary: planning a poem must not make a new set of
    # the same 6,500 characters each time (comparing it with the cached one costs every plan).
    chars = tang_model.bundle.vocab.chars
    first = catalog.charset(chars)
    assert first == frozenset(chars)
    assert catalog.charset(chars) is first
    assert catalog.charset(first) is first
    assert catalog.charset(tuple(list(chars))) == first  # another tuple alike: an equal set
    for n in range(catalog.CHARSETS_KEPT + 1):  # past the bound: still the right set
        catalog.charset(tuple(chars[: n + 2]))
    assert catalog.charset(chars) == first
