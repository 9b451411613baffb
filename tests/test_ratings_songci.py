"""The blind-rating benchmark on a 宋詞 style, and its check that no line of the bot's is a
training line: from the test 詞 bundle (random weights) and the SONG_CI excerpt as the corpus,
so nothing here needs the shared corpora."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import ratings
from bot.corpus import read_text_file, sha256_text, split
from bot.engine.bundle import load_bundle, update_card
from bot.forms import catalog, ci, script, tang
from bot.forms.lines import normalise

from .bundles import SONG_CI, make_songci_bundle

N = 3  # the bot's poems: the three commonest tunes, one each
_BLOCK = re.compile(r"## (\d+)\n\n```text\n(.*?)\n```", re.S)
_RHYME_LINE = re.compile(f"(?:[{tang.IDEOGRAPH}]+[，、])*[{tang.IDEOGRAPH}]+。")


def corpora_dir(root: Path) -> Path:
    """A corpora folder whose song_ci.txt is the excerpt the test bundle was made from."""
    folder = root / "corpora"
    folder.mkdir()
    shutil.copyfile(SONG_CI, folder / "song_ci.txt")
    return folder


def sheet_args(root: Path, out: Path) -> list[str]:
    return [
        *("sheets", "--out", str(out), "--n", str(N), "--styles", "songci"),
        *("--models", str(root / "models"), "--corpora", str(root / "corpora")),
    ]


@pytest.fixture(scope="module")
def songci(tmp_path_factory) -> Path:
    """A root with models/songci/v1 (the test bundle), corpora/ and out/, the sheet written."""
    root = tmp_path_factory.mktemp("songci")
    make_songci_bundle(root / "models")
    corpora_dir(root)
    assert ratings.main(sheet_args(root, root / "out")) == 0
    return root


def sheet_of(out: Path) -> tuple[str, dict[str, str], dict]:
    text = (out / "songci" / "sheet.md").read_text(encoding="utf-8")
    key = json.loads((out / "songci" / "key.json").read_text(encoding="utf-8"))
    return text, dict(_BLOCK.findall(text)), key


def layout_of(poem: str) -> list[tuple[int, ...]]:
    """A shown 詞's look: each line's clause lengths (a blank line: none), its title's too."""
    return [tuple(map(len, re.findall(f"[{tang.IDEOGRAPH}]+", line))) for line in poem.split("\n")]


def test_a_songci_sheet_holds_the_numbered_poems_and_nothing_that_tells_them_apart(songci):
    text, poems, key = sheet_of(songci / "out")
    numbers = [str(i) for i in range(1, 2 * N + 1)]
    assert list(poems) == numbers == list(key["poems"])
    rest = _BLOCK.sub("", text).split("\n")
    assert rest[0].startswith("# ") and not "".join(rest[1:]).strip()
    assert not re.search(r"\b(bot|poets?|seed|machine|human|form)\b", "\n".join(rest), re.I)
    for number, entry in key["poems"].items():
        assert poems[number] == entry["text"]
        if "seed" in entry:
            assert str(entry["seed"]) not in text
    sources = [entry["source"] for entry in key["poems"].values()]
    assert sources.count("bot") == sources.count("poets") == N
    assert sources != sorted(sources) and sources != sorted(sources, reverse=True)
    assert ci.HEADER not in text  # no `詞牌：` prefix on either side


def test_songci_bot_and_poets_poems_are_of_the_same_tunes_and_shown_alike(songci):
    _, poems, key = sheet_of(songci / "out")
    bundle = load_bundle(songci / "models" / "songci" / "v1")
    commonest = bundle.card["poem"]["forms"][:N]
    looks = {}
    for source in ratings.SOURCES:
        mine = {n: e for n, e in key["poems"].items() if e["source"] == source}
        assert sorted(e["form"] for e in mine.values()) == sorted(commonest)
        for number, entry in mine.items():
            title, blank, *body = poems[number].split("\n")
            assert title == entry["form"] and blank == ""
            assert body[0] and body[-1] and body.count("") <= 1  # the halves, apart
            assert all(_RHYME_LINE.fullmatch(line) for line in body if line), poems[number]
            looks[source, entry["form"]] = layout_of(poems[number])
    # The same tune's poems look the same: the poets' follow the bot's shape, laid out alike.
    assert all(looks["bot", tune] == looks["poets", tune] for tune in commonest)


def test_songci_poets_poems_come_from_the_validation_tail_shown_as_the_bot_shows_a_ci(songci):
    _, poems, key = sheet_of(songci / "out")
    bundle = load_bundle(songci / "models" / "songci" / "v1")
    corpus = ratings.read_corpus(songci / "corpora" / "song_ci.txt")
    for number, entry in key["poems"].items():
        if entry["source"] == "poets":
            first, last = entry["lines"]
            assert first == last >= key["corpus"]["validation_tail_from_line"]
            raw = corpus.text(first, last)
            assert raw.startswith(entry["form"] + ci.HEADER)
            plan = catalog.plan(bundle.card, bundle.vocab.chars, bundle.path, form=entry["form"])
            # The bot's own layout of that 詞, in the sheet's script (as the bot's are).
            assert script.to_simplified(plan.present(raw)) == poems[number]


def test_songci_sheet_checks_the_bot_lines_against_the_training_text(songci, tmp_path, capsys):
    *_, key = sheet_of(songci / "out")
    bot = [e for e in key["poems"].values() if e["source"] == "bot"]
    checked = sum(len(ratings.checked_lines(e["text"], e["form"])) for e in bot)
    assert checked > 0 and key["copies"]["lines"] == checked
    assert all("copied" in e for e in bot)
    assert all("copied" not in e for e in key["poems"].values() if e["source"] == "poets")
    # The same arguments, the same sheet; its summary printed.
    assert ratings.main(sheet_args(songci, tmp_path)) == 0
    for name in ("sheet.md", "key.json"):
        assert (tmp_path / "songci" / name).read_bytes() == (
            songci / "out" / "songci" / name
        ).read_bytes()
    found = key["copies"]["found"]
    assert (
        f"songci: {checked} bot lines, {found} found in the training text"
        in capsys.readouterr().out
    )


# --- a bot that copies: its poems made up of the training split's own 詞 ---------------------


def excerpt_tunes() -> ci.Tunes:
    return ci.Tunes.derive(split(read_text_file(SONG_CI))[0])


def training_ci() -> dict[str, tuple[int, str]]:
    """The first 詞 of each tune in the excerpt's training split in the tune's commonest
    shape (as the validation tail's are), with its line number."""
    train = split(read_text_file(SONG_CI))[0]
    tunes = excerpt_tunes()
    out: dict[str, tuple[int, str]] = {}
    for number, line in enumerate(train.split("\n")[:-1], 1):  # the last: cut by the split
        parsed = ci.parse_line(line)
        tune = tunes.lookup(parsed[0]) if parsed is not None else None
        if tune is not None and ci.check(line, tune).shape == 0:
            out.setdefault(tune.name, (number, line))
    return out


@pytest.fixture
def copying(tmp_path, monkeypatch) -> Path:
    """A root whose songci bundle's card names the excerpt as its corpus, and whose bot writes
    the training split's first 詞 of each tune asked."""
    bundle = make_songci_bundle(tmp_path / "models")
    card = load_bundle(bundle).card
    update_card(bundle, corpus={**card["corpus"], "sha256": sha256_text(read_text_file(SONG_CI))})
    corpora_dir(tmp_path)
    copies = training_ci()

    def write_bot(model, forms, seeds, themes=None):
        return [SimpleNamespace(text=copies[form][1], form=None) for form in forms]

    monkeypatch.setattr(ratings, "write_bot", write_bot)
    return tmp_path


def test_a_bot_line_that_is_a_training_line_is_recorded_in_the_key_and_counted(copying, capsys):
    assert ratings.main(sheet_args(copying, copying / "out")) == 0
    printed = capsys.readouterr().out
    *_, key = sheet_of(copying / "out")
    assert key["corpus"]["trained_on"]
    assert key["copies"]["checked_against"].startswith("the training split of song_ci.txt")
    copies = training_ci()
    total = 0
    for entry in key["poems"].values():
        if entry["source"] != "bot":
            continue
        lines = ratings.checked_lines(entry["text"], entry["form"])
        line_number = copies[entry["form"]][0]
        # Every line of it is found, the first too (after the tune's name in the corpus).
        assert [(e["line"], e["text"]) for e in entry["copied"]] == list(enumerate(lines, 1))
        # Where a line stands first in the corpus: that 詞, or one before it.
        assert all(e["corpus_line"] <= line_number for e in entry["copied"])
        assert entry["copied"][0]["corpus_line"] == line_number  # its opening, after the tune
        assert all(line in normalise(copies[entry["form"]][1]) for line in lines)
        total += len(lines)
    assert key["copies"]["found"] == key["copies"]["lines"] == total > 0
    assert f"songci: {total} bot lines, {total} found in the training text" in printed
    # The sheet shows none of it.
    assert "copied" not in (copying / "out" / "songci" / "sheet.md").read_text(encoding="utf-8")

    # `copies` finds the same in the written folder: from the corpus, and without it from the
    # bundle's line index.
    empty = copying / "no-corpora"
    empty.mkdir()
    for corpora, against in ((copying / "corpora", "song_ci.txt"), (empty, "lines.npz")):
        args = ["copies", str(copying / "out"), "--models", str(copying / "models")]
        assert ratings.main([*args, "--corpora", str(corpora)]) == 0
        summary, *lines = capsys.readouterr().out.strip().split("\n")
        assert summary.startswith(f"out/songci: {total} bot lines, {total} found")
        assert against in summary and len(lines) == total


def test_a_copyrighted_corpus_has_its_copied_lines_counted_not_written():
    corpus = ratings.read_corpus(SONG_CI)
    training = ratings.corpus_training(corpus, "simplified")
    number, line = next(iter(training_ci().values()))
    tune = line.partition(ci.HEADER)[0]
    poem = ratings.shown_ci(line, excerpt_tunes().lookup(tune), None)
    free = ratings.find_copies(poem, tune, training, copyrighted=False)
    kept = ratings.find_copies(poem, tune, training, copyrighted=True)
    assert free[0] == kept[0] and len(free[1]) == len(kept[1]) == free[0] > 0
    assert all("text" in e for e in free[1])
    assert all(set(e) == {"line", "corpus_line"} and e["corpus_line"] <= number for e in kept[1])
    # A line of no training poem is not found.
    assert ratings.find_copies(f"{tune}\n\n天地玄黄宇宙洪荒。", tune, training, False) == (1, [])


def test_a_songci_topic_sheet_shows_each_ci_under_four_themes_holding_its_own(tmp_path):
    """The topic sheet of issue 23 for 詞: each poem about a theme holds it and is shown as the
    bot shows a 詞 (the tune's name as its title), beside its twin without a theme."""
    make_songci_bundle(tmp_path / "models")
    corpora_dir(tmp_path)
    args = sheet_args(tmp_path, tmp_path / "out")
    args[args.index("--n") + 1] = "4"  # four themes to choose among
    assert ratings.main([args[0], "--topic", *args[1:]]) == 0
    _, poems, key = sheet_of(tmp_path / "out")
    assert key["kind"] == "topic" and len(poems) == 8
    bundle = load_bundle(tmp_path / "models" / "songci" / "v1")
    tunes = set(catalog.table(bundle.path, bundle.card, "tunes", "tunes").tunes)
    for number, entry in key["poems"].items():
        assert entry["theme"] in entry["options"] and len(entry["options"]) == 4
        assert poems[number].split("\n")[0] in tunes  # its title: the tune's name
        if entry["source"] == "about":
            assert entry["theme"] in poems[number]
