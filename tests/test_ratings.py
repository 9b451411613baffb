"""The blind-rating benchmark: sheets that give nothing away, and scores counted right."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from benchmarks import ratings
from benchmarks.forms import CORPUS_FILES, DEFAULT_CORPORA
from bot.forms import catalog, english, script, tang

N = 4  # the bot's poems per sheet: each Tang form once, two sonnets and two speeches
STYLES = ("tang", "shakespeare", "jaychou")
_BLOCK = re.compile(r"## (\d+)\n\n```text\n(.*?)\n```", re.S)
_TANG_LINE = re.compile(f"[{tang.IDEOGRAPH}]+，[{tang.IDEOGRAPH}]+。")

pytestmark = pytest.mark.skipif(
    not all((DEFAULT_CORPORA / f).is_file() for f in CORPUS_FILES.values()),
    reason=f"the corpora are not in {DEFAULT_CORPORA}",
)


@pytest.fixture(scope="module", autouse=True)
def few_candidates():
    """The sheets' poems written with 4 candidates a line (the styles' own are 8 to 64):
    these tests read what a sheet shows and hides, not how well its poems are written."""
    with pytest.MonkeyPatch.context() as patch:
        few = dataclasses.replace(ratings.SETTINGS, candidates=4, about_candidates=4)
        patch.setattr(ratings, "SETTINGS", few)
        yield


def write_sheets(out: Path) -> None:
    assert ratings.main(["sheets", "--out", str(out), "--n", str(N)]) == 0


@pytest.fixture(scope="module")
def sheets(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sheets")
    write_sheets(out)
    return out


def sheet_of(out: Path, style: str) -> tuple[str, dict[str, str], dict]:
    """sheet.md's text, its poems by number, and the key."""
    text = (out / style / "sheet.md").read_text(encoding="utf-8")
    key = json.loads((out / style / "key.json").read_text(encoding="utf-8"))
    return text, dict(_BLOCK.findall(text)), key


@pytest.mark.parametrize("style", STYLES)
def test_a_sheet_holds_the_numbered_poems_and_nothing_that_tells_them_apart(sheets, style):
    text, poems, key = sheet_of(sheets, style)
    numbers = [str(i) for i in range(1, 2 * N + 1)]
    assert list(poems) == numbers == list(key["poems"])
    # Nothing but a heading and the poems' blocks.
    rest = _BLOCK.sub("", text).split("\n")
    assert rest[0].startswith("# ") and not "".join(rest[1:]).strip()
    for number, entry in key["poems"].items():
        if "seed" in entry:
            assert str(entry["seed"]) not in text
        if "text" in entry:
            assert poems[number] == entry["text"]
    assert not re.search(r"\bbot\b", text, re.I)
    assert not re.search(r"\b(poets?|seed|machine|human|form)\b", "\n".join(rest), re.I)
    for form in {entry["form"] for entry in key["poems"].values()}:
        labels = {form, *(catalog.FORMS[form].label(lang) for lang in ("en", "zh-Hant", "zh"))}
        assert not [line for line in text.split("\n") if line in labels or f"({form})" in line]
    sources = [entry["source"] for entry in key["poems"].values()]
    assert sources.count("bot") == sources.count("poets") == N
    assert sources != sorted(sources) and sources != sorted(sources, reverse=True)  # shuffled


def test_each_sheet_has_its_own_order(sheets):
    """A reader of several sheets learns nothing from where the bot's poems stood in another."""
    orders = {
        tuple(e["source"] for e in sheet_of(sheets, style)[2]["poems"].values()) for style in STYLES
    }
    assert len(orders) == len(STYLES)


@pytest.mark.parametrize("style", STYLES)
def test_bot_and_poets_poems_are_shown_alike(sheets, style):
    _, poems, key = sheet_of(sheets, style)
    for source in ratings.SOURCES:
        mine = [n for n, e in key["poems"].items() if e["source"] == source]
        for number in mine:
            lines = poems[number].split("\n")
            assert all(line and line == " ".join(line.split()) for line in lines), number
            if style == "tang":  # one couplet a line
                assert all(_TANG_LINE.fullmatch(line) for line in lines), poems[number]
            elif style == "shakespeare":  # no speaker's tag heads it
                assert english.poem_lines(poems[number]) == lines
            else:
                assert script.to_simplified(poems[number]) == poems[number]
        # The same forms on both sides, poem for poem.
        forms = sorted(key["poems"][n]["form"] for n in mine)
        expected = {
            "tang": sorted(tang.FORMS),
            "shakespeare": ["sonnet", "sonnet", "speech", "speech"],
            "jaychou": ["verse"] * N,
        }
        assert forms == expected[style]
    if style == "jaychou":  # the poets' verses as long as the bot's
        sizes = {
            s: sorted(poems[n].count("\n") + 1 for n, e in key["poems"].items() if e["source"] == s)
            for s in ratings.SOURCES
        }
        assert sizes["bot"] == sizes["poets"]


def test_the_poets_poems_come_from_the_validation_tail_by_their_lines(sheets):
    for style in STYLES:
        _, poems, key = sheet_of(sheets, style)
        corpus = ratings.read_corpus(DEFAULT_CORPORA / key["corpus"]["file"])
        for number, entry in key["poems"].items():
            if entry["source"] == "poets":
                first, last = entry["lines"]
                assert first >= key["corpus"]["validation_tail_from_line"]
                raw = corpus.text(first, last)
                assert ratings.shown(raw, entry["form"], key["script"]) == poems[number]
        if style == "shakespeare":
            sonnets = [n for n, e in key["poems"].items() if e["form"] == "sonnet"]
            assert all(poems[n].count("\n") == 13 for n in sonnets)


def test_a_copyrighted_corpus_stays_out_of_the_key_and_the_sheet_comes_back(sheets, tmp_path):
    _, _, key = sheet_of(sheets, "jaychou")
    poets = [e for e in key["poems"].values() if e["source"] == "poets"]
    assert poets and all("text" not in e and len(e["lines"]) == 2 for e in poets)
    assert all("text" in e for e in key["poems"].values() if e["source"] == "bot")
    assert (sheets / "jaychou" / ".gitignore").read_text() == "sheet.md\n"
    assert not (sheets / "tang" / ".gitignore").exists()
    # A committed folder: keys (and ratings) without the Jay Chou sheet.
    folder = tmp_path / "jaychou"
    folder.mkdir()
    (folder / "key.json").write_bytes((sheets / "jaychou" / "key.json").read_bytes())
    assert ratings.main(["restore", str(tmp_path)]) == 0
    assert (folder / "sheet.md").read_bytes() == (sheets / "jaychou" / "sheet.md").read_bytes()


def test_no_bot_line_is_a_training_line_and_the_key_says_so(sheets, capsys):
    """Each bot poem's lines are looked up in its style's training split (the key records
    those found: none, the bundles' line guard keeps them out); `copies` recounts a folder."""
    for style in STYLES:
        _, poems, key = sheet_of(sheets, style)
        bot = {n: e for n, e in key["poems"].items() if e["source"] == "bot"}
        assert all(e["copied"] == [] for e in bot.values())
        lines = sum(len(ratings.checked_lines(poems[n], e["form"])) for n, e in bot.items())
        assert key["copies"]["lines"] == lines > 0 and key["copies"]["found"] == 0
        assert key["copies"]["checked_against"].startswith(
            f"the training split of {key['corpus']['file']}"
        )
    assert ratings.main(["copies", str(sheets)]) == 0
    printed = capsys.readouterr().out
    for style in STYLES:
        lines = json.loads((sheets / style / "key.json").read_text())["copies"]["lines"]
        assert f"{sheets.name}/{style}: {lines} bot lines, 0 found in the training text" in printed


def test_the_same_arguments_give_the_same_sheets(sheets, tmp_path):
    write_sheets(tmp_path)
    for style in STYLES:
        for name in ("sheet.md", "key.json"):
            assert (tmp_path / style / name).read_bytes() == (sheets / style / name).read_bytes()
    assert (tmp_path / "INSTRUCTIONS.md").read_text() == ratings.INSTRUCTIONS


def test_sheets_never_overwrite_a_sheet_that_has_ratings(tmp_path, capsys):
    (tmp_path / "tang" / "ratings").mkdir(parents=True)
    (tmp_path / "tang" / "ratings" / "ann.json").write_text("{}")
    assert ratings.main(["sheets", "--out", str(tmp_path), "--n", "1"]) == 2
    assert "holds ratings already" in capsys.readouterr().err
    assert not (tmp_path / "tang" / "key.json").exists()


# --- scoring: a made-up sheet of five poems and two readers ----------------------------------

SOURCES = {"1": "bot", "2": "poets", "3": "bot", "4": "poets", "5": "bot"}
# fluency, coherence, meaning, poeticness, human
MARKS = {
    "ann": {
        "1": (1, 1, 1, 1, False),  # per-poem mean 1
        "2": (5, 4, 4, 5, True),  # 4.5
        "3": (2, 2, 1, 1, True),  # 1.5
        "4": (4, 4, 3, 5, True),  # 4
        "5": (3, 3, 2, 2, True),  # 2.5
    },
    "bo": {
        "1": (2, 1, 1, 2, False),  # 1.5
        "2": (5, 5, 5, 5, True),  # 5
        "3": (3, 2, 2, 1, False),  # 2
        "4": (4, 3, 3, 4, False),  # 3.5
        "5": (1, 1, 1, 1, False),  # 1
    },
}


def rating_file(reader: str, marks: dict[str, tuple]) -> dict:
    fields = (*ratings.CRITERIA, "human")
    return {
        "reader": reader,
        "ratings": {n: dict(zip(fields, m, strict=True)) for n, m in marks.items()},
    }


@pytest.fixture
def rated(tmp_path) -> Path:
    folder = tmp_path / "tang"
    (folder / "ratings").mkdir(parents=True)
    key = {
        "style": "tang",
        "bundle": "tang/v1",
        "poems": {n: {"source": s, "form": "wujue"} for n, s in SOURCES.items()},
    }
    (folder / "key.json").write_text(json.dumps(key))
    for reader, marks in MARKS.items():
        (folder / "ratings" / f"{reader}.json").write_text(json.dumps(rating_file(reader, marks)))
    return tmp_path


def test_scores_are_the_means_counted_by_hand(rated, capsys):
    assert ratings.main(["score", str(rated)]) == 0
    printed = capsys.readouterr().out
    report = json.loads((rated / "results.json").read_text())
    assert (rated / "results.md").read_text() == printed.rstrip("\n") + "\n"
    (sty,) = report["styles"]
    bot, poets = sty["all"]["bot"], sty["all"]["poets"]
    # The bot's poems 1, 3, 5 by both readers: fluency 1 2 3 / 2 3 1, coherence 1 2 3 / 1 2 1,
    # meaning 1 1 2 / 1 2 1, poeticness 1 1 2 / 2 1 1; human 2 of 6.
    assert [bot[c] for c in ratings.CRITERIA] == pytest.approx([12 / 6, 10 / 6, 8 / 6, 8 / 6])
    assert bot["mean"] == pytest.approx(38 / 24)
    assert bot["human"] == pytest.approx(2 / 6)
    # The poets' 2 and 4: fluency 5 4 / 5 4, coherence 4 4 / 5 3, meaning 4 3 / 5 3,
    # poeticness 5 5 / 5 4; human 3 of 4.
    assert [poets[c] for c in ratings.CRITERIA] == pytest.approx([4.5, 4.0, 3.75, 4.75])
    assert poets["mean"] == pytest.approx(4.25) and poets["human"] == pytest.approx(0.75)
    assert sty["all"]["gap"] == pytest.approx(4.25 - 38 / 24)
    # Each reader's own: ann's bot poems' means 1, 1.5, 2.5; bo's poets' 5, 3.5.
    assert sty["per_reader"]["ann"]["bot"]["mean"] == pytest.approx(5 / 3)
    assert sty["per_reader"]["bo"]["poets"]["mean"] == pytest.approx(4.25)
    assert sty["per_reader"]["bo"]["poets"]["human"] == pytest.approx(0.5)
    # Per-poem means ann 1 4.5 1.5 4 2.5, bo 1.5 5 2 3.5 1: deviations from 2.7 and 2.6 give
    # r = 8.4 / sqrt(9.3 * 10.7); within the bot's (1 1.5 2.5 / 1.5 2 1) -0.5 / sqrt(7/6 * 0.5).
    sheet_r, bot_r = 8.4 / (9.3 * 10.7) ** 0.5, -0.5 / (7 / 6 * 0.5) ** 0.5
    (pair,) = sty["agreement"]["pairs"]
    assert pair["readers"] == ["ann", "bo"]
    assert pair["sheet"] == pytest.approx(sheet_r) and pair["bot"] == pytest.approx(bot_r)
    assert sty["agreement"]["sheet"] == pytest.approx(sheet_r)
    for shown in ("1.58", "4.25", "2.67", "33%", "75%", f"{sheet_r:.2f}", f"{bot_r:.2f}"):
        assert shown in printed


def mangle(marks: dict, poem: str, field: str | None, value) -> dict:
    data = rating_file("bo", marks)
    if field is None:
        del data["ratings"][poem]
    else:
        data["ratings"][poem][field] = value
    return data


@pytest.mark.parametrize(
    ("data", "poem", "says"),
    [
        (mangle(MARKS["bo"], "3", None, None), "poem 3", "has no rating"),
        (mangle(MARKS["bo"], "2", "fluency", 6), "poem 2", "fluency is 6"),
        (mangle(MARKS["bo"], "4", "meaning", 2.5), "poem 4", "meaning is 2.5"),
        (mangle(MARKS["bo"], "1", "human", "yes"), "poem 1", "human is 'yes'"),
        (
            {"reader": "bo", "ratings": {**rating_file("bo", MARKS["bo"])["ratings"], "9": {}}},
            "poem 9",
            "not on the sheet",
        ),
    ],
)
def test_a_bad_rating_file_is_refused_naming_the_file_and_the_poem(rated, capsys, data, poem, says):
    path = rated / "tang" / "ratings" / "bo.json"
    path.write_text(json.dumps(data))
    assert ratings.main(["score", str(rated)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and poem in err and says in err
    assert not (rated / "results.json").exists()


def test_a_file_that_is_not_json_is_named(rated, capsys):
    path = rated / "tang" / "ratings" / "ann.json"
    path.write_text('{"reader": "ann", "ratings": {"1": ')
    assert ratings.main(["score", str(rated)]) == 2
    assert f"{path}: not a JSON file" in capsys.readouterr().err


# --- topic sheets (issue 23): poems about a theme beside free ones ----------------------------


@pytest.fixture(scope="module")
def topic_sheets(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("topic")
    assert ratings.main(["sheets", "--topic", "--out", str(out), "--n", str(N)]) == 0
    return out


@pytest.mark.parametrize("style", STYLES)
def test_a_topic_sheet_shows_four_themes_under_each_poem_and_its_twin(topic_sheets, style):
    text, poems, key = sheet_of(topic_sheets, style)
    assert key["kind"] == "topic" and list(poems) == [str(i) for i in range(1, 2 * N + 1)]
    shown = dict(re.findall(r"## (\d+)\n\n```text\n.*?\n```\n\nThemes: ([^\n]*)", text, re.S))
    about = [e for e in key["poems"].values() if e["source"] == "about"]
    free = [e for e in key["poems"].values() if e["source"] == "free"]
    assert len(about) == len(free) == N
    for number, entry in key["poems"].items():
        assert shown[number].split(" · ") == entry["options"] and len(entry["options"]) == 4
        assert entry["theme"] in entry["options"] and poems[number] == entry["text"]
    for entry in about:
        twin = next(e for e in free if e["seed"] == entry["seed"])
        assert twin["options"] == entry["options"] and twin["form"] == entry["form"]
        words = [w for w in entry["theme"].split() if w not in english.STOP_WORDS]
        text = script.to_simplified(entry["text"]).lower()
        assert all(script.to_simplified(w) in text for w in words), (words, text)
    rest = _BLOCK.sub("", text)  # outside the poems, nothing tells their sources apart
    assert not re.search(r"\b(bot|seed|about|free|poets?|machine)\b", rest, re.I)
    assert all(e["copied"] == [] for e in key["poems"].values())  # all the bot's, none copied
    assert key["copies"]["found"] == 0 and key["copies"]["lines"] > 0


def test_a_topic_sheet_counts_the_themes_named(tmp_path, capsys):
    folder = tmp_path / "tang"
    (folder / "ratings").mkdir(parents=True)
    options = ["秋風", "明月", "故鄉", "酒"]
    key = {
        "kind": "topic",
        "style": "tang",
        "bundle": "tang/v1",
        "poems": {
            "1": {"source": "about", "form": "wujue", "theme": "秋風", "options": options},
            "2": {"source": "free", "form": "wujue", "theme": "秋風", "options": options},
            "3": {"source": "about", "form": "wujue", "theme": "酒", "options": options},
            "4": {"source": "free", "form": "wujue", "theme": "酒", "options": options},
        },
    }
    (folder / "key.json").write_text(json.dumps(key))
    picks = {"ann": ("秋風", "明月", "酒", "酒"), "bo": ("秋風", "故鄉", "明月", "秋風")}
    for reader, chosen in picks.items():
        marks = {str(i): (3, 2 + i % 2, 2, 2, False) for i in range(1, 5)}
        data = rating_file(reader, marks)
        for number, theme in zip(("1", "2", "3", "4"), chosen, strict=True):
            data["ratings"][number]["theme"] = theme
        (folder / "ratings" / f"{reader}.json").write_text(json.dumps(data))
    assert ratings.main(["score", str(tmp_path)]) == 0
    (sty,) = json.loads((tmp_path / "results.json").read_text())["styles"]
    assert sty["all"]["about"]["topic_right"] == pytest.approx(3 / 4)
    assert sty["all"]["free"]["topic_right"] == pytest.approx(1 / 4)
    assert sty["all"]["gap"] == pytest.approx(2.5 - 2.25)  # coherence 3 on the odd poems
    assert "75%" in capsys.readouterr().out
    data["ratings"]["2"]["theme"] = "春"
    (folder / "ratings" / "bo.json").write_text(json.dumps(data))
    assert ratings.main(["score", str(tmp_path)]) == 2
    assert "poem 2: theme is '春'; give one of 秋風 · 明月 · 故鄉 · 酒" in capsys.readouterr().err
