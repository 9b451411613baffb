"""Which forms each style offers, and turning a request's options (form, acrostic, script,
prompt, length) into a writer for the engine, or a FormError saying what to change.

A bundle's card carries a `poem` section (written by export; `python -m export derive
--poem` adds it to an older bundle): its unit, the forms it offers, its script for Chinese
styles, and the file of its training split's words for English ones; with them, the tables
its corpus gives the writers (`poem_files`): a Chinese style's usual rhyme readings
(`readings`), a play's characters' names (`names`), the relatedness of its words that a theme
(`about`) is planned from (`themes`). A card without a table gets the writers' behaviour
without it (and no theme); a card without a section the old behaviour: a stream of `length`
characters, no forms.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import random
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.corpus import split
from bot.forms import ci, ci_writer, lyrics, script, tang, themes
from bot.forms.english import NAMES_FILE, speaker_names
from bot.forms.hidden import hidden_at, visible
from bot.forms.lines import LINES_FILE, LineGuard, LineIndex
from bot.forms.rules import FormError
from bot.forms.tang_writer import TangWriter
from bot.forms.units import UnitWriter

WORDS_FILE = "words.txt"
READINGS_FILE = tang.READINGS_FILE  # the same name for Tang's table and a lyric style's
# Heads, so lines, of an acrostic: a 詞 of the longest shipped tune (賀新郎) has 26 clauses,
# shown in 13 lines (Discord shows a poem of 20 lines whole).
MAX_ACROSTIC = 26


@dataclass(frozen=True)
class Form:
    name: str
    kind: str  # tang, english, verse, unit or ci (a tune)
    en: str  # its name in English, and in each script
    traditional: str
    simplified: str
    chars: int | None = None  # Tang forms: exactly this many characters
    min_chars: int = 1  # a length below this cannot hold the form
    max_chars: int | None = None  # the length bound when the user gives none (None: default)
    heads: tuple[int, ...] | None = None  # acrostic lengths it takes (None: any)

    def label(self, language: str) -> str:
        """The name shown for the form, in the style's language."""
        if self.kind == "ci":  # a tune's name in both scripts, the style's first
            names = (self.traditional, self.simplified)
            first, other = names if "Hant" in language else names[::-1]
            return first if first == other else f"{first} ({other})"
        if language.startswith("zh"):
            name = self.traditional if "Hant" in language else self.simplified
            return f"{name} ({self.name})"
        return f"{self.en} ({self.name})"


def _tang(name: str) -> Form:
    shape = tang.FORMS[name]
    size = shape.lines * (shape.chars + 1)
    english = f"{'five' if shape.chars == 5 else 'seven'}-character " + (
        "quatrain" if shape.lines == 4 else "regulated verse"
    )
    return Form(
        name, "tang", english, shape.traditional, shape.simplified, size, size, size, (shape.lines,)
    )


FORMS: dict[str, Form] = {
    **{name: _tang(name) for name in tang.FORMS},
    "speech": Form("speech", "english", "speech", "獨白", "独白"),
    "sonnet": Form("sonnet", "english", "sonnet", "十四行詩", "十四行诗", None, 280, 1000, (14,)),
    "couplet": Form("couplet", "english", "rhyming couplet", "對句", "对句", None, 40, 200, (2,)),
    "verse": Form("verse", "verse", "rhymed verse", "韻文", "韵文", None, 20, 240),
    "paragraph": Form("paragraph", "unit", "paragraph", "段落", "段落"),
    "line": Form("line", "unit", "line", "一行", "一行"),
}
TANG_FORMS = tuple(tang.FORMS)


def _han_share(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(tang.is_ideograph(c) for c in letters) / max(1, len(letters))


def infer_unit(text: str) -> str:
    """A corpus's unit from its text: `paragraph` where blank lines part it, else `line`."""
    return "paragraph" if text.count("\n\n") >= max(3, text.count("\n") // 200) else "line"


def poem_section(corpus_name: str, text: str, unit: str | None = None) -> dict[str, Any]:
    """The card's `poem` section for a style trained on `text` (`unit` overrides the one its
    text suggests, for an uploaded corpus); every style names its training lines' index, and
    a Tang or verse style its readings, a style of speeches its characters' names."""
    section = {**_section(corpus_name, text, unit), "lines": LINES_FILE}
    section["themes"] = themes.THEMES_FILE
    if section.get("script") and not section.get("tunes"):
        section["readings"] = READINGS_FILE
    if section.get("words"):
        section["names"] = NAMES_FILE
    return section


def poem_files(section: dict[str, Any], train_text: str) -> dict[str, str | bytes]:
    """The tables a `poem` section names, from the training split: file name -> content."""
    files: dict[str, str | bytes] = {}
    if section.get("tunes"):
        files[section["tunes"]] = ci.Tunes.derive(train_text).to_json()
    if section.get("readings"):
        if "wujue" in section["forms"]:
            poems = train_text.split("\n")
            files[section["readings"]] = tang.Readings(tang.usual_readings(poems)).to_json()
        else:
            table = lyrics.VerseReadings.derive(train_text, MAX_ACROSTIC)
            files[section["readings"]] = table.to_json()
    names = speaker_names(train_text) if section.get("names") else []
    if section.get("names"):
        files[section["names"]] = "".join(f"{n}\n" for n in names)
    if section.get("themes"):
        kind = "english" if not section.get("script") else "tang"
        if section.get("script") and "wujue" not in section["forms"]:
            kind = "ci" if section.get("tunes") else "chinese"
        files[section["themes"]] = themes.Related.derive(train_text, kind, names).to_bytes()
    return files


def write_table(path: Path, content: str | bytes) -> None:
    """A table of `poem_files` at `path`: text as UTF-8, or bytes as they are."""
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")


def _section(corpus_name: str, text: str, unit: str | None) -> dict[str, Any]:
    if corpus_name == "tang":
        # 16 candidates a line: blind readers rated tang/v3's poems 2.47 / 2.58 / 2.62 at 8 / 16
        # / 32, and a 七律 takes 0.13 / 0.20 / 0.36 s (benchmarks/results/ratings/README.md).
        return {
            "unit": "line",
            "forms": list(TANG_FORMS),
            "default": None,
            "script": "traditional",
            "candidates": 16,
        }
    if corpus_name == "shakespeare":
        return {
            "unit": "paragraph",
            "forms": ["speech", "sonnet", "couplet"],
            "default": "speech",
            "words": WORDS_FILE,
        }
    if corpus_name == "jaychou":
        return {"unit": "line", "forms": ["verse"], "default": "verse", "script": "simplified"}
    unit = unit or infer_unit(text)
    if ci.looks_like_ci(text):
        return _ci_section(text)
    if _han_share(text[:200_000]) > 0.5:
        sample = text[:20_000]
        written = "simplified" if script.to_simplified(sample) == sample else "traditional"
        return {"unit": unit, "forms": ["verse", unit], "default": "verse", "script": written}
    if re.search(r"[A-Za-z]", text) and unit == "paragraph":
        return {"unit": unit, "forms": ["speech"], "default": "speech", "words": WORDS_FILE}
    return {"unit": unit, "forms": [unit], "default": unit}


def _ci_section(text: str) -> dict[str, Any]:
    """A 詞 style's section: its tunes (from the training split, as `poem_files` writes
    them), and each tune's shapes' sizes for the form option's labels."""
    tunes = ci.Tunes.derive(split(text)[0])
    sample = text[:20_000]
    # The script fewer of its characters would change to (the 全宋詞 mixes in a few
    # traditional ones).
    changed = {
        name: sum(a != b for a, b in zip(sample, script.convert(sample, name), strict=False))
        for name in script.SCRIPTS
    }
    return {
        "unit": "line",
        "forms": tunes.names(),
        "default": None,
        "script": min(script.SCRIPTS, key=changed.__getitem__),
        "tunes": ci.TUNES_FILE,
        "sizes": {t.name: [s.chars for s in t.shapes] for t in tunes.tunes.values()},
    }


def _tune(name: str) -> Form:
    return Form(name, "ci", name, script.to_traditional(name), script.to_simplified(name))


def offered(card: dict[str, Any]) -> list[Form]:
    """The forms a style offers (none for a bundle whose card predates forms)."""
    section = card.get("poem", {})
    if section.get("tunes"):
        return [_tune(name) for name in section.get("forms", [])]
    return [FORMS[name] for name in section.get("forms", []) if name in FORMS]


def choices(card: dict[str, Any], typed: str = "") -> list[tuple[str, str]]:
    """(label, name) of the forms a style offers whose name or label contains `typed`; for
    a 詞 style its tunes, then their other shapes (`水调歌头/2`) and any by the seed (`/*`)."""
    language = str(card.get("language", "en"))
    typed = typed.casefold().strip()
    shown = [(form.label(language), form.name) for form in offered(card)]
    sizes = card.get("poem", {}).get("sizes")
    if sizes:
        tunes = [name for _, name in shown]
        shown = [(f"{label} · {sizes[name][0]}字", name) for label, name in shown]
        for name in tunes:
            other = [(f"{name}/{k}", [n]) for k, n in enumerate(sizes[name][1:], start=2)]
            if len(sizes[name]) > 1:
                other.append((f"{name}/*", sizes[name]))
            shown += [
                (f"{_tune(v).label(language)} · {'/'.join(map(str, n))}字", v) for v, n in other
            ]
    return [(label, name) for label, name in shown if typed in label.casefold()]


@functools.cache
def _lexicon(path: Path, mtime: float) -> Any:
    from bot.forms.english import Lexicon  # CMU is read on the first English poem only

    return Lexicon(path.read_text(encoding="utf-8").split())


def lexicon(bundle_path: Path, card: dict[str, Any]) -> Any:
    """The bundle's lexicon (its training split's words, with CMU's pronunciations), or None."""
    name = card.get("poem", {}).get("words")
    path = Path(bundle_path) / name if name else None
    if path is None or not path.is_file():
        return None
    return _lexicon(path, path.stat().st_mtime)


@functools.cache
def _lines(path: Path, mtime: float) -> LineIndex:
    return LineIndex.load(path)


@functools.cache
def _table(path: Path, mtime: float, kind: str) -> Any:
    if kind == "names":
        return frozenset(path.read_text(encoding="utf-8").split())
    if kind == "tang":
        return tang.Readings.load(path)
    if kind == "tunes":
        return ci.Tunes.load(path)
    if kind == "themes":
        return themes.Related.load(path)
    return lyrics.VerseReadings.load(path)


def table(bundle_path: Path, card: dict[str, Any], key: str, kind: str) -> Any:
    """The bundle's table the `poem` section names under `key`, read as `kind` ("tang",
    "verse", "names", "tunes" or "themes"; cached by file), or None for a bundle without one."""
    name = card.get("poem", {}).get(key)
    path = Path(bundle_path) / name if name else None
    if path is None or not path.is_file():
        return None
    try:
        return _table(path, path.stat().st_mtime, kind)
    except (OSError, ValueError) as err:
        raise FormError(f"This style's {name} is broken ({err}); ask the operators.") from None


def line_index(bundle_path: Path, card: dict[str, Any]) -> LineIndex | None:
    """The index of the bundle's training lines (no poem line may be one of them), or None."""
    name = card.get("poem", {}).get("lines")
    path = Path(bundle_path) / name if name else None
    if path is None or not path.is_file():
        return None
    try:
        return _lines(path, path.stat().st_mtime)
    except ValueError as err:
        raise FormError(f"This style's line index is broken ({err}); ask the operators.") from None


def _guarded(
    make: Callable[[int], Any], lines: LineIndex | None, theme: themes.Theme | None = None
) -> Callable[[int], Any]:
    """The writers `make` makes, behind the line guard (where the bundle has a line index)
    and, with a theme, judging candidate lines by their echoes of it (`themes.EchoJudge`)."""
    guarded = make if lines is None else (lambda seed: LineGuard(make(seed), lines))
    if theme is None or not theme.echoes or themes.ECHO_WEIGHT == 0:
        return guarded
    return lambda seed: themes.EchoJudge(guarded(seed), theme.echoes, theme.chinese)


_UNSAFE = re.compile(r"[\s*_`~|>#<@:\[\]()\\]")


def _clean_acrostic(acrostic: str) -> str:
    text = unicodedata.normalize("NFC", acrostic.strip())
    if hidden_at(text) or any(unicodedata.category(c) in ("Co", "Cs") for c in text):
        raise FormError("The acrostic holds control or invisible characters; type plain text.")
    if _UNSAFE.search(text):
        raise FormError(
            "The acrostic takes only the characters (or letters) lines start with: no spaces, "
            "punctuation or markup."
        )
    if len(text) > MAX_ACROSTIC:
        raise FormError(f"An acrostic can have at most {MAX_ACROSTIC} characters (lines).")
    return text


@dataclass(frozen=True)
class PoemPlan:
    """What the engine needs for one request, once the options are known to work."""

    rules: Callable[[int], Any] | None  # seed -> writer; None: a plain stream
    prompt: str  # in the model's script
    length: int  # the upper bound on characters written
    form: str | None  # the form asked for (None with Tang: the seed picks one)
    script: str | None  # convert the poem to this script for display
    couplets: bool = False  # a Tang poem: shown one couplet a line
    layout: Callable[[str], str] | None = None  # how a form lays its poem out (a 詞's)
    theme: themes.Theme | None = None  # what the poem is about, and its plan

    def present(self, text: str) -> str:
        """The poem as shown everywhere (Discord, the page, `generate`): laid out as its form
        says (a 詞 under its tune's name, a line a rhyme), in the script asked for; a Tang
        poem one couplet (two clauses, up to its 。) a line."""
        text = self.layout(text) if self.layout else text
        text = script.convert(text, self.script) if self.script else text
        return _COUPLET_END.sub("。\n", text) if self.couplets else text

    def about(self, text: str) -> tuple[str, list[str]] | None:
        """The theme as typed and the plan's words the poem holds, in the script asked for
        (the footer's `about 秋風: 秋風 · 落葉 · 歸雁 · 寒燈`); None without a theme."""
        return self.theme.shown(text, self.script) if self.theme else None


_COUPLET_END = re.compile(r"。[ \t]*(?=[^\s])")


def _heads(acrostic: str, chars: frozenset[str], written: str | None) -> tuple[frozenset[str], ...]:
    """Each head's characters: for a Chinese style, the typed character itself where the model
    knows it (棋 stays 棋, never its variant 棊; 里 stays 里, not 裏); else its forms in the
    model's script that the model knows (the likeliest is taken: 发 on a traditional model is
    發 or 髮), else any form it knows; for English, the letter in either case."""
    heads = []
    for ch in acrostic:
        if written is not None:
            if ch in chars:
                known = frozenset(ch)  # a character the model knows stays as typed
            else:
                forms = [c for c in script.candidates(ch) if c in chars]
                own = [c for c in forms if script.convert(c, written) == c]
                known = frozenset(own or forms)
        else:
            if not ("a" <= ch.lower() <= "z"):
                raise FormError(f"An English acrostic takes letters only; {ch!r} is not one.")
            known = frozenset(c for c in (ch.upper(), ch.lower()) if c in chars)
        if not known:
            raise FormError(
                f"This style's model does not know {ch!r} (in either script), so no line can "
                "start with it; choose another character."
            )
        heads.append(known)
    return tuple(heads)


def _feed(
    writer: Any,
    prompt: str,
    strict: bool = False,
    check: bool = True,
    heads: tuple[frozenset[str], ...] = (),
) -> None:
    """Feed a prompt to a writer, FormError at the first character its rules refuse (with
    `strict`, its preferred rules too; without `check`, only a prompt that is a whole poem
    already is refused: a prompt's own words are the user's business, and so are its
    repeats: a character it had already, or one of the acrostic's `heads`, is not refused
    for being banned as reused)."""
    reusable = frozenset().union(*heads)
    for i, ch in enumerate(prompt):
        allowed = writer.allowed()
        sets = (*allowed.required, *allowed.preferred) if strict else allowed.required
        banned = ch in allowed.banned and ch not in reusable and ch not in prompt[:i]
        if check and (banned or any(ch not in chars for chars in sets)):
            shown = repr(ch) if ch.strip() else "a line break" if ch == "\n" else "a space"
            raise FormError(
                f"The prompt breaks the form at character {i + 1} ({shown}); a prompt is the "
                "poem's beginning and must keep its shape."
            )
        writer.advance(ch)
        if writer.done:
            raise FormError("The prompt is a whole poem already; give the form's beginning.")


def known_text(chars: Iterable[str], text: str) -> str:
    """What a model can read of `text` (a message, say): in whichever script (as written,
    simplified or traditional) makes most of it known; only characters it knows; blank runs
    as one space or line break."""
    chars = frozenset(chars)
    text = max(
        (text, script.to_traditional(text), script.to_simplified(text)),
        key=lambda t: sum(c in chars for c in t),
    )
    kept = "".join(c if c in chars else " " if not c.strip() else "" for c in text)
    lines = [" ".join(line.split()) for line in kept.splitlines()]
    return "".join(c for c in "\n".join(line for line in lines if line) if c in chars)


_CHARSETS: dict[int, tuple[tuple[str, ...], frozenset[str]]] = {}
CHARSETS_KEPT = 64  # vocabularies whose sets are kept (a few per loaded version)


def charset(chars: Iterable[str]) -> frozenset[str]:
    """`chars` as a frozenset, the same object for the same vocabulary tuple each time: the
    writers' tables are cached by vocabulary, and a new set of 6,500 characters costs every
    such lookup a hash and a comparison of all of them (0.2 ms a Tang writer, 8 of them a plan)."""
    if isinstance(chars, frozenset):
        return chars
    if not isinstance(chars, tuple):
        return frozenset(chars)
    kept = _CHARSETS.get(id(chars))
    if kept is not None and kept[0] is chars:
        return kept[1]
    if len(_CHARSETS) >= CHARSETS_KEPT:
        _CHARSETS.clear()
    made = frozenset(chars)
    _CHARSETS[id(chars)] = (chars, made)
    return made


def plan(
    card: dict[str, Any],
    chars: Iterable[str],
    bundle_path: Path,
    *,
    form: str | None = None,
    acrostic: str | None = None,
    output_script: str | None = None,
    prompt: str = "",
    length: int | None = None,
    default_length: int = 400,
    max_length: int = 2000,
    about: str | None = None,
) -> PoemPlan:
    """The plan for a poem with these options, or FormError saying what to change."""
    section = card.get("poem")
    chars = charset(chars)
    # Bidi overrides and other invisible characters would flip or hide the poem they head.
    prompt = visible(prompt)
    if section is None:
        if form or acrostic or output_script or about:
            raise FormError(
                "This style's bundle predates forms (`python -m export derive --poem` adds "
                "them); ask without form, acrostic, script and about.",
                field="about" if about and not (form or acrostic or output_script) else None,
            )
        return PoemPlan(None, prompt, length or default_length, None, None)
    language = str(card.get("language", "en"))
    written = section.get("script")
    chinese = written is not None
    if output_script is not None:
        if output_script not in script.SCRIPTS:
            raise FormError(f"script must be one of {', '.join(script.SCRIPTS)}.")
        if not chinese:
            raise FormError("Only the Chinese styles take a script.")
    if chinese and prompt:
        converted = script.convert(prompt, written)
        if sum(c not in chars for c in converted) < sum(c not in chars for c in prompt):
            prompt = converted
    heads = _heads(_clean_acrostic(acrostic), chars, written) if acrostic else ()
    lines = line_index(bundle_path, card)
    if section.get("tunes"):
        tunes = table(bundle_path, card, "tunes", "tunes")
        if tunes is None:
            raise FormError("This style's bundle lacks its tunes; ask the operators.")
        wanted = _wanted(about, bundle_path, card, chars, written, frozenset())
        users = wanted.words if wanted else ()
        got = ci_writer.plan(tunes, chars, form, heads, prompt, length, users)
        theme = None
        if wanted is not None:  # a keyword a sentence: a line as shown (ci_writer.py)
            found = wanted.theme(got.lines, got.label)
            theme = dataclasses.replace(found, header=got.header, ends=f"\n{ci.STOP}")
        make = _guarded(got.make(theme.thread(len(got.prompt)) if theme else None), lines, theme)
        return PoemPlan(
            make, got.prompt, got.length, form, output_script, layout=got.layout, theme=theme
        )
    names = section.get("forms", [])
    name = form if form is not None else section.get("default")
    if name is not None and name not in names:
        shown = ", ".join(FORMS[n].label(language) for n in names if n in FORMS)
        raise FormError(f"This style has no form {name!r}; it offers {shown}.")
    shape = FORMS[name] if name is not None else None
    leave_out = frozenset()
    if shape is not None and shape.name in ("sonnet", "couplet"):
        leave_out = table(bundle_path, card, "names", "names") or frozenset()
    wanted = _wanted(about, bundle_path, card, chars, written, leave_out)
    if shape is None or shape.kind == "tang":
        readings = table(bundle_path, card, "readings", "tang") or tang.TABLE_READINGS
        return _plan_tang(
            chars, name, heads, prompt, length, output_script, lines, readings, wanted
        )
    if heads and shape.heads is not None and len(heads) not in shape.heads:
        raise FormError(
            f"A {shape.label(language)} acrostic needs {shape.heads[0]} characters, "
            f"not {len(heads)}."
        )
    bound = length if length is not None else (shape.max_chars or default_length)
    bound = min(bound, max_length)
    if bound < shape.min_chars:
        raise FormError(
            f"A {shape.label(language)} needs at least {shape.min_chars} characters; "
            f"ask for a longer length (up to {max_length})."
        )
    whole = bound + len(prompt)  # the characters a writer advances at most
    most = _line_count(shape, heads)
    theme = wanted.theme(most, shape.label(language)) if wanted else None
    thread = theme.thread(len(prompt)) if theme else None
    make = _guarded(
        _maker(shape, section, chars, heads, bundle_path, card, whole, thread), lines, theme
    )
    _feed(make(0), prompt, check=shape.kind not in ("english", "verse"))
    return PoemPlan(make, prompt, bound, name, output_script, theme=theme)


def prepare(card: dict[str, Any], chars: Iterable[str], bundle_path: Path) -> None:
    """Read and build, once, what `plan` needs for each of the bundle's forms (its tables,
    line index, word lists, rhyme and tone sets, theme data), so that no user's first poem of
    a style pays for it: the registry calls this in its loading thread, where the seconds it
    takes (an English lexicon: about 1.5 s) never hold up the event loop."""
    section = card.get("poem")
    if section is None:
        return
    chars = charset(chars)
    try:
        line_index(bundle_path, card)
        if section.get("tunes"):
            table(bundle_path, card, "tunes", "tunes")
        related = table(bundle_path, card, "themes", "themes")
    except FormError:
        return  # a broken table: the first poem that needs it says so
    themes_to_try: list[str | None] = [None]
    if related is not None and related.words:
        commonest = max(range(len(related.words)), key=lambda i: related.counts[i])
        themes_to_try.append(related.words[commonest])
    # A 詞 style's tunes share its tables: its commonest tune builds them.
    forms = [None] if section.get("tunes") else [None, *section.get("forms", [])]
    for form in forms:
        for about in themes_to_try:
            # A form this bundle refuses, or one that needs an acrostic, builds nothing more.
            with contextlib.suppress(FormError):
                plan(card, chars, bundle_path, form=form, about=about)


def _maker(
    shape: Form,
    section: dict[str, Any],
    chars: frozenset[str],
    heads: tuple[frozenset[str], ...],
    bundle_path: Path,
    card: dict[str, Any],
    length: int,
    thread: themes.Thread | None = None,
) -> Callable[[int], Any]:
    acrostic = "".join(sorted(h)[0] for h in heads) or None
    if shape.kind == "english":
        words = lexicon(bundle_path, card)
        if words is None:
            raise FormError("This style's bundle has no word list; its forms are unavailable.")
        from bot.forms.english_writer import EnglishWriter

        names = table(bundle_path, card, "names", "names") or frozenset()

        def english(seed: int) -> EnglishWriter:
            return EnglishWriter(words, chars, shape.name, acrostic, seed, names, length, thread)

        english(0)  # FormError for options it refuses
        return english
    if shape.kind == "verse":
        from bot.forms.lyric_writer import VerseWriter

        readings = table(bundle_path, card, "readings", "verse") or lyrics.NO_READINGS

        def verse(seed: int) -> VerseWriter:
            return VerseWriter(chars, None, acrostic, seed, readings=readings, thread=thread)

        verse(0)
        return verse
    unit = shape.name if shape.kind == "unit" else section.get("unit", "paragraph")
    return lambda seed: UnitWriter(unit, heads=heads, thread=thread, length=length, vocab=chars)


def _plan_tang(
    chars: frozenset[str],
    name: str | None,
    heads: tuple[frozenset[str], ...],
    prompt: str,
    length: int | None,
    output_script: str | None,
    lines: LineIndex | None = None,
    readings: tang.Readings = tang.TABLE_READINGS,
    wanted: _Wanted | None = None,
) -> PoemPlan:
    """Tang forms: each (form, tone start) the prompt, acrostic and theme fit; the seed picks
    one of them when no form was named."""
    names = [name] if name is not None else list(TANG_FORMS)
    if wanted is not None:
        roomy = [n for n in names if tang.FORMS[n].lines >= len(wanted.words)]
        if not roomy:
            widest = max(names, key=lambda n: tang.FORMS[n].lines)
            label = FORMS[widest].traditional if name is not None else ""
            wanted.theme(tang.FORMS[widest].lines, label)  # refuses, saying why
        names = roomy
    if heads:
        fitting = [n for n in names if tang.FORMS[n].lines == len(heads)]
        if not fitting:
            counts = sorted({tang.FORMS[n].lines for n in names})
            raise FormError(
                f"A Tang acrostic needs {' or '.join(map(str, counts))} characters "
                f"(one per line), not {len(heads)}."
            )
        names = fitting
    if length is not None:
        short = [n for n in names if FORMS[n].min_chars > length]
        names = [n for n in names if n not in short]
        if not names:
            need = min(FORMS[n].min_chars for n in short)
            raise FormError(f"That form needs {need} characters; ask for a length of {need}.")
    # Each (form, tone start) the prompt keeps every rule of; failing those, the ones whose
    # shape and acrostic it keeps (its own tones are the user's business).
    options: dict[bool, list[tuple[str, bool]]] = {True: [], False: []}
    refusal: FormError | None = None
    for n in names:
        first = tang.FORMS[n].chars
        if len(prompt.rstrip("，")) > first:
            refusal = FormError(
                f"A prompt can be at most the first line ({first} characters) of a "
                f"{FORMS[n].simplified}."
            )
            continue
        for level_start in (True, False):
            for strict in (True, False):
                try:
                    writer = TangWriter(chars, tang.FORMS[n], level_start, heads, readings)
                    _feed(writer, prompt, strict, heads=heads)
                except FormError as err:
                    if not strict:  # the shape's refusal says what to change, not a tone's
                        refusal = refusal or err
                    continue
                options[strict].append((n, level_start))
                break
    options = options[True] or options[False]
    if not options:
        raise refusal or FormError("No Tang form fits that prompt.")

    most = max(tang.FORMS[n].lines for n, _ in options)
    theme = wanted.theme(most, "") if wanted is not None else None
    thread = theme.thread(len(prompt)) if theme else None

    def make(seed: int) -> TangWriter:
        chosen = random.Random(seed).choice(options)
        form = tang.FORMS[chosen[0]]
        return TangWriter(chars, form, chosen[1], heads, readings, thread, seed)

    make = _guarded(make, lines, theme)
    size = max(FORMS[n].min_chars for n, _ in options)
    bound = size if length is None else max(length, size)
    return PoemPlan(make, prompt, bound, name, output_script, couplets=True, theme=theme)


# --- themes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Wanted:
    """A theme read from what the user typed, before the form says how many lines it has."""

    typed: str
    words: tuple[str, ...]
    related: themes.Related
    fits: frozenset[str]

    def theme(self, lines: int, label: str) -> themes.Theme:
        """The theme for a poem of `lines` lines; FormError when it has fewer lines than
        the user's words (one keyword a line)."""
        if len(self.words) > lines:
            raise themes.too_many_words(label, lines, self.words)
        plan = self.related.plan(self.words, lines, self.fits)
        echoes = self.related.echoes(self.words)
        return themes.Theme(
            self.typed.strip(), self.words, plan, self.related.chinese, echoes=echoes
        )


def _wanted(
    about: str | None,
    bundle_path: Path,
    card: dict[str, Any],
    chars: frozenset[str],
    written: str | None,
    leave_out: frozenset[str],
) -> _Wanted | None:
    """The user's theme as words the style can write, or None without one; FormError for
    a theme the style cannot take (or a bundle without the data to plan it)."""
    if about is None or about == "":
        return None
    related = table(bundle_path, card, "themes", "themes")
    if related is None:
        raise FormError(
            "`about` is not available for this style: its bundle has no theme data "
            "(`python -m export derive --poem` adds it). Ask without about.",
            field=themes.FIELD,
        )
    known = None
    if written is None:
        words = lexicon(bundle_path, card)
        known = (words.words if words is not None else frozenset(related.words)) - leave_out
    users = themes.read(about, related, chars, written, known)
    return _Wanted(about, users, related, _writable(related, chars, known))


@functools.cache
def _writable(
    related: themes.Related, chars: frozenset[str], known: frozenset[str] | None
) -> frozenset[str]:
    """The plan words a style can write: every character in its vocabulary (an English word
    in either case), and an English word in its lexicon (`known`)."""
    if related.chinese:
        return frozenset(w for w in related.words if all(c in chars for c in w))
    return frozenset(
        w
        for w in related.words
        if (known is None or w in known) and all(c in chars or c.upper() in chars for c in w)
    )


def _line_count(shape: Form, heads: tuple[frozenset[str], ...]) -> int:
    """The most lines a poem of `shape` has: the acrostic's, else the form's."""
    if heads:
        return len(heads)
    if shape.name == "sonnet":
        return 14
    if shape.name == "couplet":
        return 2
    if shape.kind == "verse":
        from bot.forms.lyric_writer import MAX_LINES

        return MAX_LINES
    if shape.name == "line":
        return 1
    from bot.forms.english_writer import SPEECH_MAX

    return SPEECH_MAX
