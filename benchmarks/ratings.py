"""Blind ratings: sheets of the bot's poems beside the poets' own, and the readers' scores.

    python -m benchmarks.ratings sheets --out DIR [--n 12] [--styles ...] [--models DIR]
    python -m benchmarks.ratings sheets --topic --out DIR [--n 12] [--styles ...]
    python -m benchmarks.ratings score DIR
    python -m benchmarks.ratings restore DIR
    python -m benchmarks.ratings copies DIR [DIR ...] [--corpora DIR] [--models DIR]

`sheets` writes, per bundled style, N poems of the bot (the bot's default options through
`bot.poems.plan_request`, seeds fixed here; Tang: the four forms in turn; Shakespeare: sonnets
and default speeches in turn; Jay Chou: the default verse; 宋詞, `--styles songci` once a model
is in models/songci: its card's tunes in turn, commonest first) beside N poems of the same forms
from the validation tail of the style's corpus (the last 10% of the cleaned corpus,
`bot.corpus.split`, whole lines only; Tang: poems of the same shape; Shakespeare: speeches of
4-14 lines, and for sonnets passages of 14 lines of one speech from a sentence's start to a
sentence's end; Jay Chou: runs of as many lines as the bot's verse beside it, never across a
line the cleaning drops, such as a song's title; 宋詞: 詞 of the same tune in the bot's poem's
shape, any of the tune's shapes where the bot's follows none). Both are shown alike: in the
style's script where that is simplified, one couplet a line for Tang, no speaker tags, no blank
or padded lines; a 詞 as the bot shows one (`ci.layout`: the tune's name as its title, a blank
line, a line per rhyme clause, the halves parted by a blank line), the poets' without their
`詞牌：`. They are shuffled (fixed shuffle seed) and numbered:

- DIR/INSTRUCTIONS.md: what readers do and the JSON they write;
- DIR/<style>/sheet.md: the one-line heading and the numbered poems, nothing else;
- DIR/<style>/key.json: each number's source ("bot" or "poets"), form, and seed or lines of the
  corpus file (1-based, first and last); for each bot poem, `copied`: its lines found verbatim
  in the training text (below), and under `copies` their count;
- DIR/<style>/ratings/: where each reader's JSON file goes.

A corpus that may not be published (`KnownCorpus.copyrighted`: the Jay Chou lyrics) never has its
text in the key: the key holds the line numbers of its poems (and the bot's poems' text), and its
folder gets a .gitignore that keeps sheet.md out of git. `score` reads only keys and ratings, so
a results folder committed without that sheet can still be recounted; `restore` writes a sheet
back from its key and the corpus file, the same sheet `sheets` wrote.

No line of the bot's is a training line: every line of every bot poem as shown (split at line
breaks, `，` and `。`, normalised and at least `MIN_CHARS` long, as `bot.forms.lines` reads the
training split for the bundle's line index; a 詞 without its title) is looked up among the
lines of the training split of the corpus file (`bot.corpus.split`, read alike, in the sheet's
script; a 詞's tune name apart from its first clause) where the file is the corpus the bundle
was trained on, else in the bundle's `lines.npz`. The key records, per bot poem, those found
(their place, the corpus line, their text unless the corpus is copyrighted) and `sheets`
prints per style "N bot lines, M found in the training text". `copies DIR ...` runs the same
check over folders written before, from their keys' bot poems (topic sheets' too), and prints
the same line per folder and style and each line found (no text for a copyrighted corpus).

`sheets --topic` writes topic sheets instead (issue 23): per style, N poems of the bot about a
theme (`about`, the themes of TOPIC_THEMES in turn) beside the same seeds' and forms' poems
without one, shuffled; under each poem four themes of the sheet (for a poem about a theme, its
own and three others; a poem without one shows its twin's four). Readers rate the four marks
as on any sheet and pick the theme the poem is about; `score` counts, per source ("about",
"free"), the four means and the share of readings that picked the theme (for the free poems,
their twin's: what chance and the seed alone give).

`score` validates every ratings file (each poem of the sheet, each criterion a whole number
1-5, `human` true or false; an error names the file and the poem) and prints per style and
source the four means, their mean, the share taken for human, the gap (poets - bot), each
reader's own, and the agreement between readers (Pearson correlation of per-poem means for each
pair, over the sheet and within the bot's poems); DIR/results.md and DIR/results.json hold the
same.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import re
import statistics
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.forms import CARD_FORMS, CORPUS_FILES, DEFAULT_CORPORA, ROOT, STYLE_FORMS, say
from benchmarks.stats import write_results
from bot.config import Settings
from bot.corpus import KNOWN_CORPORA, clean, load_corpus, read_text_file, split
from bot.engine.bundle import CARD_FILE, active_version
from bot.engine.registry import Live
from bot.engine.scheduler import Generation, Limits, Scheduler
from bot.engine.sessions import StepModel, load_model
from bot.forms import catalog, ci, english, script, tang
from bot.forms.lines import LINES_FILE, MIN_CHARS, LineIndex, training_lines
from bot.forms.rules import FormError
from bot.poems import NO_THEME, candidates_for, plan_request

CRITERIA = ("fluency", "coherence", "meaning", "poeticness")
SOURCES = ("bot", "poets")
STYLES = (*STYLE_FORMS, *CARD_FORMS)  # songci when named: no 詞 model ships yet
# The bot's poems: form of poem i is BOT_FORMS[style][i % len] (None: the style's default); a
# 詞 style's are its card's tunes in turn, commonest first (`bot_forms`).
BOT_FORMS: dict[str, tuple[str | None, ...]] = {
    "tang": STYLE_FORMS["tang"],
    "shakespeare": ("sonnet", None),
    "jaychou": (None,),
}
SEED_BASE = 220_600  # the bot's poem i has seed SEED_BASE + i, before and after a change
TOPIC = "topic"
TOPIC_SOURCES = ("about", "free")
# The themes of a topic sheet, a user's words each, in turn (N > their number repeats them).
TOPIC_THEMES: dict[str, tuple[str, ...]] = {
    "tang": ("秋風", "明月", "故鄉", "離別", "春雨", "酒", "邊塞", "梅花"),
    "shakespeare": ("love", "the sea", "winter", "death", "the king", "night", "war", "spring"),
    "jaychou": ("雨天", "离开", "青春", "故乡", "天空", "爱情", "月亮", "秋天"),
    "songci": ("秋风", "明月", "故乡", "离别", "春雨", "酒", "梅花", "江南"),
}
OPTIONS = 4  # themes shown under each poem of a topic sheet
SHUFFLE_SEED = 22
PICK_SEED = 6  # which poems of the validation tail are taken
SONNET_LINES = 14
SPEECH_LINES = (4, 14)
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
_COUPLET = re.compile("[^。]+。?")
SHEET = "sheet.md"
KEY = "key.json"
RATINGS = "ratings"

INSTRUCTIONS = """\
# Rating poems

Each folder here holds a sheet (`sheet.md`) of numbered poems. Some were written by people, some
by a machine; the sheet does not say which, and you should not try to find out (do not open
`key.json`, do not search for the lines). Read each poem as a poem of its kind and rate it.

## What to rate

Give each poem four marks from 1 to 5 and one guess.

**Fluency**: is each line well formed in its language and register?
- 1: most lines are strings of words or characters that do not make phrases.
- 2: some lines read; most are broken.
- 3: most lines read, with several awkward or broken ones.
- 4: every line reads, one or two are awkward.
- 5: every line reads naturally, as a skilled writer would write it.

**Coherence**: do the lines belong together (one scene, mood or argument)?
- 1: each line goes its own way.
- 2: a few lines connect; the whole does not.
- 3: a common thread with lines that stray.
- 4: one scene, mood or argument, a line or two off.
- 5: every line serves one whole.

**Meaning**: does the poem say something you could put in your own words?
- 1: nothing can be paraphrased.
- 2: fragments of sense, no whole.
- 3: the gist can be guessed.
- 4: clear, with an obscure spot.
- 5: clear and worth saying.

**Poeticness**: imagery, diction, sound, craft.
- 1: none.
- 2: a stray image or phrase.
- 3: some poetic moments.
- 4: good imagery and diction throughout.
- 5: fine poetry.

**Human**: do you think a person wrote it (`true`) or a machine (`false`)? Guess when unsure.

Rate every poem of a sheet; take them in the order given, and do not go back to change a mark
because of a later poem. Rate the poem as it stands, not its form (line counts and rhyme are
checked elsewhere).

## What to write

One JSON file per sheet and reader, in that sheet's `ratings/` folder, named after you
(`ratings/<your name>.json`):

```json
{
  "reader": "your name",
  "ratings": {
    "1": {"fluency": 3, "coherence": 2, "meaning": 2, "poeticness": 3, "human": false},
    "2": {"fluency": 5, "coherence": 4, "meaning": 4, "poeticness": 4, "human": true,
          "note": "optional: a word on why"}
  }
}
```

Every poem number of the sheet needs an entry; the marks are whole numbers from 1 to 5; `human`
is `true` or `false`; `note` is optional. `python -m benchmarks.ratings score DIR` checks the
file and says what to mend.

## Sheets with themes

On a sheet whose poems each show a line `Themes: A · B · C · D`, also say which of the four the
poem is about: `"theme": "B"`, written as the sheet writes it. When none seems to fit, pick the
likeliest; never leave it out.
"""


class RatingError(Exception):
    """A ratings file or a results folder that cannot be scored; the message names what."""


# --- the corpus's validation tail ------------------------------------------------------------


@dataclass(frozen=True)
class CorpusLines:
    """A corpus file's lines after the project's cleaning, by their 1-based line number in the
    file (lines the cleaning drops are absent), and where its validation tail starts."""

    file: str
    sha256: str
    copyrighted: bool
    lines: dict[int, str]
    tail_from: int  # the first line that lies wholly in the validation tail
    train_chars: int  # the training split: the cleaned text's first train_chars characters

    def text(self, first: int, last: int) -> str:
        """Lines first..last of the file, cleaned (each must survive the cleaning)."""
        missing = [n for n in range(first, last + 1) if n not in self.lines]
        if missing:
            raise RatingError(f"{self.file}: line {missing[0]} is not a line of the corpus")
        return "".join(self.lines[n] + "\n" for n in range(first, last + 1))

    def tail(self) -> list[tuple[int, str]]:
        return [(n, line) for n, line in self.lines.items() if n >= self.tail_from]


def read_corpus(path: Path) -> CorpusLines:
    """The corpus at `path` cleaned as training cleans it, line by line, so that each cleaned
    line keeps its number in the file."""
    if not path.is_file():
        raise RatingError(f"no corpus file {path}; pass --corpora with the folder that holds it")
    corpus = load_corpus(str(path))
    raw = read_text_file(path).split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    lines: dict[int, str] = {}
    for number, line in enumerate(raw, 1):
        cleaned = clean(corpus.name, line + "\n")
        if cleaned:
            lines[number] = cleaned[:-1]
    if "".join(line + "\n" for line in lines.values()) != corpus.text:
        raise RatingError(f"{path}: its cleaning is not line by line; its lines cannot be named")
    cut = len(split(corpus.text)[0])
    at, tail_from = 0, len(raw) + 1
    for number, line in lines.items():
        if at >= cut:
            tail_from = number
            break
        at += len(line) + 1
    known = KNOWN_CORPORA.get(corpus.name)
    return CorpusLines(
        path.name, corpus.sha256, bool(known and known.copyrighted), lines, tail_from, cut
    )


def _speeches(tail: list[tuple[int, str]]) -> Iterator[list[tuple[int, str]]]:
    """The tail's speeches: blocks between blank lines that open with a speaker's tag, less it."""
    blocks = itertools.groupby(tail, key=lambda item: bool(item[1].strip()))
    for filled, block in blocks:
        block = list(block)
        text = "".join(line + "\n" for _, line in block)
        if filled and len(english.poem_lines(text)) == len(block) - 1:
            yield block[1:]


def _runs(tail: list[tuple[int, str]], size: int) -> Iterator[list[tuple[int, str]]]:
    """Runs of `size` consecutive non-blank lines of the file (no line dropped between)."""
    for i in range(len(tail) - size + 1):
        run = tail[i : i + size]
        if run[-1][0] - run[0][0] == size - 1 and all(line.strip() for _, line in run):
            yield run


def kind_of(form: str) -> str:
    """A form's kind (`catalog.FORMS`); a name it does not hold is a tune's: "ci"."""
    known = catalog.FORMS.get(form)
    return known.kind if known is not None else "ci"


def tune_of(form: str, tunes: ci.Tunes | None) -> ci.Tune:
    tune = tunes.lookup(form) if tunes is not None else None
    if tune is None:
        raise RatingError(f"the tune {form!r} is not in the bundle's tune table")
    return tune


def _tunes_poems(tail: list[tuple[int, str]], tune: ci.Tune, shape: int) -> list[tuple[int, int]]:
    """The tail's 詞 of `tune` that follow one of its shapes (`shape` >= 0: that one)."""
    out = []
    for number, line in tail:
        parsed = ci.parse_line(line)
        if parsed is None or parsed[0] != tune.name:
            continue
        found = ci.check(line, tune).shape
        if found is not None and shape in (found, -1):
            out.append((number, number))
    return out


def candidates(
    corpus: CorpusLines, form: str, size: int, tunes: ci.Tunes | None = None
) -> list[tuple[int, int]]:
    """(first, last) lines of the tail's poems of `form` (verse: of `size` lines; a tune's 詞:
    of its shape `size`, -1 any)."""
    tail = corpus.tail()
    kind = kind_of(form)
    if kind == "ci":
        return _tunes_poems(tail, tune_of(form, tunes), size)
    if kind == "tang":
        return [(n, n) for n, line in tail if tang.check(line).form == form]
    if form == "speech":
        low, high = SPEECH_LINES
        return [(b[0][0], b[-1][0]) for b in _speeches(tail) if low <= len(b) <= high]
    if form == "sonnet":  # 14 lines of a speech, from a sentence's start to a sentence's end
        return [
            (b[i][0], b[i + SONNET_LINES - 1][0])
            for b in _speeches(tail)
            for i in range(len(b) - SONNET_LINES + 1)
            if (i == 0 or _SENTENCE_END.search(b[i - 1][1].rstrip()))
            and _SENTENCE_END.search(b[i + SONNET_LINES - 1][1].rstrip())
        ]
    if kind == "verse":
        return [(r[0][0], r[-1][0]) for r in _runs(tail, size)]
    raise RatingError(f"the poets' poems of form {form!r} are not known to this benchmark")


# --- showing poems alike ---------------------------------------------------------------------


def shown(text: str, form: str, written: str | None, tunes: ci.Tunes | None = None) -> str:
    """A poem as the sheet shows it, whoever wrote it: in simplified script where the style
    writes it (the safe way round; the other is ambiguous), Tang one couplet a line, English
    without a speaker's tag, every line's spaces collapsed, no blank lines; a 詞 as the bot
    shows one (`shown_ci`)."""
    kind = kind_of(form)
    if kind == "ci":
        return shown_ci(text, tune_of(form, tunes), written)
    if written == "simplified":
        text = script.to_simplified(text)
    if kind == "tang":
        lines = _COUPLET.findall("".join(text.split()))
    elif kind == "english":
        lines = english.poem_lines(text)
    else:
        lines = text.split("\n")
    return "\n".join(joined for line in lines if (joined := " ".join(line.split())))


def shown_ci(text: str, tune: ci.Tune, written: str | None) -> str:
    """A 詞 (its tune's name and `：` before it or not) as the bot lays one out (`ci.layout`):
    the tune's name as its title, a blank line, a line per rhyme clause (each `。`), the
    halves parted by a blank line where it follows one of the tune's shapes (by that shape),
    in simplified script where the style writes it."""
    found = ci.check(text, tune).shape
    shapes = range(len(tune.shapes)) if found is None else (found,)
    laid = ci.layout("".join(text.split()), tune, shapes)
    if written == "simplified":
        laid = script.to_simplified(laid)
    return "\n".join(" ".join(line.split()) for line in laid.split("\n"))


def verse_size(text: str) -> int:
    return len(text.split("\n"))


def render(heading: str, poems: dict[str, str], options: dict[str, list[str]] | None = None) -> str:
    """sheet.md: the heading and the numbered poems, each as plain lines in a text block (on a
    topic sheet followed by its four themes)."""
    out = [f"# {heading}"]
    for number, text in poems.items():
        out += ["", f"## {number}", "", "```text", text, "```"]
        if options:
            out += ["", f"Themes: {' · '.join(options[number])}"]
    return "\n".join(out) + "\n"


# --- no line of the bot's a training line -----------------------------------------------------


def checked_lines(text: str, form: str) -> list[str]:
    """A shown poem's lines as the copy check reads them: as `bot.forms.lines` reads a
    training split (split at line breaks, `，` and `。`; normalised; MIN_CHARS characters at
    least), a 詞 without its title (the tune's name)."""
    if kind_of(form) == "ci":
        text = text.partition("\n")[2]
    return list(training_lines(text))


@dataclass(frozen=True)
class TrainingText:
    """The training lines the copy check looks a bot's line up in: the training split of the
    corpus file, each normalised line with the first line of the file it stands on (`where`),
    or the bundle's line index (`index`: hashes of the same lines, no line numbers)."""

    about: str
    where: dict[str, int] | None = None
    index: LineIndex | None = None
    file: str = ""  # the corpus file `where` numbers the lines of

    def holds(self, line: str) -> bool:
        if self.where is not None:
            return line in self.where
        return self.index is not None and self.index.holds(line)


def corpus_training(corpus: CorpusLines, written: str | None, note: str = "") -> TrainingText:
    """The training split of `corpus` line by line, normalised as `bot.forms.lines` does, in
    the sheet's script where that is simplified (as the bot's poems are shown)."""
    where: dict[str, int] = {}
    at = 0
    for number, line in corpus.lines.items():
        if at >= corpus.train_chars:
            break
        part = line[: corpus.train_chars - at]  # the line the split's end cuts: its start
        at += len(line) + 1
        if written == "simplified":
            part = script.to_simplified(part)
        for flat in training_lines(part):
            where.setdefault(flat, number)
    about = f"the training split of {corpus.file} (its first {corpus.train_chars} characters)"
    return TrainingText(about + note, where=where, file=corpus.file)


def training_for(
    corpus: CorpusLines | None,
    written: str | None,
    bundle: Path,
    card: dict[str, Any] | None,
    trained_sha: str | None = None,
) -> TrainingText:
    """What the bundle was trained on: the corpus's training split where the file is that
    corpus (the sha256 of its card, or `trained_sha`, or either unknown), else the bundle's
    line index, else the file's split all the same, saying so; RatingError with neither."""
    sha = card["corpus"].get("sha256") if card is not None else trained_sha
    if corpus is not None and sha in (None, corpus.sha256):
        return corpus_training(corpus, written)
    index = catalog.line_index(bundle, card) if card is not None else None
    if index is not None:
        return TrainingText(f"the {LINES_FILE} of {bundle.parent.name}/{bundle.name}", index=index)
    if corpus is None:
        raise RatingError(f"neither the corpus nor {bundle / LINES_FILE} is at hand")
    return corpus_training(corpus, written, ", not the corpus the bundle was trained on")


def find_copies(
    text: str, form: str, training: TrainingText, copyrighted: bool
) -> tuple[int, list[dict[str, Any]]]:
    """How many lines of a shown poem the check reads, and each found in the training text:
    its place among them (1-based), the corpus file's line it stands on where known, and its
    text (normalised) unless the corpus is copyrighted."""
    lines = checked_lines(text, form)
    found = []
    for place, line in enumerate(lines, 1):
        if not training.holds(line):
            continue
        entry: dict[str, Any] = {"line": place}
        if training.where is not None:
            entry["corpus_line"] = training.where[line]
        if not copyrighted:
            entry["text"] = line
        found.append(entry)
    return len(lines), found


def copy_check(poems: list[Poem], training: TrainingText, copyrighted: bool) -> dict[str, Any]:
    """Each bot's poem's copied lines (`Poem.copied`, set here) and the key's summary."""
    total = 0
    for poem in poems:
        checked, poem.copied = find_copies(poem.text, poem.form, training, copyrighted)
        total += checked
    return {
        "checked_against": training.about,
        "lines": total,
        "found": sum(len(p.copied or ()) for p in poems),
        "what": f"each line of the bot's poems as shown (split at line breaks, ， and 。; "
        f"spaces and punctuation dropped, lower case; {MIN_CHARS} characters at least; a "
        "詞 without its title) looked up among the training lines read alike; each bot poem's "
        "`copied` lists those found: their place among its lines, the corpus file's line, "
        "and their text unless the corpus is copyrighted",
    }


def copy_summary(style: str, check: dict[str, Any]) -> str:
    return f"{style}: {check['lines']} bot lines, {check['found']} found in the training text"


# --- writing the sheets ----------------------------------------------------------------------


@dataclass
class Poem:
    source: str
    form: str
    text: str  # as shown
    seed: int | None = None
    lines: tuple[int, int] | None = None
    theme: str | None = None  # a topic sheet's poem: its theme (a free poem: its twin's)
    options: list[str] | None = None  # the themes shown under it
    copied: list[dict[str, Any]] | None = None  # the bot's: its lines found in training text


# The bot's defaults, with what the environment (.env) changes: CANDIDATES=32 python -m
# benchmarks.ratings sheets ... writes a sheet of poems chosen among 32 candidates a line.
SETTINGS = Settings.from_env()


def write_bot(
    model: StepModel,
    forms: list[str | None],
    seeds: list[int],
    themes: list[str | None] | None = None,
) -> list[Generation]:
    """The bot's poems through its own way in (`plan_request`, default options and the
    `themes` given: None, as a user who names none, the style's own where it has some;
    NO_THEME, none), one batch."""
    about = themes or [None] * len(seeds)

    async def run() -> list[Generation]:
        scheduler = Scheduler(model, Limits(max_queue=100_000, deadline=3600.0))
        live = Live(model.bundle, scheduler)
        try:
            requests = [
                plan_request(SETTINGS, live, form=f, seed=s, about=a)[1]
                for f, s, a in zip(forms, seeds, about, strict=True)
            ]
            return list(await asyncio.gather(*(scheduler.generate(r) for r in requests)))
        finally:
            await scheduler.close()

    return asyncio.run(run())


def pick_poets(
    style: str,
    corpus: CorpusLines,
    needs: list[tuple[str, int]],
    written: str | None,
    tunes: ci.Tunes | None = None,
) -> list[Poem]:
    """One poem of the tail per (form, size) needed, by a fixed draw, none overlapping another
    or showing the same text (a 詞 style's: of the tunes in `tunes`)."""
    rng = random.Random(f"{PICK_SEED}:{style}")
    pools: dict[tuple[str, int], list[tuple[int, int]]] = {}
    used: set[int] = set()
    texts: set[str] = set()
    out = []
    for form, size in needs:
        pool = pools.setdefault((form, size), candidates(corpus, form, size, tunes))
        rng.shuffle(pool)
        for first, last in pool:
            text = shown(corpus.text(first, last), form, written, tunes)
            if used.isdisjoint(range(first, last + 1)) and text not in texts:
                break
        else:
            have = sum(1 for p in out if p.form == form)
            raise RatingError(
                f"{corpus.file}'s validation tail holds only {have} more poems of form {form!r}"
                f"{f' ({size} lines)' if kind_of(form) == 'verse' else ''}; "
                "ask for fewer with --n"
            )
        used.update(range(first, last + 1))
        texts.add(text)
        out.append(Poem("poets", form, text, lines=(first, last)))
    return out


def _live_model(style: str, models: Path) -> tuple[StepModel, str, dict[str, Any]]:
    """The style's live model, its version and its card's poem section."""
    version = active_version(models, style)
    if version is None:
        raise RatingError(f"no live version of {style} in {models}")
    bundle = models / style / version
    model = load_model(bundle, providers="cpu", precision=SETTINGS.precision)
    section = model.bundle.card.get("poem")
    if section is None:
        raise RatingError(f"{bundle}: its card has no poem section (`python -m export derive`)")
    return model, version, section


def bot_forms(style: str, section: dict[str, Any], n: int) -> list[str | None]:
    """The forms asked for the bot's N poems: a 詞 style's tunes in turn, commonest first (its
    card's order), else BOT_FORMS's."""
    forms = section["forms"] if section.get("tunes") else BOT_FORMS[style]
    return [forms[i % len(forms)] for i in range(n)]


def style_corpus(style: str, version: str, card: dict[str, Any], corpora: Path) -> CorpusLines:
    """The corpus file of the style's card, under `corpora`."""
    name = card["corpus"]["name"]
    corpus = read_corpus(corpora / CORPUS_FILES.get(name, f"{name}.txt"))
    if corpus.sha256 != card["corpus"].get("sha256"):
        say(f"  note: {corpus.file} is not the corpus {style}/{version} was trained on")
    return corpus


def topic_sheet(style: str, models: Path, corpora: Path, n: int) -> tuple[dict[str, Any], str]:
    """The key and sheet.md of one style's topic sheet: N poems about a theme beside the same
    seeds' and forms' poems without one, each under four of the sheet's themes."""
    if style not in TOPIC_THEMES:
        raise RatingError(f"{style} has no topic sheet: its forms take no theme yet")
    model, version, section = _live_model(style, models)
    card = model.bundle.card
    corpus = style_corpus(style, version, card, corpora)
    written = section.get("script")
    tunes = catalog.table(model.bundle.path, card, "tunes", "tunes")
    seeds = [SEED_BASE + i for i in range(n)]
    asked = bot_forms(style, section, n)
    themes = [TOPIC_THEMES[style][i % len(TOPIC_THEMES[style])] for i in range(n)]
    rng = random.Random(f"{SHUFFLE_SEED}:{style}:{TOPIC}")
    shown_themes = sorted(set(themes))
    if len(shown_themes) < OPTIONS:
        raise RatingError(f"a topic sheet needs --n {OPTIONS} at least (four themes to choose)")
    themed = write_bot(model, asked, seeds, themes)
    free = write_bot(model, asked, seeds, [NO_THEME] * len(seeds))  # not one of its own
    poems = []
    for seed, theme, form, about, plain in zip(seeds, themes, asked, themed, free, strict=True):
        others = rng.sample([t for t in shown_themes if t != theme], OPTIONS - 1)
        options = rng.sample([theme, *others], OPTIONS)
        for source, generation in (("about", about), ("free", plain)):
            form_shown = generation.form or form or section.get("default")
            text = shown(generation.text, form_shown, written, tunes)
            poems.append(Poem(source, form_shown, text, seed, theme=theme, options=options))
    random.Random(f"{SHUFFLE_SEED}:{style}").shuffle(poems)
    training = training_for(corpus, written, model.bundle.path, card)
    key = {
        "kind": TOPIC,
        "style": style,
        "bundle": f"{style}/{version}",
        "script": written,
        "copies": copy_check(poems, training, corpus.copyrighted),
        "precision": "int8" if model.int8 else "fp32",
        "temperature": SETTINGS.default_temperature,
        "candidates": candidates_for(SETTINGS, card),
        "about_candidates": candidates_for(SETTINGS, card, about=True),
        "candidate_unit": SETTINGS.candidate_unit,
        "heading": f"{card.get('display_name', style)}: {2 * n} poems, each with four themes",
        "poems": {
            str(i): {
                "source": p.source,
                "form": p.form,
                "seed": p.seed,
                "theme": p.theme,
                "options": p.options,
                "text": p.text,
                "copied": p.copied,
            }
            for i, p in enumerate(poems, 1)
        },
    }
    options = {str(i): p.options or [] for i, p in enumerate(poems, 1)}
    sheet = render(key["heading"], {str(i): p.text for i, p in enumerate(poems, 1)}, options)
    return key, sheet


def poets_size(raw: str, text: str, form: str, tunes: ci.Tunes | None) -> int:
    """What the poets' poem beside a bot's poem must match besides its form: a verse's line
    count, a 詞's shape (-1 where the bot's follows none of its tune's: any of them)."""
    kind = kind_of(form)
    if kind == "verse":
        return verse_size(text)
    if kind == "ci":
        found = ci.check(raw, tune_of(form, tunes)).shape
        return -1 if found is None else found
    return 0


def style_sheet(style: str, models: Path, corpora: Path, n: int) -> tuple[dict[str, Any], str]:
    """The key and sheet.md of one style."""
    model, version, section = _live_model(style, models)
    card = model.bundle.card
    corpus = style_corpus(style, version, card, corpora)
    written = section.get("script")
    tunes = catalog.table(model.bundle.path, card, "tunes", "tunes")
    seeds = [SEED_BASE + i for i in range(n)]
    asked = bot_forms(style, section, n)
    default = section.get("default")
    bot, needs = [], []
    for seed, form, generation in zip(seeds, asked, write_bot(model, asked, seeds), strict=True):
        form = generation.form or form or default
        text = shown(generation.text, form, written, tunes)
        bot.append(Poem("bot", form, text, seed=seed))
        needs.append((form, poets_size(generation.text, text, form, tunes)))
    training = training_for(corpus, written, model.bundle.path, card)
    copies = copy_check(bot, training, corpus.copyrighted)
    poems = bot + pick_poets(style, corpus, needs, written, tunes)
    random.Random(f"{SHUFFLE_SEED}:{style}").shuffle(poems)  # each sheet its own order
    key = {
        "style": style,
        "bundle": f"{style}/{version}",
        "script": written,
        "corpus": {
            "file": corpus.file,
            "sha256": corpus.sha256,
            "trained_on": corpus.sha256 == card["corpus"].get("sha256"),
            "copyrighted": corpus.copyrighted,
            "lines": "1-based line numbers of the file, first and last of each poem",
            "validation_tail_from_line": corpus.tail_from,
        },
        "copies": copies,
        "precision": "int8" if model.int8 else "fp32",
        "temperature": SETTINGS.default_temperature,
        "candidates": candidates_for(SETTINGS, card),
        "candidate_unit": SETTINGS.candidate_unit,
        # A poem asked without a theme takes one of its style's own, at the candidates of one.
        "default_themes": (
            card.get("poem", {}).get("default_themes", []) if SETTINGS.default_themes else []
        ),
        "about_candidates": candidates_for(SETTINGS, card, about=True),
        "heading": f"{card.get('display_name', style)}: {2 * n} poems",
        "poems": {},
    }
    for number, poem in enumerate(poems, 1):
        entry: dict[str, Any] = {"source": poem.source, "form": poem.form}
        if poem.seed is not None:
            entry["seed"] = poem.seed
        if poem.lines is not None:
            entry["lines"] = list(poem.lines)
        if poem.source == "bot" or not corpus.copyrighted:
            entry["text"] = poem.text
        if poem.copied is not None:
            entry["copied"] = poem.copied
        key["poems"][str(number)] = entry
    sheet = render(key["heading"], {str(i): p.text for i, p in enumerate(poems, 1)})
    return key, sheet


def write_sheet(folder: Path, key: dict[str, Any], sheet: str) -> None:
    (folder / RATINGS).mkdir(parents=True, exist_ok=True)
    (folder / KEY).write_text(json.dumps(key, indent=2, ensure_ascii=False) + "\n", "utf-8")
    (folder / SHEET).write_text(sheet, encoding="utf-8")
    if key.get("corpus", {}).get("copyrighted"):  # it holds the corpus's text: never commit it
        (folder / ".gitignore").write_text(f"{SHEET}\n", encoding="utf-8")


def sheets(
    out: Path, n: int, styles: list[str], models: Path, corpora: Path, topic: bool = False
) -> None:
    for style in styles:
        if any((out / style / RATINGS).glob("*.json")):
            raise RatingError(
                f"{out / style / RATINGS} holds ratings already; a new sheet would not match "
                "them. Choose another --out."
            )
    out.mkdir(parents=True, exist_ok=True)
    (out / "INSTRUCTIONS.md").write_text(INSTRUCTIONS, encoding="utf-8")
    for style in styles:
        if topic:
            key, sheet = topic_sheet(style, models, corpora, n)
        else:
            key, sheet = style_sheet(style, models, corpora, n)
        write_sheet(out / style, key, sheet)
        say(f"{style}: {out / style / SHEET} ({len(key['poems'])} poems), key in {KEY}")
        say(copy_summary(style, key["copies"]))


def restore(out: Path, corpora: Path) -> None:
    """Write each style's sheet.md back from its key and the corpus file."""
    for key_path in sorted(out.glob(f"*/{KEY}")):
        key = json.loads(key_path.read_text(encoding="utf-8"))
        corpus = read_corpus(corpora / key["corpus"]["file"])
        if corpus.sha256 != key["corpus"]["sha256"]:
            raise RatingError(f"{corpus.file} is not the corpus {key_path} was drawn from")
        poems = {}
        for number, entry in key["poems"].items():
            text = entry.get("text")
            if text is None:
                raw = corpus.text(*entry["lines"])
                text = shown(raw, entry["form"], key["script"])
            poems[number] = text
        options = {n: e["options"] for n, e in key["poems"].items() if e.get("options")}
        sheet = render(key["heading"], poems, options or None)
        (key_path.parent / SHEET).write_text(sheet, encoding="utf-8")
        say(f"{key_path.parent / SHEET}: {len(poems)} poems")


def key_training(key: dict[str, Any], corpora: Path, models: Path) -> tuple[TrainingText, bool]:
    """What a key's bundle was trained on (`training_for`: the corpus file under `corpora`, or
    the bundle's line index under `models`), and whether that corpus is copyrighted."""
    bundle = models / key["bundle"]
    card_path = bundle / CARD_FILE
    card = json.loads(card_path.read_text(encoding="utf-8")) if card_path.is_file() else None
    recorded = key.get("corpus", {})  # a topic sheet's key names no corpus: its card's
    name = card["corpus"]["name"] if card is not None else key["style"]
    path = corpora / (recorded.get("file") or CORPUS_FILES.get(name, f"{name}.txt"))
    corpus = read_corpus(path) if path.is_file() else None
    trained_sha = recorded.get("sha256") if recorded.get("trained_on") else None
    training = training_for(corpus, key.get("script"), bundle, card, trained_sha)
    known = KNOWN_CORPORA.get(name)
    copyrighted = bool(
        recorded.get("copyrighted")
        or (corpus is not None and corpus.copyrighted)
        or (known is not None and known.copyrighted)
    )
    return training, copyrighted


def copies(folders: list[Path], corpora: Path, models: Path) -> list[dict[str, Any]]:
    """The copy check over the bot's poems of sheet folders written before (from their keys),
    printed per folder and style, with each line found (its text unless copyrighted)."""
    out = []
    for folder in folders:
        key_paths = sorted(folder.glob(f"*/{KEY}"))
        if not key_paths:
            raise RatingError(f"no {KEY} under {folder}")
        for key_path in key_paths:
            key = json.loads(key_path.read_text(encoding="utf-8"))
            training, copyrighted = key_training(key, corpora, models)
            bot = {
                number: Poem(e["source"], e["form"], e["text"])
                for number, e in key["poems"].items()
                if e["source"] != "poets"
            }
            check = copy_check(list(bot.values()), training, copyrighted)
            say(f"{folder.name}/{copy_summary(key['style'], check)} ({training.about})")
            for number, poem in bot.items():
                for entry in poem.copied or ():
                    text = f": {entry['text']}" if "text" in entry else ""
                    line = entry.get("corpus_line")
                    where = f" ({training.file} line {line})" if line else ""
                    say(f"  poem {number}, line {entry['line']}{text}{where}")
            found = {n: p.copied for n, p in bot.items() if p.copied}
            out.append({"run": folder.name, "style": key["style"], **check, "copied": found})
    return out


# --- scoring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reader:
    name: str
    file: str
    ratings: dict[str, dict[str, Any]]  # poem number -> the four marks and `human`

    def mean(self, number: str) -> float:
        return statistics.fmean(self.ratings[number][c] for c in CRITERIA)


def read_ratings(
    path: Path, numbers: list[str], options: dict[str, list[str]] | None = None
) -> Reader:
    """One reader's file, checked against the sheet's poem numbers (and on a topic sheet,
    each poem's `theme` against the four it showed)."""

    def fail(what: str) -> RatingError:
        return RatingError(f"{path}: {what}")

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise fail(f"not a JSON file ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("ratings"), dict):
        raise fail('expected {"reader": "name", "ratings": {"1": {...}, ...}}')
    reader = data.get("reader")
    if not isinstance(reader, str) or not reader.strip():
        raise fail('"reader" must be the reader\'s name')
    ratings = data["ratings"]
    for number in ratings:
        if number not in numbers:
            raise fail(f"poem {number} is not on the sheet (it has poems 1-{len(numbers)})")
    for number in numbers:
        if number not in ratings:
            raise fail(f"poem {number} has no rating (the sheet has poems 1-{len(numbers)})")
        marks = ratings[number]
        if not isinstance(marks, dict):
            raise fail(f"poem {number}: expected an object of the four marks and human")
        for criterion in CRITERIA:
            value = marks.get(criterion)
            if type(value) is not int or not 1 <= value <= 5:
                raise fail(f"poem {number}: {criterion} is {value!r}; give a whole number 1-5")
        if type(marks.get("human")) is not bool:
            raise fail(
                f"poem {number}: human is {marks.get('human')!r}; give true (a person wrote it) "
                "or false (a machine did)"
            )
        if options is not None and marks.get("theme") not in options[number]:
            shown_options = " · ".join(options[number])
            raise fail(
                f"poem {number}: theme is {marks.get('theme')!r}; give one of {shown_options}"
            )
        extra = set(marks) - {*CRITERIA, "human", "note", *(("theme",) if options else ())}
        if extra:
            raise fail(f"poem {number}: unknown field {sorted(extra)[0]!r}")
    return Reader(reader.strip(), path.name, ratings)


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r, or None where it is undefined (fewer than two poems, or a constant)."""
    try:
        return statistics.correlation(xs, ys)
    except statistics.StatisticsError:
        return None


def means(readers: list[Reader], numbers: list[str]) -> dict[str, Any]:
    """The four means over these readers and poems, their mean, and the share called human."""
    out: dict[str, Any] = {
        c: statistics.fmean(r.ratings[n][c] for r in readers for n in numbers) for c in CRITERIA
    }
    out["mean"] = statistics.fmean(out[c] for c in CRITERIA)
    out["human"] = statistics.fmean(r.ratings[n]["human"] for r in readers for n in numbers)
    out["poems"] = len(numbers)
    return out


def sources(key: dict[str, Any]) -> tuple[str, ...]:
    return TOPIC_SOURCES if key.get("kind") == TOPIC else SOURCES


def by_source(readers: list[Reader], key: dict[str, Any]) -> dict[str, Any]:
    """Per source, the means (and on a topic sheet, the share of readings that picked the
    poem's theme); the gap: poets - bot, or on a topic sheet about - free."""
    kinds = sources(key)
    numbers = {s: [n for n, e in key["poems"].items() if e["source"] == s] for s in kinds}
    out: dict[str, Any] = {s: means(readers, numbers[s]) for s in kinds}
    if key.get("kind") == TOPIC:
        for source in kinds:
            picks = [
                r.ratings[n]["theme"] == key["poems"][n]["theme"]
                for r in readers
                for n in numbers[source]
            ]
            out[source]["topic_right"] = statistics.fmean(picks)
        out["gap"] = out["about"]["mean"] - out["free"]["mean"]
    else:
        out["gap"] = out["poets"]["mean"] - out["bot"]["mean"]
    return out


def agreement(readers: list[Reader], key: dict[str, Any]) -> dict[str, Any]:
    """Pearson's r of per-poem means for each pair of readers, over the sheet and within the
    bot's poems, and their averages over the pairs where defined."""
    everything = list(key["poems"])
    bot = [n for n in everything if key["poems"][n]["source"] == "bot"]
    pairs = []
    for a, b in itertools.combinations(readers, 2):
        pairs.append(
            {
                "readers": [a.name, b.name],
                "sheet": pearson([a.mean(n) for n in everything], [b.mean(n) for n in everything]),
                "bot": pearson([a.mean(n) for n in bot], [b.mean(n) for n in bot]),
            }
        )

    def average(part: str) -> float | None:
        values = [p[part] for p in pairs if p[part] is not None]
        return statistics.fmean(values) if values else None

    return {"pairs": pairs, "sheet": average("sheet"), "bot": average("bot")}


def score_style(folder: Path) -> dict[str, Any] | None:
    """One style's results from its key and ratings, or None when nobody rated it yet."""
    key_path = folder / KEY
    try:
        key = json.loads(key_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise RatingError(f"{key_path}: cannot read the key ({err})") from None
    numbers = list(key["poems"])
    options = {n: e["options"] for n, e in key["poems"].items()} if key.get("kind") else None
    files = sorted((folder / RATINGS).glob("*.json"))
    readers = [read_ratings(p, numbers, options) for p in files]
    if not readers:
        return None
    names = [r.name for r in readers]
    for name in names:
        if names.count(name) > 1:
            files = ", ".join(r.file for r in readers if r.name == name)
            raise RatingError(f"{folder / RATINGS}: reader {name!r} rated twice ({files})")
    return {
        "style": key["style"],
        "bundle": key["bundle"],
        "kind": key.get("kind", "poets"),
        "readers": names,
        "all": by_source(readers, key),
        "per_reader": {r.name: by_source([r], key) for r in readers},
        "agreement": agreement(readers, key),
    }


def score(out: Path) -> dict[str, Any]:
    folders = sorted(p.parent for p in out.glob(f"*/{KEY}"))
    if not folders:
        raise RatingError(f"no {KEY} under {out}: write the sheets first (`sheets --out {out}`)")
    styles, unrated = [], []
    for folder in folders:
        got = score_style(folder)
        if got is None:
            unrated.append(folder.name)
        else:
            styles.append(got)
    if not styles:
        raise RatingError(f"no ratings yet: readers' files go in {out}/<style>/{RATINGS}/")
    return {"styles": styles, "unrated": unrated}


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "—" if value is None else format(value, fmt)


def markdown(report: dict[str, Any]) -> str:
    out = [
        "# Blind ratings",
        "",
        "Means of the readers' marks (1-5) per source; `mean` is the mean of the four; `human` "
        "the share of readings that took the poem for a person's; the gap is the poets' mean "
        "less the bot's. Agreement: Pearson's r of two readers' per-poem means (the mean of "
        "the four marks), over the whole sheet and within the bot's poems.",
    ]
    head = "| " + " | ".join(CRITERIA) + " | mean | human |"
    for sty in report["styles"]:
        out += [
            "",
            f"## {sty['style']} ({sty['bundle']}), {len(sty['readers'])} readers",
            "",
            "| source | reader " + head,
            "|---|---|" + "---:|" * (len(CRITERIA) + 2),
        ]
        topic = sty.get("kind") == TOPIC
        if topic:
            out[-2] += " theme named |"
            out[-1] += "---:|"
        rows = [("all", sty["all"]), *sty["per_reader"].items()]
        for source in TOPIC_SOURCES if topic else SOURCES:
            for reader, got in rows:
                row = got[source]
                cells = [_num(row[c]) for c in (*CRITERIA, "mean")] + [f"{row['human']:.0%}"]
                if topic:
                    cells.append(f"{row['topic_right']:.0%}")
                out.append(f"| {source} | {reader} | " + " | ".join(cells) + " |")
        gaps = ", ".join(f"{r} {_num(g['gap'])}" for r, g in sty["per_reader"].items())
        what = "about - free" if topic else "poets - bot"
        out += ["", f"Gap ({what}): {_num(sty['all']['gap'])} ({gaps})."]
        if topic:
            out.append(
                "Theme named: the share of readings that picked the poem's theme among its "
                "four (a free poem: its twin's theme, which it was not written about)."
            )
        agree = sty["agreement"]
        if agree["pairs"]:
            pairs = "; ".join(
                f"{a} / {b}: {_num(p['sheet'])} over the sheet, {_num(p['bot'])} within the bot's"
                for p in agree["pairs"]
                for a, b in [p["readers"]]
            )
            out.append(
                f"Agreement: {_num(agree['sheet'])} over the sheet, {_num(agree['bot'])} within "
                f"the bot's poems, averaged over pairs ({pairs}; —: a reader gave all one mark)."
            )
        else:
            out.append("Agreement: needs two readers.")
    if report["unrated"]:
        out += ["", f"Not rated yet: {', '.join(report['unrated'])}."]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ratings", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    make = sub.add_parser("sheets", help="write the sheets, keys and instructions")
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--n", type=int, default=12, help="the bot's poems per sheet (and poets')")
    make.add_argument("--styles", nargs="+", choices=STYLES, default=list(STYLE_FORMS))
    make.add_argument("--models", type=Path, default=ROOT / "models")
    make.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    make.add_argument(
        "--topic", action="store_true", help="topic sheets: poems about a theme beside free ones"
    )
    rate = sub.add_parser("score", help="score the readers' ratings")
    rate.add_argument("dir", type=Path)
    back = sub.add_parser("restore", help="write the sheets back from the keys and corpora")
    back.add_argument("dir", type=Path)
    back.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    check = sub.add_parser(
        "copies", help="count the bot's lines of sheet folders found in the training text"
    )
    check.add_argument("dirs", type=Path, nargs="+")
    check.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    check.add_argument("--models", type=Path, default=ROOT / "models")
    args = p.parse_args(argv)
    try:
        if args.command == "sheets":
            if args.n < 1:
                raise RatingError("--n must be at least 1")
            sheets(args.out, args.n, args.styles, args.models, args.corpora, args.topic)
            say(f"instructions for readers: {args.out / 'INSTRUCTIONS.md'}")
        elif args.command == "restore":
            restore(args.dir, args.corpora)
        elif args.command == "copies":
            copies(args.dirs, args.corpora, args.models)
        else:
            report = score(args.dir)
            text = markdown(report)
            write_results(args.dir, "results", report, text)
            say(text)
    except (RatingError, FormError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
