"""宋詞 to a tune: the 詞林正韻 (bot/forms/cilin.py), tunes read from the poets' own poems
(bot/forms/ci.py), and the writer (bot/forms/ci_writer.py) keeping each tune's shape, rhymes
and tones through the engine, over many seeds, on a random-weight model of 207 詞 of the 20
commonest tunes (tests/bundles.py's SONG_CI), with a theme (`about`) a keyword a line too."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.corpus import split
from bot.engine.bundle import load_bundle
from bot.engine.scheduler import Limits, Request, Scheduler
from bot.engine.sessions import StepModel
from bot.forms import catalog, ci, ci_writer, cilin, tang, themes
from bot.forms.rules import FormError
from bot.forms.tang import PING, ZE

from .bundles import SONG_CI, make_songci_bundle

TEXT = SONG_CI.read_text(encoding="utf-8")
TUNES = ci.Tunes.derive(split(TEXT)[0])
NAMES = [
    "浣溪沙", "水调歌头", "鹧鸪天", "菩萨蛮", "满江红", "西江月", "临江仙", "念奴娇", "减字木兰花",
    "沁园春", "蝶恋花", "点绛唇", "贺新郎", "清平乐", "满庭芳", "虞美人", "好事近", "水龙吟",
    "朝中措", "渔家傲",
]  # fmt: skip


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return load_bundle(make_songci_bundle(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def model(bundle):
    return StepModel.load(bundle.path, providers="cpu")


def write(model: StepModel, requests: list[Request]):
    async def go():
        scheduler = Scheduler(model, Limits(max_batch=256, max_length=5000))
        try:
            return await asyncio.gather(*(scheduler.generate(r) for r in requests))
        finally:
            await scheduler.close()

    return asyncio.run(go())


def plan(bundle, **options) -> catalog.PoemPlan:
    return catalog.plan(bundle.card, bundle.vocab.chars, bundle.path, **options)


# --- the 詞林正韻 --------------------------------------------------------------------------


def test_every_group_of_the_pingshui_rhymes_is_in_a_section():
    groups = set().union(*(tang.all_groups(c) for c in tang.listed_chars()))
    assert len(groups) == 106
    assert set(cilin.group_sections()) == groups
    assert set().union(*cilin.group_sections().values()) == set(range(1, 20))


@pytest.mark.parametrize(
    ("ch", "rhymes"),
    [
        ("灰", {(3, PING)}),  # 十灰, its -ui half
        ("來", {(5, PING)}),  # 十灰, its -ai half
        ("魂", {(6, PING)}),  # 十三元, with 真 文
        ("言", {(7, PING)}),  # 十三元, with 寒 刪 先
        ("蛙", {(10, PING)}),  # 九佳, with 麻
        ("街", {(5, PING)}),
        ("月", {(18, ZE)}),  # entering tone: sections 15-19
        ("后", {(12, ZE)}),  # simplified: 后 and 後 alike
        ("东", {(1, PING)}),
    ],
)
def test_sections_by_the_book_in_either_script(ch, rhymes):
    assert cilin.rhymes(ch) == rhymes


# --- tunes from the poets ----------------------------------------------------------------


def test_the_twenty_commonest_tunes_with_what_their_poets_agree_on():
    assert sorted(TUNES.names()) == sorted(NAMES)
    huan = TUNES.tunes["浣溪沙"].shapes
    assert len(huan) == 1 and huan[0].lengths == (7,) * 6
    # The fourth clause ends with a comma and does not rhyme; the other five rhyme as one.
    assert huan[0].marks == "。。。，。。" and huan[0].segments == (0, 0, 0, -1, 0, 0)
    assert huan[0].half == 3
    # 菩薩蠻 changes rhyme every couplet: oblique, level, oblique, level.
    pusa = TUNES.tunes["菩萨蛮"].shapes[0]
    assert pusa.segments == (0, 0, 1, 1, 2, 2, 3, 3)
    assert [pusa.tone(i, pusa.lengths[i] - 1) for i in (0, 2, 4, 6)] == [ZE, PING, ZE, PING]
    # 西江月 ends each half oblique in its level rhyme's section.
    xi = TUNES.tunes["西江月"].shapes[0]
    assert xi.segments == (-1, 0, 0, 0, -1, 0, 0, 0)
    assert [xi.tone(i, xi.lengths[i] - 1) for i in (1, 2, 3)] == [PING, PING, ZE]
    # 清平樂: an oblique first half, a level second (its seventh clause unrhymed).
    qing = TUNES.tunes["清平乐"].shapes[0]
    assert qing.segments == (0, 0, 0, 0, 1, 1, -1, 1) and qing.half == 4
    assert [len(TUNES.tunes[n].shapes) for n in ("水调歌头", "鹧鸪天")] == [2, 1]


def test_the_table_reads_back_as_written(tmp_path):
    path = tmp_path / ci.TUNES_FILE
    path.write_text(TUNES.to_json(), encoding="utf-8")
    again = ci.Tunes.load(path)
    assert again.to_json() == TUNES.to_json()
    path.write_text('{"format": 1, "tunes": [{"name": "x", "poems": 1, "shapes": [{}]}]}')
    with pytest.raises(ValueError, match="unreadable"):
        ci.Tunes.load(path)


def test_the_poets_keep_their_own_tunes():
    poems = [ci.parse_line(line) for line in split(TEXT)[0].splitlines()[:-1]]  # the last: cut
    checks = [ci.check(text, TUNES.tunes[name]) for name, text in poems]
    assert all(c.shape is not None for c in checks)
    assert sum(c.rhyme for c in checks) / len(checks) > 0.6
    # Every tone the table fixes, at least 80% of the poets' one-tone characters there fit.
    for name, tune in TUNES.tunes.items():
        for k, shape in enumerate(tune.shapes):
            mine = [ci.clauses(t) for n, t in poems if n == name]
            mine = [p for p in mine if tuple(len(c) for c, _ in p) == shape.lengths]
            for i, length in enumerate(shape.lengths):
                for at in range(length):
                    tone = shape.tone(i, at)
                    sure = [p[i][0][at] for p in mine if len(cilin.tones(p[i][0][at])) == 1]
                    if tone is not None:
                        kept = sum(cilin.fits(ch, tone) for ch in sure) / len(sure)
                        assert kept >= ci.AGREE, (name, k, i, at)


@pytest.mark.parametrize(
    ("typed", "name", "shapes"),
    [
        ("鹧鸪天", "鹧鸪天", (0,)),
        ("鷓鴣天", "鹧鸪天", (0,)),
        (" 水調歌頭 ", "水调歌头", (0, 1)),
        ("水调歌头/2", "水调歌头", (1,)),
        ("水調歌頭 / 1", "水调歌头", (0,)),
        ("水调歌头/*", "水调歌头", (0, 1)),
    ],
)
def test_a_tune_by_name_in_either_script(typed, name, shapes):
    choice = TUNES.find(typed)
    assert choice.tune.name == name and choice.shapes == shapes
    assert choice.any == typed.endswith("*")


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("浣沙溪", "Near names: 浣溪沙"),
        ("鷓鴣", "Near names: 鹧鸪天"),
        ("sonnet", "no tune 'sonnet'"),
        ("水调歌头/3", "水调歌头/1 to /2"),
    ],
)
def test_an_unknown_tune_is_answered_with_near_names(typed, says):
    with pytest.raises(FormError, match=says):
        TUNES.find(typed)


def test_a_poem_is_shown_under_its_tune_a_rhyme_a_line_its_halves_apart(bundle):
    poem = next(t for n, t in map(ci.parse_line, TEXT.splitlines()) if n == "浣溪沙")
    shown = plan(bundle, form="浣溪沙").present(f"浣溪沙：{poem}")
    title, blank, *lines = shown.split("\n")
    assert (title, blank) == ("浣溪沙", "")
    assert [len(line) for line in lines] == [8, 8, 8, 0, 16, 8]  # 7 characters and 。
    assert "".join(lines) == poem
    traditional = plan(bundle, form="鹧鸪天", output_script="traditional")
    assert traditional.present("鹧鸪天：").startswith("鷓鴣天\n")


# --- writing -----------------------------------------------------------------------------


@settings(max_examples=3)
@given(seeds=st.lists(st.integers(0, 2**40), min_size=6, max_size=6, unique=True))
@pytest.mark.parametrize("name", NAMES)
def test_each_tune_keeps_its_shape_rhymes_and_tones_over_many_seeds(bundle, model, name, seeds):
    asked = plan(bundle, form=f"{name}/*")
    tune = TUNES.tunes[name]
    requests = [
        Request(prompt=asked.prompt, length=asked.length, seed=s, rules=asked.rules, candidates=2)
        for s in seeds
    ]
    for poem in write(model, requests):
        body = ci.strip_header(poem.text, tune)
        kept = ci.check(poem.text, tune)
        assert poem.whole and kept.shape is not None, body
        assert kept.rhyme, body
        assert kept.tone or poem.relaxed, body  # a tone bent only where the poem says so
        assert poem.form == f"{name}/{kept.shape + 1}"
        # No more reused characters than the tune's poets use, on average, in a poem (rounded
        # down: the writer allows a reuse only while the count stays within that mean).
        assert tang.repeats(body) <= tune.shapes[kept.shape].reuse, body


@pytest.mark.parametrize("name", ["浣溪沙", "菩萨蛮", "沁园春"])
def test_an_acrostic_heads_each_clause(bundle, model, name):
    tune = TUNES.tunes[name]
    clauses = len(tune.shapes[0].lengths)
    known = sorted(c for c in bundle.vocab.chars if tang.is_ideograph(c))
    heads = "".join(random.Random(name).sample(known, clauses))
    asked = plan(bundle, form=name, acrostic=heads)
    requests = [
        Request(prompt=asked.prompt, length=asked.length, seed=s, rules=asked.rules)
        for s in range(4)
    ]
    for poem in write(model, requests):
        kept = ci.check(poem.text, tune, heads)
        assert kept.acrostic and kept.rhyme and kept.shape == 0, poem.text


def test_no_tune_named_writes_the_commonest_that_fits(bundle, model):
    assert plan(bundle).prompt == "水调歌头："  # the commonest in the training split: 15
    eight = plan(bundle, acrostic="春花秋月何时了往")
    assert eight.prompt == "菩萨蛮："  # the commonest tune of eight clauses
    (poem,) = write(model, [Request(prompt=eight.prompt, length=eight.length, rules=eight.rules)])
    assert ci.check(poem.text, TUNES.tunes["菩萨蛮"], "春花秋月何时了往").all_rules or (
        poem.relaxed
    )


def test_a_prompt_begins_the_poem_in_its_shape(bundle, model):
    asked = plan(bundle, form="浣溪沙", prompt="一曲新词酒一杯")
    assert asked.prompt == "浣溪沙：一曲新词酒一杯"
    (poem,) = write(model, [Request(prompt=asked.prompt, length=asked.length, rules=asked.rules)])
    assert poem.text.startswith("浣溪沙：一曲新词酒一杯。")
    assert ci.check(poem.text, TUNES.tunes["浣溪沙"]).shape == 0
    # A clause typed with another mark ends with the tune's own.
    assert plan(bundle, form="浣溪沙", prompt="一曲新词酒一杯,去年").prompt == (
        "浣溪沙：一曲新词酒一杯。去年"
    )


@pytest.mark.parametrize(
    ("form", "about", "acrostic"),
    [
        ("鹧鸪天", "秋风", None),
        ("浣溪沙", "明月 春风", None),
        ("水调歌头/*", "落花", None),  # the shape by the seed
        ("沁园春", "江山 千古 风流", None),
        ("菩萨蛮", "西风", "春花秋月何时了往"),
    ],
)
def test_a_ci_about_a_theme_keeps_its_tune_and_holds_a_keyword_a_line(
    bundle, model, form, about, acrostic
):
    """Each sentence (a line as shown, up to its rhyme's 。) holds a word of the plan, the
    user's words each at least once, with every rule of the tune kept; the footer's about-line
    names one word a line."""
    asked = plan(bundle, form=form, about=about, acrostic=acrostic)
    assert asked.theme is not None and asked.theme.words == tuple(about.split())
    tune = TUNES.tunes[form.split("/")[0]]
    requests = [
        Request(prompt=asked.prompt, length=asked.length, seed=s, rules=asked.rules, candidates=2)
        for s in range(12)
    ]
    for poem in write(model, requests):
        kept = ci.check(poem.text, tune, acrostic)
        assert kept.all_rules and poem.whole and not poem.relaxed, (poem.text, kept)
        lines = [line for line in asked.present(poem.text).split("\n")[1:] if line]
        assert all(any(w in line for w in asked.theme.plan) for line in lines), lines
        body = ci.strip_header(poem.text, tune)
        assert all(word in body for word in asked.theme.words), body
        typed, named = asked.about(poem.text)
        assert typed == about and len(named) == len(lines), (named, lines)
        assert all(word in line for word, line in zip(named, lines, strict=True))


def test_a_prompt_comes_before_the_themes_words(bundle, model):
    asked = plan(bundle, form="浣溪沙", prompt="一曲新词酒一杯", about="明月 春风")
    requests = [
        Request(prompt=asked.prompt, length=asked.length, seed=s, rules=asked.rules)
        for s in range(6)
    ]
    for poem in write(model, requests):
        assert poem.text.startswith("浣溪沙：一曲新词酒一杯。"), poem.text
        rest = poem.text.removeprefix("浣溪沙：一曲新词酒一杯。")
        assert "明月" in rest and "春风" in rest, poem.text
        assert ci.check(poem.text, TUNES.tunes["浣溪沙"]).all_rules and not poem.relaxed
        typed, named = asked.about(poem.text)
        assert typed == "明月 春风" and {"明月", "春风"} <= set(named), named


def test_a_ci_theme_is_refused_in_words_where_it_cannot_be_written(bundle, tmp_path):
    with pytest.raises(FormError, match=r"A 浣溪沙 has 5 lines .* not 6") as refused:
        plan(bundle, form="浣溪沙", about="春 秋 花 风 月 山")
    assert refused.value.field == "about"
    with pytest.raises(FormError, match=r"A 浣溪沙 has 4 lines after the prompt .* not 5"):
        plan(bundle, form="浣溪沙", prompt="一曲新词酒一杯。去年", about="春 秋 花 风 月")
    # With no tune named, the commonest tune with a line for each word is written: the
    # commonest of all has eight.
    assert plan(bundle, about="春 秋 花 风 月 山 水 云").prompt == "水调歌头："
    assert plan(bundle, about="春 秋 花 风 月 山 水 云 天").prompt == "满江红："
    for about, says in [("咖啡", "does not know 咖 啡"), ("autumn", "writes Chinese")]:
        with pytest.raises(FormError, match=says) as refused:
            plan(bundle, form="鹧鸪天", about=about)
        assert refused.value.field == "about"
    # A bundle made before themes says `about` is not available, and writes without it.
    old = load_bundle(make_songci_bundle(tmp_path))
    (old.path / themes.THEMES_FILE).unlink()
    with pytest.raises(FormError, match="`about` is not available for this style") as refused:
        plan(old, form="鹧鸪天", about="秋风")
    assert refused.value.field == "about"
    assert plan(old, form="鹧鸪天").theme is None


def test_a_model_that_knows_too_few_rhymes_is_told_so():
    vocab = frozenset("一曲新词酒一杯去年天气旧亭台。，、")
    with pytest.raises(FormError, match="too few rhyming characters for 浣溪沙"):
        ci_writer.plan(TUNES, vocab, "浣溪沙", (), "", None)


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"form": "浣溪沙", "acrostic": "春花秋月"}, "needs one character per clause: 6, not 4"),
        ({"acrostic": "春花"}, "clause: 6 or 8 or 9 or 10 or 19 or 20 or 22 or 23 ..., not 2"),
        ({"form": "浣溪沙", "length": 30}, "needs 48 characters"),
        (
            {"form": "浣溪沙", "prompt": "一曲新词酒一杯酒"},
            "breaks the tune's shape at character 8",
        ),
        ({"form": "浣溪沙", "prompt": "一，"}, "breaks the tune's shape at character 2"),
        ({"form": "浣沙溪"}, "Near names: 浣溪沙"),
        ({"form": "wujue"}, "no tune 'wujue'"),
    ],
)
def test_options_a_tune_cannot_take_are_refused_in_words(bundle, options, says):
    with pytest.raises(FormError, match=says):
        plan(bundle, **options)


def test_the_form_option_offers_tunes_by_name_in_either_script(bundle):
    assert [v for _, v in catalog.choices(bundle.card, "浣")] == ["浣溪沙"]
    assert [v for _, v in catalog.choices(bundle.card, "鷓")] == ["鹧鸪天"]
    labels = dict((v, label) for label, v in catalog.choices(bundle.card, "水调"))
    assert labels["水调歌头"] == "水调歌头 (水調歌頭) · 95字"
    assert set(labels) == {"水调歌头", "水调歌头/2", "水调歌头/*"}
    assert [f.name for f in catalog.offered(bundle.card)] == TUNES.names()
