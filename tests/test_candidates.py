"""Candidates: each line of a form is written K times from one state and the best-scored one
goes on. The chosen line is the best of its candidates by the score the network gives it
(checked against the network read afresh), the poem is still a function of its seed and
options alone or among 63 others, a writer's penalty steers the choice, and no rule of form is
broken by it."""

from __future__ import annotations

import asyncio
import gc
import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bot.engine.bundle import load_bundle
from bot.engine.constraints import fork
from bot.engine.scheduler import Limits, Request, Scheduler
from bot.engine.sessions import StepModel
from bot.forms import catalog, tang
from bot.forms.units import UnitWriter

from .bundles import make_bundle

ROOT = Path(__file__).resolve().parent.parent
TANG = ROOT / "models" / "tang" / "v1"
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def verse(tmp_path_factory):
    path = make_bundle(tmp_path_factory.mktemp("models"), "verse", units=32, seed=3)
    return StepModel.load(path, providers="cpu")


@pytest.fixture(scope="module")
def tang_model():
    return StepModel.load(TANG, providers="cpu")


def run(model: StepModel, requests: list[Request], listeners=None) -> list:
    async def go():
        scheduler = Scheduler(model, Limits(max_batch=1024, max_length=5000))
        try:
            hear = listeners or [None] * len(requests)
            return await asyncio.gather(
                *(scheduler.generate(r, h) for r, h in zip(requests, hear, strict=True))
            )
        finally:
            await scheduler.close()

    return asyncio.run(go())


def lines_of(lines: int):
    return lambda seed: UnitWriter("paragraph", lines=lines)


def mean_logp(model: StepModel, before: str, line: str) -> float:
    """The network's mean log-probability per character of `line` after `before`, reading
    one character a step from the start, as a check independent of the scheduler."""
    vocab = model.bundle.vocab
    ids = [vocab.start_id, *vocab.encode(before)[0]]
    states = model.zero_states(1)
    for i in ids[:-1]:
        _, states = model.step(np.array([i]), states)
    total, last = 0.0, ids[-1]
    for ch in line:
        logits, states = model.step(np.array([last]), states)
        z = logits[0].astype(np.float64)
        total += z[vocab.index[ch]] - (z.max() + math.log(np.exp(z - z.max()).sum()))
        last = vocab.index[ch]
    return total / len(line)


def test_the_chosen_line_is_the_best_scored_of_its_candidates(verse):
    poem = run(
        verse, [Request(prompt="ROMEO", length=400, seed=7, rules=lines_of(4), candidates=6)]
    )[0]
    assert poem.whole and len(poem.lines) == 4
    assert poem.text == "ROMEO" + "".join(c.texts[c.chosen] for c in poem.lines)
    before = "ROMEO"
    for choice in poem.lines:
        assert len(choice.texts) == len(choice.scores) == 6
        assert choice.scores[choice.chosen] == max(choice.scores)
        assert len(set(choice.texts)) > 1  # they really were different lines
        line = choice.texts[choice.chosen]
        # The score is the network's own mean log-probability of the line, unmasked.
        assert choice.scores[choice.chosen] == pytest.approx(
            mean_logp(verse, before, line), abs=1e-4
        )
        before += line


def test_candidates_write_likelier_lines_than_single_samples(verse):
    seeds = range(12)
    single = run(verse, [Request(length=400, seed=s, rules=lines_of(4)) for s in seeds])
    chosen = run(
        verse, [Request(length=400, seed=s, rules=lines_of(4), candidates=8) for s in seeds]
    )

    def mean(poem):
        return np.mean([mean_logp(verse, "", poem.text)])

    assert np.mean([mean(p) for p in chosen]) > np.mean([mean(p) for p in single])


def test_same_seed_same_poem_alone_or_among_63_others(verse):
    ask = Request(prompt="KING", length=300, seed=11, rules=lines_of(3), candidates=8)
    alone = run(verse, [ask])[0]
    crowd = [
        Request(length=900, seed=100 + i, rules=lines_of(1), candidates=1 + i % 5)
        if i % 3
        else Request(length=150, seed=100 + i)
        for i in range(63)
    ]
    among = run(verse, [*crowd[:30], ask, *crowd[30:]])[30]
    assert among.text == alone.text and among.lines == alone.lines


def test_a_listener_hears_only_the_lines_chosen(verse):
    heard: list[str] = []
    poem = run(
        verse,
        [Request(length=400, seed=5, rules=lines_of(5), candidates=4)],
        [heard.append],
    )[0]
    assert "".join(heard) == poem.text


class Shunned(UnitWriter):
    """Lines as a paragraph writes them; a line holding the letter `e` is rejected."""

    def __init__(self) -> None:
        super().__init__("paragraph", lines=4)

    def penalty(self) -> float:
        return math.inf if "e" in self._last else 0.0

    def advance(self, ch: str) -> None:
        if ch == "\n":
            self._last = self._line
        super().advance(ch)


def test_a_writers_penalty_steers_the_choice(verse):
    poems = run(
        verse,
        [Request(length=400, seed=s, rules=lambda s: Shunned(), candidates=16) for s in range(6)],
    )
    for poem in poems:
        for choice in poem.lines:
            kept = [t for t, s in zip(choice.texts, choice.scores, strict=True) if s > -math.inf]
            assert ("e" in choice.texts[choice.chosen]) == (not kept), choice


def test_tang_forms_keep_every_rule_with_candidates(tang_model):
    bundle = load_bundle(TANG)
    requests = []
    for seed in range(8):
        form = ("wujue", "qijue", "wulv", "qilv")[seed % 4]
        plan = catalog.plan(bundle.card, bundle.vocab.chars, TANG, form=form, acrostic=None)
        requests.append(Request(length=plan.length, seed=seed, rules=plan.rules, candidates=8))
    for poem in run(tang_model, requests):
        assert tang.check(poem.text, poem.form).all_rules, poem.text
        assert len(poem.lines) == tang.FORMS[poem.form].lines  # one choice a clause


def test_too_many_candidates_are_refused_in_words(verse):
    with pytest.raises(ValueError, match="candidates must be between 1 and 1024"):
        run(verse, [Request(length=50, seed=1, rules=lines_of(1), candidates=1025)])
    plain = run(verse, [Request(length=50, seed=1, candidates=9)])[0]
    assert plain.lines == () and len(plain.text) == 50  # no form, no lines to choose among


def test_a_forked_writer_goes_on_without_touching_the_original():
    bundle = load_bundle(TANG)
    plan = catalog.plan(bundle.card, bundle.vocab.chars, TANG, form="qijue")
    poem = "朝辭白帝彩雲間，千里江陵一日還。兩岸猿聲啼不住，輕舟已過萬重山。"
    writer, fresh = plan.rules(1), plan.rules(1)
    for ch in poem[:8]:
        writer.advance(ch)
        fresh.advance(ch)
    twin = fork(writer)
    for ch in "春風又綠江南岸。明月何時照我還，":
        twin.advance(ch)
    for ch in poem[8:]:
        assert writer.allowed() == fresh.allowed()
        writer.advance(ch)
        fresh.advance(ch)
    assert writer.done and fresh.done and twin.cut() != writer.cut()


def test_candidates_read_a_prompt_without_a_prefill_graph(tmp_path):
    path = make_bundle(tmp_path, "verse", units=32, seed=3, prefill=False)
    model = StepModel.load(path, providers="cpu")
    ask = Request(prompt="ROMEO:\nO", length=400, seed=2, rules=lines_of(3), candidates=5)
    poem = run(model, [ask])[0]
    # The prompt holds the first line: two are chosen.
    assert poem.whole and poem.text.startswith("ROMEO:\nO") and len(poem.lines) == 2
    assert poem.text == "ROMEO:\nO" + "".join(c.texts[c.chosen] for c in poem.lines)
    for choice in poem.lines:
        assert choice.scores[choice.chosen] == max(choice.scores)


def test_whole_poems_as_candidates_choose_once(verse):
    ask = Request(length=600, seed=4, rules=lines_of(3), candidates=6, candidate_unit="poem")
    poem = run(verse, [ask])[0]
    assert poem.whole and len(poem.lines) == 1
    (choice,) = poem.lines
    assert poem.text == choice.texts[choice.chosen] and choice.texts[choice.chosen].count("\n") == 3
    assert choice.scores[choice.chosen] == max(choice.scores)
    assert choice.scores[choice.chosen] == pytest.approx(mean_logp(verse, "", poem.text), abs=1e-4)


class Counting:
    """A model that notes how many rows each step of the batch holds."""

    def __init__(self, model: StepModel) -> None:
        self.model = model
        self.rows: list[int] = []

    def __getattr__(self, name: str):
        return getattr(self.model, name)

    def step(self, ids, states):
        self.rows.append(len(ids))
        return self.model.step(ids, states)


def test_a_poems_candidate_rows_leave_together_and_leak_into_nothing(verse):
    poem = Request(prompt="KING", length=300, seed=11, rules=lines_of(3), candidates=8)
    other = Request(prompt="QUEEN:", length=1500, temperature=0.9, seed=5)
    counted = Counting(verse)
    together = run(counted, [poem, other])
    # Every step holds the rows still writing: the other's one, and those of the poem's 8
    # candidates still writing their line (one whose line has ended waits unstepped for the
    # others'), so the poem's candidates take one step per character each writes, but for a
    # line's first: all 8 read it from one state, and it is computed once; then the other's
    # alone from the step after the poem ended.
    first = counted.rows.index(1)
    assert all(2 <= n <= 9 for n in counted.rows[:first]) and set(counted.rows[first:]) == {1}
    written = sum(len(text) for choice in together[0].lines for text in choice.texts)
    shared = (poem.candidates - 1) * len(together[0].lines)
    assert sum(n - 1 for n in counted.rows[:first]) == written - shared
    assert min(counted.rows[:first]) < 9  # lines of unequal length: some waited
    # Neither wrote otherwise for the other's company.
    assert together[0].text == run(verse, [poem])[0].text
    assert together[1].text == run(verse, [other])[0].text


def test_lookahead_adds_the_mass_on_what_the_form_allows_next(tang_model):
    """With `lookahead`, a line's candidates are scored by their mean log-probability plus
    the weight times the log of what the network, after the line, gives to the characters
    the form allows next: never more than before, less where it bars likely characters, and
    nothing for the poem's last line. The poem is still its seed's, alone or in company."""
    bundle = load_bundle(TANG)
    plan = catalog.plan(bundle.card, bundle.vocab.chars, TANG, form="wujue", acrostic=None)
    ask = Request(length=plan.length, seed=3, rules=plan.rules, candidates=8)
    ahead = replace(ask, lookahead=1.0)
    plain, looked = run(tang_model, [ask, ahead])
    assert run(tang_model, [ahead])[0].text == looked.text
    assert plain.lines[0].texts == looked.lines[0].texts  # one state, the same draws
    added = [b - a for a, b in zip(plain.lines[0].scores, looked.lines[0].scores, strict=True)]
    assert all(x <= 1e-9 for x in added) and min(added) < -1e-3
    assert tang.check(looked.text, looked.form).all_rules
    before = "".join(c.texts[c.chosen] for c in looked.lines[:-1])
    last = looked.lines[-1]
    assert last.scores[last.chosen] == max(last.scores)
    assert last.scores[last.chosen] == pytest.approx(
        mean_logp(tang_model, before, last.texts[last.chosen]), abs=1e-4
    )


def test_a_finished_poems_candidate_rows_are_freed_without_the_cycle_collector(verse):
    """Under load the collector runs a full collection only every 30 s; rows left in
    reference cycles would wait for it (and make it long). A poem's rows leave none."""
    asks = [Request(length=300, seed=s, rules=lines_of(3), candidates=8) for s in range(4)]
    run(verse, asks)  # warm: whatever a first run builds once
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        poems = run(verse, asks)
        gc.collect()
        left = [type(o).__name__ for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert all(p.lines for p in poems)
    assert left == [], sorted(set(left))
