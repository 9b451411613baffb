"""No poem line is a line of the training split verbatim (normalised: case, spaces and
punctuation aside), for every form: a line may not end while it is one, and a Tang clause's
last character may not complete one."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from bot.engine.bundle import load_bundle
from bot.engine.scheduler import Request, Scheduler
from bot.engine.sessions import StepModel
from bot.forms import catalog, tang
from bot.forms.lines import LINES_FILE, LineGuard, LineIndex, normalise, training_lines
from bot.forms.rules import ANYTHING, Allowed
from bot.forms.tang import FORMS
from bot.forms.tang_writer import TangWriter

from .bundles import FIXTURES, make_bundle

TEXT = (FIXTURES / "shakespeare_excerpt.txt").read_text(encoding="utf-8")
TANG_TEXT = (FIXTURES / "tang_excerpt.txt").read_text(encoding="utf-8")


def _made_up_lines() -> list[str]:
    """Lines of made-up words, none sharing six characters with another: a model that copies
    goes on with a line verbatim from its first few characters."""
    rng = random.Random(0)
    return [
        " ".join(
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5)) for _ in range(5)
        )
        for _ in range(60)
    ]


LINES = _made_up_lines()
CORPUS = "".join(line + "\n" for line in LINES) * 3
STARTS = [line[:8] for line in LINES[:40]]


class Free:
    """A writer that allows anything and never ends."""

    done = False

    def allowed(self) -> Allowed:
        return ANYTHING

    def advance(self, ch: str) -> None:
        pass

    def cut(self) -> int:
        return 0


def test_a_line_may_not_end_while_it_is_a_training_line():
    index = LineIndex.build("Before we proceed any further, hear me speak.\nAll:\n")
    guard = LineGuard(Free(), index)
    for ch in "before we PROCEED any further, hear me speak":
        assert "\n" not in guard.allowed().banned
        guard.advance(ch)
    assert {"\n", "，", "。"} <= guard.allowed().banned  # the line is the training one
    guard.advance("s")
    assert "\n" not in guard.allowed().banned  # it has become another line
    assert not index.holds(normalise("All:"))  # too short to count as a copy


def test_a_tang_clause_never_ends_on_a_training_clause():
    index = LineIndex.build(TANG_TEXT)
    clause = next(c for c in (normalise(x) for x in training_lines(TANG_TEXT)) if len(c) == 5)
    vocab = frozenset(TANG_TEXT) | frozenset(tang.level_chars())
    guard = LineGuard(TangWriter(vocab, FORMS["wujue"], True), index)
    for ch in clause[:4]:
        guard.advance(ch)
    assert clause[4] in guard.allowed().banned


def test_generated_lines_are_never_training_lines(tmp_path):
    """A model that copies its corpus (an n-gram mixture that is nearly all n-gram, at a low
    temperature, started on a training line's beginning) writes training lines without the
    index, and never with it."""
    poem = {"unit": "line", "forms": ["line"], "default": "line", "lines": LINES_FILE}
    path = make_bundle(tmp_path, "copier", text=CORPUS, ngram=6, ngram_weight=0.02, poem=poem)
    index = LineIndex.build(CORPUS)
    bundle = load_bundle(path)

    def lines_written(guarded: bool) -> list[str]:
        if guarded:
            index.save(path / LINES_FILE)
        plan = catalog.plan(bundle.card, bundle.vocab.chars, Path(path), length=300)
        model = StepModel.load(path, providers="cpu")

        async def go():
            scheduler = Scheduler(model)
            try:
                requests = [
                    Request(prompt=start, length=300, temperature=0.3, seed=s, rules=plan.rules)
                    for s, start in enumerate(STARTS)
                ]
                return await asyncio.gather(*(scheduler.generate(r) for r in requests))
            finally:
                await scheduler.close()

        return [normalise(r.text) for r in asyncio.run(go())]

    assert sum(index.holds(line) for line in lines_written(False)) >= 10
    assert not any(index.holds(line) for line in lines_written(True))


def test_a_ci_first_clause_is_a_line_apart_from_its_tunes_name():
    """The 全宋詞 writes `满江红：小院无人，...`: the first clause is indexed on its own, and a
    poem's first clause after its header is guarded like any other."""
    index = LineIndex.build("满江红：小院无人，正梅花开了。\n")
    assert index.holds(normalise("小院无人"))
    guard = LineGuard(Free(), index)
    for ch in "减字木兰花：小院无":
        guard.advance(ch)
    assert "人" not in guard.allowed().banned  # Free says nothing of where a clause ends
    guard.advance("人")
    assert {"，", "。"} <= guard.allowed().banned  # so the clause may not end there
