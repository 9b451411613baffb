"""Poems about something (`about`): the user's words, expanded into one keyword a line from
words related to them in the style's own corpus (the planning of Wang et al. 2016).

Words. For Chinese styles, the single characters of the training split and its two-character
words: pairs of characters at a word's place in a clause (a Tang clause reads 2+3 or 2+2+3,
so pairs start at 0, 2, 3 of five and 0, 2, 4, 5 of seven, and so do they in a 詞's clause of
five or seven; a lyric's pairs, and a 詞's in its clauses of other lengths, start anywhere)
seen in at least MIN_PAIR distinct clauses and far likelier together than apart (pointwise
mutual information at least PAIR_PMI), less the pairs that are nearly always part of a longer
word (为什 of 为什么, 被东 of 被东风, 水潺 of 水潺潺). For English styles, the word forms of the
training split other than function words and the plays' characters' names.

Relatedness. Two words are related when they share a unit (a couplet of Chinese verse, a
sentence of a 詞 (its clauses up to a `。`: a rhyme, the line it is shown in; not its tune's
name), two lines of a lyric, an English speech or paragraph) more often than chance: PMI
discounted by the pair's count, PMI * c / (c + DISCOUNT), so that a pair seen twice does not
outrank one seen a hundred times (`python -m benchmarks.about` measures it against plain PMI,
normalised PMI, the conditional probability and TextRank on held-out text). Identical units
are counted once (a chorus is one unit). Each word keeps its NEIGHBOURS best related words,
stored in the bundle (THEMES_FILE): words and numbers only, never a line of the corpus.

A plan is the user's words, then words related to them (and, more weakly, to the words
chosen so far), one per line and SPARE more for keywords that cannot fit a line; a Chinese
plan's words share no character, and a character's related characters that make a word with
it (天 and 涯) are its collocations, not its theme: a plan does not take them from it. The
same bundle and words always give the same plan.
"""

from __future__ import annotations

import difflib
import io
import itertools
import json
import math
import re
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bot.forms import ci, english, script
from bot.forms.hidden import hidden_at
from bot.forms.rules import Allowed, FormError
from bot.forms.tang import IDEOGRAPH, is_ideograph

THEMES_FILE = "themes.npz"
FIELD = "about"
MAX_WORDS = 5  # English words a theme may have
MAX_HAN = 12  # Chinese characters a theme may have
MAX_TYPED = 100  # characters of a theme as typed, before anything else is looked at
SPARE = 8  # plan words beyond one a line, for keywords that cannot fit a line
CLOSE_LINES = 4  # lines a poem has at least for its last to take the user's word again
NEIGHBOURS = 12  # related words kept per word
ECHO_WEIGHT = 0.3  # a candidate line's score (nats a character) for each echo of its theme
DISCOUNT = 20.0  # PMI * c / (c + DISCOUNT)
MIN_PMI = 1.0  # a related pair is at least e times likelier together than apart
MIN_TOGETHER = 3  # units a related pair shares at least (2 for English, a sparser graph)
MIN_CHAR = 3  # a character is a word when seen in at least this many units
MIN_PAIR = 5  # distinct clauses a two-character word is seen in
PAIR_PMI = 2.0  # and how much likelier its characters are together than apart
BOUND_SHARE = 0.8  # a lyric's pair this often beside one character is part of a longer word
MIN_WORD = 3  # units an English word is seen in
MAX_PLAN_WORDS = 9000  # words stored, the commonest first
SECOND_ORDER = 0.25  # weight of relatedness to the plan's own words beside the user's
SUPPORT = 2  # chosen words a word related to none of the user's must be related to
SINGLE_WEIGHT = 0.4  # a single character's score beside a two-character word's
_WORD_STARTS = {5: (0, 2, 3), 7: (0, 2, 4, 5)}
_HAN_RUN = re.compile(f"[{IDEOGRAPH}]+")
_LATIN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_SEPARATORS = re.compile(r"[\s,，、;；/·・|]+")
_MARKUP = re.compile(r"[*_`~>#<@:\[\]()\\{}=+^$%&\"!?.。！？：]")


def word_starts(length: int, tang: bool) -> Iterable[int]:
    """Where a two-character word may start in a clause of `length` characters."""
    if tang and length in _WORD_STARTS:
        return _WORD_STARTS[length]
    return range(length - 1)


# --- units of the corpus ------------------------------------------------------------------


def chinese_clauses(text: str) -> list[list[str]]:
    """Each line of a Chinese corpus as its runs of Han characters (clauses, or a lyric
    line's pieces between spaces and marks)."""
    return [_HAN_RUN.findall(line) for line in text.split("\n")]


def chinese_units(text: str, tang: bool) -> list[list[str]]:
    """A Chinese corpus's units of relatedness, each a list of runs: a Tang poem's couplets
    (one poem a line), a lyric's pairs of consecutive lines."""
    lines = [runs for runs in chinese_clauses(text) if runs]
    if tang:
        return [runs[i : i + 2] for runs in lines for i in range(0, len(runs), 2)]
    return [lines[i] + lines[i + 1] for i in range(0, len(lines) - 1, 2)] + (
        [lines[-1]] if len(lines) % 2 else []
    )


def ci_units(text: str) -> list[list[str]]:
    """A corpus of 詞's units of relatedness (one poem a line, `詞牌：text`), each a list of
    runs: each poem's sentences, its clauses up to each `。` (a rhyme), without the tune's
    name (every poem of a tune has it: it says nothing of what the poem is about)."""
    units = []
    for line in text.split("\n"):
        parsed = ci.parse_line(line)
        for sentence in (parsed[1] if parsed else line).split(ci.STOP):
            runs = _HAN_RUN.findall(sentence)
            if runs:
                units.append(runs)
    return units


def english_units(text: str, names: frozenset[str] = frozenset()) -> list[list[str]]:
    """An English corpus's units of relatedness as their content words: its paragraphs (a
    speech) where blank lines part it, else runs of four lines."""
    if text.count("\n\n") >= 3:
        pieces = text.split("\n\n")
    else:
        lines = text.split("\n")
        pieces = ["\n".join(lines[i : i + 4]) for i in range(0, len(lines), 4)]
    return [content_words(piece, names) for piece in pieces if piece.strip()]


def content_words(text: str, names: frozenset[str] = frozenset()) -> list[str]:
    """The words of `text` a theme may hold: not function words, not a play's names, of at
    least three letters."""
    return [
        w
        for w in english.words(text)
        if len(w) >= 3 and w not in english.STOP_WORDS and not english.is_name(w, names)
    ]


def chinese_words(units: Sequence[Sequence[str]], tang: bool) -> list[str]:
    """A Chinese corpus's words: its characters seen in MIN_CHAR units, and its two-character
    words (module docstring), commonest first, at most MAX_PLAN_WORDS."""
    clauses = {run for unit in units for run in unit}
    chars: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    beside: Counter[tuple[str, str]] = Counter()  # (pair, the character before or after it)
    for run in clauses:
        chars.update(run)
        for i in word_starts(len(run), tang):
            if i + 1 < len(run):
                pairs[run[i : i + 2]] += 1
                beside.update(
                    (run[i : i + 2], c) for c in (f"<{run[i - 1 : i]}", f">{run[i + 2 : i + 3]}")
                )
    total = sum(chars.values())
    found = Counter({c: n for c, n in chars.items() if n >= MIN_CHAR})
    for pair, n in pairs.items():
        if n >= MIN_PAIR and math.log(n * total / (chars[pair[0]] * chars[pair[1]])) >= PAIR_PMI:
            found[pair] = n
    # A pair nearly always beside one character is part of a longer word (为什 of 为什么, 被东
    # of 被东风, 水潺 of 水潺潺), even where a clause's shape puts a word's start there.
    for (pair, side), n in beside.items():
        if len(side) == 2 and pair in found and n >= BOUND_SHARE * pairs[pair]:
            del found[pair]
    return [w for w, _ in sorted(found.items(), key=lambda kv: (-kv[1], kv[0]))][:MAX_PLAN_WORDS]


def unit_ids(unit: Sequence[str], index: dict[str, int], chinese: bool, tang: bool) -> list[int]:
    """The ids of the words a unit holds (each once)."""
    found: set[int] = set()
    if not chinese:
        found.update(index[w] for w in unit if w in index)
        return sorted(found)
    for run in unit:
        starts = frozenset(word_starts(len(run), tang))
        for i, ch in enumerate(run):
            j = index.get(ch)
            if j is not None:
                found.add(j)
            if i in starts and i + 1 < len(run):
                j = index.get(run[i : i + 2])
                if j is not None:
                    found.add(j)
    return sorted(found)


@dataclass(frozen=True)
class Cooccurrence:
    """How often each pair of words shares a unit: pairs (a, b) both ways, their count, each
    word's count of units, and the number of units. Pairs of words that share a character
    (明月 and 月) are left out: they say nothing about each other."""

    a: np.ndarray
    b: np.ndarray
    together: np.ndarray
    counts: np.ndarray
    units: int

    @classmethod
    def count(
        cls, ids: Sequence[Sequence[int]], words: Sequence[str], chinese: bool
    ) -> Cooccurrence:
        n = len(words)
        counts = np.zeros(n, np.int64)
        chunks: list[tuple[np.ndarray, np.ndarray]] = []
        pending: list[np.ndarray] = []
        size = 0
        for unit in ids:
            if unit:
                counts[np.asarray(unit)] += 1
            if len(unit) < 2:
                continue
            a = np.asarray(unit, np.int64)
            x, y = np.meshgrid(a, a)
            keep = x != y
            pending.append(x[keep] * n + y[keep])
            size += pending[-1].size
            if size > 4_000_000:
                chunks.append(np.unique(np.concatenate(pending), return_counts=True))
                pending, size = [], 0
        if pending:
            chunks.append(np.unique(np.concatenate(pending), return_counts=True))
        if chunks:
            codes = np.concatenate([c for c, _ in chunks])
            weights = np.concatenate([w for _, w in chunks])
            codes, inverse = np.unique(codes, return_inverse=True)
            together = np.bincount(inverse, weights=weights).astype(np.int64)
        else:
            codes, together = np.zeros(0, np.int64), np.zeros(0, np.int64)
        a, b = codes // max(n, 1), codes % max(n, 1)
        if chinese and codes.size:
            chars = {w: i for i, w in enumerate(words) if len(w) == 1}
            own = np.array(
                [[chars.get(w[0], -1 - i), chars.get(w[-1], -1 - i)] for i, w in enumerate(words)]
            )
            shared = (own[a][:, :, None] == own[b][:, None, :]).any(axis=(1, 2))
            a, b, together = a[~shared], b[~shared], together[~shared]
        return cls(a, b, together, counts, sum(1 for unit in ids if unit))

    def pmi(self) -> np.ndarray:
        c = self.together.astype(np.float64)
        return np.log(c * self.units / (self.counts[self.a] * self.counts[self.b]))

    def scores(self, method: str) -> np.ndarray:
        """Each pair's relatedness by `method`: "dpmi" (the one stored: PMI * c / (c +
        DISCOUNT)), "pmi", "npmi" (PMI / -log P(a, b)) or "conditional" (P(b | a))."""
        c = self.together.astype(np.float64)
        if method == "conditional":
            return c / self.counts[self.a]
        pmi = self.pmi()
        if method == "pmi":
            return pmi
        if method == "npmi":
            return pmi / -np.log(c / self.units)
        if method == "dpmi":
            return pmi * c / (c + DISCOUNT)
        raise ValueError(f"no relatedness method {method!r}")

    def ranked(
        self, scores: np.ndarray, keep: np.ndarray, top: int
    ) -> list[list[tuple[int, float]]]:
        """Per word, its `top` best-scored partners among the pairs `keep` allows."""
        a, b, s = self.a[keep], self.b[keep], scores[keep]
        order = np.lexsort((b, -s, a))
        a, b, s = a[order], b[order], s[order]
        starts = np.searchsorted(a, np.arange(len(self.counts) + 1)).tolist()
        ends = [min(lo + top, hi) for lo, hi in itertools.pairwise(starts)]
        return [
            list(zip(b[lo:end].tolist(), s[lo:end].tolist(), strict=True))
            for lo, end in zip(starts, ends, strict=False)
        ]


# --- the stored relatedness ---------------------------------------------------------------


class Related:
    """A style's words and, for each, its NEIGHBOURS best related words (THEMES_FILE)."""

    def __init__(
        self,
        words: Sequence[str],
        counts: np.ndarray,
        neighbours: np.ndarray,
        scores: np.ndarray,
        chinese: bool,
    ) -> None:
        self.words = tuple(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.counts = np.asarray(counts, np.int64)
        self.neighbours = np.asarray(neighbours, np.int64)
        self.scores = np.asarray(scores, np.float64)
        self.chinese = chinese

    @classmethod
    def derive(cls, train_text: str, kind: str, names: Iterable[str] = ()) -> Related:
        """The relatedness of a training split: `kind` is "tang" (one regulated poem a line),
        "ci" (one 詞 a line under its tune's name), "chinese" (lines of lyrics or verse) or
        "english"; `names` are words no theme takes (a play's characters)."""
        chinese = kind != "english"
        verse = kind in ("tang", "ci")  # words start where a regulated clause's may
        if chinese:
            units = ci_units(train_text) if kind == "ci" else chinese_units(train_text, verse)
            units = list(dict.fromkeys(tuple(u) for u in units))  # a chorus counts once
            words = chinese_words(units, verse)
        else:
            units = english_units(train_text, frozenset(names))
            units = list(dict.fromkeys(tuple(u) for u in units))
            seen = Counter(w for unit in units for w in set(unit))
            common = sorted(
                (w for w, n in seen.items() if n >= MIN_WORD), key=lambda w: (-seen[w], w)
            )
            words = common[:MAX_PLAN_WORDS]
        index = {w: i for i, w in enumerate(words)}
        ids = [unit_ids(u, index, chinese, verse) for u in units]
        co = Cooccurrence.count(ids, words, chinese)
        scores = co.scores("dpmi")
        keep = (co.pmi() >= MIN_PMI) & (co.together >= (MIN_TOGETHER if chinese else 2))
        ranked = co.ranked(scores, keep, NEIGHBOURS)
        neighbours = np.full((len(words), NEIGHBOURS), -1, np.int64)
        weights = np.zeros((len(words), NEIGHBOURS), np.float64)
        for i, row in enumerate(ranked):
            for k, (j, s) in enumerate(row):
                neighbours[i, k], weights[i, k] = j, s
        return cls(words, co.counts, neighbours, weights, chinese)

    def to_bytes(self) -> bytes:
        """The file's content: words as UTF-8 text, counts, neighbour ids, scores (float16)."""
        out = io.BytesIO()
        size = np.uint16 if len(self.words) < 65535 else np.uint32
        missing = np.iinfo(size).max
        np.savez_compressed(
            out,
            words=np.frombuffer("\n".join(self.words).encode("utf-8"), np.uint8),
            counts=self.counts.astype(np.uint32),
            neighbours=np.where(self.neighbours < 0, missing, self.neighbours).astype(size),
            scores=self.scores.astype(np.float16),
            meta=np.frombuffer(json.dumps({"chinese": self.chinese}).encode(), np.uint8),
        )
        return out.getvalue()

    @classmethod
    def load(cls, path: Path) -> Related:
        """The file at `path`; ValueError when it is unreadable."""
        try:
            with np.load(path, allow_pickle=False) as data:
                words = bytes(data["words"]).decode("utf-8").split("\n")
                neighbours = data["neighbours"].astype(np.int64)
                missing = np.iinfo(data["neighbours"].dtype).max
                neighbours[neighbours == missing] = -1
                meta = json.loads(bytes(data["meta"]).decode())
                related = cls(words, data["counts"], neighbours, data["scores"], meta["chinese"])
        except (OSError, KeyError, ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"{path.name} is unreadable ({err})") from err
        if (
            related.neighbours.shape != (len(words), NEIGHBOURS)
            or (related.neighbours >= len(words)).any()
        ):
            raise ValueError(f"{path.name} does not match its words")
        return related

    def related_to(self, i: int) -> list[tuple[int, float]]:
        """Word `i`'s related words and their scores, best first."""
        return [
            (int(j), float(s))
            for j, s in zip(self.neighbours[i], self.scores[i], strict=True)
            if j >= 0
        ]

    def _ids(self, word: str) -> list[int]:
        """The entries a word stands on: itself, or (a Chinese word the corpus never pairs)
        its characters."""
        if word in self.index:
            return [self.index[word]]
        return [self.index[c] for c in word if self.chinese and c in self.index]

    def plan(
        self,
        users: Sequence[str],
        lines: int,
        fits: Iterable[str] | None = None,
        support: int = SUPPORT,
    ) -> tuple[str, ...]:
        """The user's words, then related words until there is one a line and SPARE more:
        first the words related to the user's own, each next one the best related to them
        (and at SECOND_ORDER to the words chosen), then words related only to the words
        chosen where at least `support` of those agree, each sharing no character with the
        plan's (Chinese) and one of `fits` (the words the style can write), else the
        commonest such words. One chosen word alone would lead the plan through its other
        sense: 邊塞 chose 河 (a river, or the Milky Way), and 河 alone brought the weaver
        girl and the cowherd (織女, 牽牛) into a poem of the frontier. In English a word
        related only to the plan's words comes after every word related to the user's:
        those drift to the words the plays are full of (blood, death and eyes after love's
        hate and tears), themes of their own. A Chinese plan ranks them together: its
        second-order words are two-character images of the genre (白雲, 青山) where the
        first-order ones left are often single characters of a common word (天, 中)."""
        allowed = None if fits is None else frozenset(fits)
        chosen = list(dict.fromkeys(users))

        def marks(word: str) -> set[str]:
            """What a chosen word rules out of the words after it: Chinese, its characters;
            English, its forms (love's and loves after love, king after kings)."""
            return set(word) if self.chinese else english.forms_of(word)

        taken: set[str] = set().union(*map(marks, chosen))
        score: dict[int, float] = defaultdict(float)
        agree: dict[int, int] = defaultdict(int)  # chosen words a later word is related to

        def spread(word: str, weight: float) -> None:
            ids = self._ids(word)
            reached: set[int] = set()
            for i in ids:
                for j, s in self.related_to(i):
                    if not self._compound(i, j):
                        score[j] += weight * s / len(ids)
                        reached.add(j)
            for j in reached:
                agree[j] += 1

        def usable(j: int) -> bool:
            word = self.words[j]
            if word in chosen or (allowed is not None and word not in allowed):
                return False
            if self.chinese:
                return not taken & set(word)
            return english.owner(word) not in taken

        for word in chosen:
            spread(word, 1.0)
        first = frozenset(score)  # the words related to the user's own
        want = lines + SPARE
        fallback = iter(np.argsort(-self.counts, kind="stable").tolist())
        while len(chosen) < want:
            weighted = {
                j: s * (SINGLE_WEIGHT if self.chinese and len(self.words[j]) == 1 else 1.0)
                for j, s in score.items()
                if usable(j) and (j in first or agree[j] >= support)
            }
            if weighted:
                best = min(
                    weighted, key=lambda j: (not self.chinese and j not in first, -weighted[j], j)
                )
            else:
                best = next((j for j in fallback if usable(j) and self._plain(j)), -1)
                if best < 0:
                    break
            word = self.words[best]
            chosen.append(word)
            taken |= marks(word)
            score.pop(best, None)
            spread(word, SECOND_ORDER)
        return tuple(chosen)

    def _compound(self, i: int, j: int) -> bool:
        """Whether two Chinese characters make a word of the corpus together (天 and 涯): the
        one is the other's collocation, not a keyword of its theme."""
        a, b = self.words[i], self.words[j]
        return (
            self.chinese and len(a) == len(b) == 1 and (a + b in self.index or b + a in self.index)
        )

    def _plain(self, j: int) -> bool:
        """Whether word `j` may fill a plan with nothing related left: a two-character
        Chinese word, or any English one."""
        return not self.chinese or len(self.words[j]) == 2

    def near(self, word: str, limit: int = 5) -> list[str]:
        """Known words near an unknown one, to suggest: Chinese words sharing a character
        with it; English words sharing its stem (first letters), then those spelled alike."""
        if self.chinese:
            found = [w for w in self.words if len(w) == 2 and set(w) & set(word)]
            return sorted(found, key=lambda w: (-self.counts[self.index[w]], w))[:limit]
        word = word.lower()
        for stem in range(len(word), 2, -1):
            found = [w for w in self.words if w.startswith(word[:stem]) and w != word]
            if found:
                return sorted(found, key=lambda w: (-self.counts[self.index[w]], w))[:limit]
        return difflib.get_close_matches(word, self.words, n=limit, cutoff=0.75)

    def echoes(self, users: Sequence[str]) -> frozenset[str]:
        """What echoes a theme in a line: the words best related to the user's own (for
        Chinese, their characters). Not the plan's later words: those are related to the
        words before them, and drift to what the whole corpus is full of (white clouds,
        fragrant grass), which would favour lines about anything. The user's words are
        left out (each is a keyword the poem places anyway)."""
        words: set[str] = set()
        for word in users:
            for i in self._ids(word):
                words.update(self.words[j] for j, _ in self.related_to(i))
        if self.chinese:
            return frozenset("".join(words)) - frozenset("".join(users))
        return frozenset(w.lower() for w in words) - frozenset(w.lower() for w in users)


# --- the user's words ---------------------------------------------------------------------


@dataclass(frozen=True)
class Theme:
    """A poem's theme: what the user typed, their words in the model's script, and the plan
    (their words first) the writer takes one keyword a line from."""

    typed: str
    words: tuple[str, ...]
    plan: tuple[str, ...]
    chinese: bool
    header: str = ""  # what the model reads before the poem (a 詞's tune name), not of it
    ends: str = "\n，。"  # what ends a keyword's line: a clause; a 詞's sentence ends at 。
    echoes: frozenset[str] = frozenset()  # what a line may hold to echo it (Related.echoes)

    def thread(self, skip: int = 0) -> Thread:
        """What the writers take: the plan, the user's words, and the characters (a prompt's)
        before any keyword."""
        return Thread(self.plan, frozenset(self.words), skip)

    def keywords(self, text: str) -> list[str]:
        """The plan's words the poem holds, in the order of its lines (a line's first plan
        word not already named)."""
        named: list[str] = []
        text = text[len(self.header) :] if text.startswith(self.header) else text
        for line in re.split(f"[{self.ends}]", text):
            line = line.lower() if not self.chinese else line
            words = set(english.words(line)) if not self.chinese else None
            for word in self.plan:
                here = word in line if words is None else word in words
                if here and word not in named:
                    named.append(word)
                    break
        return named

    def shown(self, text: str, output_script: str | None = None) -> tuple[str, list[str]]:
        """The theme as typed and the plan's words the poem holds, in the script asked for."""
        words = self.keywords(text)
        if output_script and self.chinese:
            words = [script.convert(w, output_script) for w in words]
        return self.typed, words


def about_line(typed: str, words: Sequence[str]) -> str:
    """The footer's line naming a theme and its plan: `about 秋風: 秋風 · 落葉 · 歸雁`."""
    return f"about {typed}: {' · '.join(words)}"


def _refuse(message: str) -> FormError:
    return FormError(message, field=FIELD)


def too_many_words(label: str, lines: int, words: Sequence[str], left: str = "") -> FormError:
    """The refusal of a theme of more words than the poem (`label`: its form's name, "" for
    any) has lines, each holding one (`left`: which lines, e.g. " after the prompt")."""
    what = f"A {label}" if label else "This poem"
    return _refuse(
        f"{what} has {lines} lines{left} and holds one word of the theme a line; give at most "
        f"{lines} words, not {len(words)} ({' · '.join(words)})."
    )


def clean(typed: str) -> str:
    """The theme as typed, checked for what no style can take (FormError naming it)."""
    if len(typed) > MAX_TYPED:
        raise _refuse(f"A theme can be at most {MAX_TYPED} characters; give a few words.")
    text = unicodedata.normalize("NFC", typed).strip()
    if hidden_at(text) or any(unicodedata.category(c) in ("Co", "Cs", "Cc") for c in text):
        raise _refuse("The theme holds control or invisible characters; type plain words.")
    if not text:
        raise _refuse("The theme is empty: give a word or a few, e.g. 秋風 or the sea.")
    odd = sorted({c for c in text if _MARKUP.match(c) or unicodedata.category(c) == "So"})
    if odd:
        shown = " ".join(odd)
        raise _refuse(f"A theme takes words only, without markup, punctuation or emoji ({shown}).")
    return text


def read(
    typed: str,
    related: Related,
    chars: frozenset[str],
    written: str | None,
    lexicon: Iterable[str] | None = None,
) -> tuple[str, ...]:
    """The user's theme as words the style can write (in its script: 秋风 -> 秋風 for a
    traditional model), or FormError naming what it cannot write and suggesting known words
    near it. Chinese: at most MAX_HAN characters, each run of two or fewer one word, longer
    runs cut into the corpus's words; English: at most MAX_WORDS words, function words left
    out, each in the style's lexicon."""
    text = clean(typed)
    tokens = [t for t in _SEPARATORS.split(text) if t]
    if written is not None:
        return _read_chinese(tokens, related, chars, written)
    return _read_english(tokens, related, lexicon)


def _read_chinese(
    tokens: list[str], related: Related, chars: frozenset[str], written: str
) -> tuple[str, ...]:
    latin = [t for t in tokens if not any(is_ideograph(c) for c in t)]
    if latin:
        raise _refuse(
            f"This style writes Chinese; {', '.join(repr(t) for t in latin)} is not a word "
            "it can write. Give the theme in Chinese characters."
        )
    runs = [run for t in tokens for run in _HAN_RUN.findall(t)]
    other = sorted({c for t in tokens for c in t if not is_ideograph(c)})
    if other:
        raise _refuse(f"A Chinese theme takes Chinese characters only, not {' '.join(other)}.")
    count = sum(len(run) for run in runs)
    if count > MAX_HAN:
        raise _refuse(f"A theme can have at most {MAX_HAN} Chinese characters, not {count}.")
    words: list[str] = []
    for run in runs:
        run = _in_script(run, related, chars, written)
        unknown = [c for c in run if c not in chars]
        if unknown:
            near = related.near(run)
            hint = f" Words it knows near it: {' · '.join(near)}." if near else ""
            raise _refuse(
                f"This style's model does not know {' '.join(unknown)} (in either script), so "
                f"it cannot write {run!r}.{hint}"
            )
        words.extend(_segment(run, related))
    return tuple(dict.fromkeys(words))


def _in_script(run: str, related: Related, chars: frozenset[str], written: str) -> str:
    """A typed run in the model's script: as typed or by OpenCC's phrase-aware conversion,
    whichever leaves fewer unknown characters, then the commoner in the corpus (黄昏 -> 黃昏
    for a traditional model that knows both 黄 and 黃); then each unknown character as the
    form of it the model knows (the commonest where there are several: 发 -> 發 or 髮)."""
    converted = script.convert(run, written)
    run = min(
        (run, converted),
        key=lambda r: (
            sum(c not in chars for c in r),
            -_count(related, r) if r in related.index else 0,
            -sum(_count(related, c) for c in r),
        ),
    )
    out = []
    for c in run:
        if c not in chars:
            forms = [f for f in script.candidates(c) if f in chars]
            if forms:
                c = min(forms, key=lambda f: (-_count(related, f), f))
        out.append(c)
    return "".join(out)


def _count(related: Related, word: str) -> int:
    i = related.index.get(word)
    return 0 if i is None else int(related.counts[i])


def _segment(run: str, related: Related) -> list[str]:
    """A run of two characters or fewer is one word; a longer one is cut into the corpus's
    two-character words where they start, single characters elsewhere."""
    if len(run) <= 2:
        return [run]
    words, i = [], 0
    while i < len(run):
        pair = run[i : i + 2]
        if len(pair) == 2 and pair in related.index:
            words.append(pair)
            i += 2
        else:
            words.append(run[i])
            i += 1
    return words


def _read_english(
    tokens: list[str], related: Related, lexicon: Iterable[str] | None
) -> tuple[str, ...]:
    han = [t for t in tokens if any(is_ideograph(c) for c in t)]
    if han:
        raise _refuse(
            f"This style writes English; {', '.join(repr(t) for t in han)} is not a word it "
            "can write. Give the theme in English words."
        )
    words = [w for t in tokens for w in _LATIN.findall(t)]
    other = sorted({c for t in tokens for c in _LATIN.sub("", t)})
    if other:
        raise _refuse(f"An English theme takes letters only, not {' '.join(other)}.")
    if len(words) > MAX_WORDS:
        raise _refuse(f"A theme can have at most {MAX_WORDS} words, not {len(words)}.")
    known = frozenset(lexicon) if lexicon is not None else frozenset(related.words)
    lowered = [w.lower() for w in words]
    meant = [w for w in lowered if w not in english.STOP_WORDS] or lowered
    unknown = [w for w in meant if w not in known]
    if unknown:
        hints = []
        for w in unknown:
            near = related.near(w)
            hints.append(f"{w!r} (try {', '.join(near)})" if near else repr(w))
        raise _refuse(f"This style has never written {'; '.join(hints)}; choose words it knows.")
    return tuple(dict.fromkeys(meant))


# --- writing the plan: one keyword a line ---------------------------------------------------


@dataclass(frozen=True)
class Thread:
    """What a writer needs of a theme: the plan's words (the user's first), which of them
    are the user's (each must appear), and how many characters (a prompt's) come before
    any keyword is placed. Writers keep the words not yet written in a list of their own
    and ask `choose` at each line's start."""

    words: tuple[str, ...]
    users: frozenset[str]
    skip: int = 0

    def choose(
        self,
        left: Sequence[str],
        lines_left: int | None,
        slots: Callable[[str, bool], list[int]],
        branch: int,
        close: bool = False,
    ) -> tuple[str, int] | None:
        """This line's keyword and where it starts: the first word of `left` (the user's
        come first) with a place in the line by every rule (`slots(word, True)`), the
        candidate `branch` taking the branch-th of those places; a user's word may bend the
        preferred rules (`slots(word, False)`) only where the lines left are no more than
        the user's words still to write. With `close` (a form where words recur, a sonnet's
        couplet or a lyric's refrain, and a poem of CLOSE_LINES or more) the last line takes
        a user's word again, where one fits and none is still to write: the poem ends on
        its subject. None: no word fits this line."""
        pending = [w for w in left if w in self.users]
        must = lines_left is not None and len(pending) >= lines_left
        if close and lines_left == 1 and not pending:
            left = [w for w in self.words if w in self.users] + list(left)
        for strict in (True, False) if must else (True,):
            for word in pending if must else left:
                found = slots(word, strict)
                if found:
                    return word, found[branch % len(found)]
        return None


class Keyed:
    """What a writer with a theme keeps, as plain attributes (so the engine's fork copies
    them): the plan's words not yet written, the line's keyword and where it starts, the line
    it was chosen for, and which of its places this candidate takes (`branch`)."""

    _now: object = None  # a writer's cached `Allowed`, where it keeps one

    def _start_theme(self, thread: Thread | None, seed: int) -> None:
        self._thread = thread
        self._unwritten = list(thread.words) if thread else []  # plan words not yet written
        self._keyword = ""  # this line's keyword ("" none)
        self._at = -1  # where it starts in the line
        self._planned = -1  # the line it was chosen for
        self._branch = seed  # which of a keyword's places this candidate takes

    def branch(self, k: int) -> None:
        """This writer is candidate `k` of its line (the engine's call at a line's start):
        the line's keyword is chosen anew, at the k-th of its places."""
        self._branch = k
        self._planned = -1
        self._now = None

    def _keyword_allowed(
        self, ch: str, tone: frozenset[str] | None, clause: int, position: int
    ) -> Allowed:
        """The keyword's character `ch` due at a clause's position, the characters of the
        position's tone (`tone`; None where it is free) preferred."""
        return Allowed(
            required=(frozenset(ch),),
            preferred=(tone,) if tone is not None else (),
            relax=f"tone at clause {clause + 1}, position {position + 1} "
            f"(the theme's {self._keyword})",
        )

    def _end_theme_line(self, written: bool = True) -> None:
        """A line ends: its keyword, if `written`, leaves the plan."""
        if written and self._keyword in self._unwritten:
            self._unwritten.remove(self._keyword)
        self._keyword, self._at, self._planned = "", -1, -1


# Where a candidate line ends: the engine's LINE_ENDS, and the 「：」 after a 詞's tune.
_LINE_ENDS = frozenset("\n，。、：")
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


class EchoJudge:
    """A writer, and for the engine's choice among a line's candidates (`penalty`: a score
    taken off its mean log-probability a character) ECHO_WEIGHT less for each echo of the
    theme the line holds (`Theme.echoes`: Chinese characters, English words). Every rule is
    the wrapped writer's: this only prefers, among candidates that keep them all, the line
    that stays nearer the theme. Everything else is the inner writer's."""

    def __init__(self, inner: Any, echoes: frozenset[str], chinese: bool) -> None:
        self.inner = inner
        self._echoes = echoes
        self._chinese = chinese
        self._line = ""  # the line being written
        self._heard = 0  # echoes in the line that ended last

    def __getattr__(self, name: str) -> Any:
        """What else the inner writer offers (its form, `last_of_line`)."""
        if name == "inner":  # not set yet (a copy being made): no recursion
            raise AttributeError(name)
        return getattr(self.inner, name)

    # What the engine asks at every step, said here rather than found through __getattr__.
    def allowed(self) -> Allowed:
        return self.inner.allowed()

    @property
    def done(self) -> bool:
        return self.inner.done

    def cut(self) -> int:
        return self.inner.cut()

    def branch(self, k: int) -> None:
        branch = getattr(self.inner, "branch", None)
        if branch is not None:
            branch(k)

    def advance(self, ch: str) -> None:
        self.inner.advance(ch)
        if ch in _LINE_ENDS:
            self._heard = self.echoes_in(self._line)
            self._line = ""
        else:
            self._line += ch

    def echoes_in(self, line: str) -> int:
        if self._chinese:
            return sum(c in self._echoes for c in line)
        return sum(w in self._echoes for w in _WORD.findall(line.lower()))

    def penalty(self) -> float:
        judge = getattr(self.inner, "penalty", None)
        inner = float(judge()) if judge is not None else 0.0
        return inner - ECHO_WEIGHT * self._heard
