"""Poems about something (`about`, issue 23): a theme is the user's words, expanded into one
keyword a line from words related to them in the style's own corpus. The plan is the same for
a bundle and theme, in either script; every line holds its keyword with every rule of its form
kept, the user's own words each at least once; the line's candidates try the keyword in
different places; words a style cannot write are refused in words (status 2 in the shell, a
400 naming `about` in the API); through Discord the footer names the theme and its plan, and
Again and Continue keep it; a bundle without theme data says `about` is not available."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.composition import build_page, build_registry
from bot.engine.bundle import active_version, load_bundle
from bot.engine.constraints import fork
from bot.engine.scheduler import Request, Scheduler
from bot.engine.sessions import StepModel
from bot.forms import catalog, english, lyrics, tang, themes
from bot.forms.lines import LINES_FILE, LineGuard, LineIndex
from bot.forms.rules import Allowed, FormError

from .botworld import asynchronous, bot_world, buttons, footer, make_settings
from .bundles import FIXTURES, make_bundle
from .test_cli import run as shell
from .test_discord_replies import unescaped
from .test_forms_e2e import own_themes, shipped
from .test_page import page_client

ROOT = Path(__file__).resolve().parent.parent
TANG = ROOT / "models" / "tang" / "v1"
SHAKESPEARE = ROOT / "models" / "shakespeare" / "v1"
TANG_TEXT = (FIXTURES / "tang_excerpt.txt").read_text(encoding="utf-8")
PLAY_TEXT = (FIXTURES / "shakespeare_excerpt.txt").read_text(encoding="utf-8")
pytestmark = pytest.mark.timeout(300)


def themed(models: Path, style: str, text: str, corpus: str, **section: object) -> Path:
    """A random-weight bundle of `text` with the poem section and tables export would give
    a style trained on it (its themes among them)."""
    poem = {**catalog.poem_section(corpus, text), **section}
    path = make_bundle(models, style, text=text, poem=poem, seed=5, scale=2.0)
    LineIndex.build(text).save(path / LINES_FILE)
    if poem.get("words"):
        (path / poem["words"]).write_text("\n".join(sorted(set(english.words(text)))))
    for name, content in catalog.poem_files(poem, text).items():
        catalog.write_table(path / name, content)
    return path


def write(path: Path, plan: catalog.PoemPlan, seeds: range, candidates: int = 4) -> list:
    """The poems of `plan` for each seed, written together by one scheduler."""
    model = StepModel.load(path, providers="cpu")

    async def go():
        scheduler = Scheduler(model)
        try:
            requests = [
                Request(
                    plan.prompt, plan.length, 0.9, seed=s, rules=plan.rules, candidates=candidates
                )
                for s in seeds
            ]
            return await asyncio.gather(*(scheduler.generate(r) for r in requests))
        finally:
            await scheduler.close()

    return asyncio.run(go())


def plan_of(path: Path, **options: object) -> catalog.PoemPlan:
    bundle = load_bundle(path)
    return catalog.plan(bundle.card, bundle.vocab.chars, bundle.path, **options)


def clauses(text: str) -> list[str]:
    return [c for c in re.split(r"[，。\n]", text) if c.strip()]


# --- the plan ---------------------------------------------------------------------------


def test_a_plan_is_the_users_words_then_related_ones_the_same_in_either_script():
    plan = plan_of(TANG, form="qilv", about="秋風")
    assert plan.theme is not None and plan.theme.words == ("秋風",)
    words = plan.theme.plan
    assert words[0] == "秋風" and len(words) == 8 + themes.SPARE
    # No two words share a character (a word may double its own: 霏霏).
    assert sum(len(set(w)) for w in words) == len(set("".join(words))), words
    # Each word after the user's is related to it, or to two of the words chosen before it
    # (the plan does not wander off through one word's other sense).
    related = catalog.table(TANG, load_bundle(TANG).card, "themes", "themes")

    def near(word: str) -> set[str]:
        return {related.words[j] for j, _ in related.related_to(related.index[word])}

    for k, word in enumerate(words[1:8], 1):
        if word in near("秋風"):
            continue
        before = [w for w in words[:k] if word in near(w)]
        assert len(before) >= themes.SUPPORT, (word, words)
    assert plan_of(TANG, form="qilv", about="秋风").theme.plan == words  # simplified in
    assert plan_of(TANG, form="qilv", about=" 秋風 ").theme.plan == words
    # A typed word the model knows in both scripts is taken in the one its corpus uses.
    assert plan_of(TANG, about="黄昏").theme.words == ("黃昏",)
    assert plan_of(TANG, about="头发").theme.words == ("頭髮",)
    # Derived again from the same text, the data and so every plan are the same.
    first = themes.Related.derive(TANG_TEXT, "tang").to_bytes()
    assert themes.Related.derive(TANG_TEXT, "tang").to_bytes() == first


class _Free:
    """A writer that allows anything and never ends."""

    done = False

    def allowed(self) -> Allowed:
        return Allowed()

    def advance(self, ch: str) -> None:
        pass

    def cut(self) -> int:
        return 0


def test_candidate_lines_are_judged_by_what_they_echo_of_the_theme():
    """Among candidates that keep every rule, the line that holds more of the words the
    corpus relates to the user's scores higher (its penalty ECHO_WEIGHT lower an echo);
    the echoes are those related words (for Chinese their characters), never the user's own
    word and not the plan's drifting later words; forked candidates judge their own lines."""
    plan = plan_of(TANG, form="qilv", about="酒")
    echoes = plan.theme.echoes
    related = catalog.table(TANG, load_bundle(TANG).card, "themes", "themes")
    first = {related.words[j] for i in related._ids("酒") for j, _ in related.related_to(i)}
    assert echoes == frozenset("".join(first)) - {"酒"}
    assert isinstance(plan.rules(3), themes.EchoJudge)
    assert not isinstance(plan_of(TANG, form="qilv").rules(3), themes.EchoJudge)
    echo = sorted(echoes)[:2]
    plain = [c for c in "山水雲天人日" if c not in echoes][:2]
    judge = themes.EchoJudge(_Free(), echoes, chinese=True)
    twin = fork(judge)
    for ch in f"{echo[0]}{plain[0]}{echo[1]}{plain[1]}，":
        judge.advance(ch)
    for ch in f"{plain[0]}{plain[1]}{plain[0]}{plain[1]}，":
        twin.advance(ch)
    assert judge.penalty() == pytest.approx(-2 * themes.ECHO_WEIGHT)
    assert twin.penalty() == 0.0
    english_judge = themes.EchoJudge(_Free(), frozenset({"waves", "salt"}), chinese=False)
    for ch in "The Waves, the salt; the waves.\n":
        english_judge.advance(ch)
    assert english_judge.penalty() == pytest.approx(-3 * themes.ECHO_WEIGHT)


def test_the_stored_relatedness_holds_words_and_numbers_only(tmp_path):
    related = themes.Related.derive(TANG_TEXT, "tang")
    (tmp_path / themes.THEMES_FILE).write_bytes(related.to_bytes())
    loaded = themes.Related.load(tmp_path / themes.THEMES_FILE)
    assert loaded.words == related.words and all(1 <= len(w) <= 2 for w in loaded.words)
    mountain = related.related_to(related.index["山"])
    stored = loaded.related_to(loaded.index["山"])
    assert [j for j, _ in stored] == [j for j, _ in mountain]
    assert [s for _, s in stored] == pytest.approx([s for _, s in mountain], rel=1e-3)
    assert [s for _, s in mountain] == sorted((s for _, s in mountain), reverse=True)
    (tmp_path / "broken.npz").write_bytes(b"not a table")
    with pytest.raises(ValueError, match="unreadable"):
        themes.Related.load(tmp_path / "broken.npz")


def test_a_pair_nearly_always_inside_a_longer_word_is_no_word():
    # 被东 stands where a seven-character clause's words start (2+2+3) but is always the head of
    # 被东风; 东风 beside many characters, and 明月, are words. The same in a lyric's lines.
    rng = random.Random(3)
    filler = "山水江湖云雨花草松竹梅兰秋冬春夏"
    verse, lyric = [], []
    for _ in range(40):
        a, b, c = rng.sample(filler, 3)
        verse.append(f"{a}{b}被东风{c}{a}，{b}{c}明月{a}{b}{c}。")
        verse.append(f"{c}{a}东风{b}{a}{c}，{a}{c}明月{b}{a}{b}。")
        verse.append(f"{a}{b}{c}{b}{a}{c}{b}，{c}{b}{a}{c}{a}{b}{a}。")
        lyric.append(f"{a}{b}被东风{c}{a} {b}{c}明月{a}{b}")
        lyric.append(f"{c}{a}东风{b} {a}{c}明月{b}{a}")
        lyric.append(f"{a}{b}{c}{b}{a} {c}{b}{a}{c}{a}")
    for units, shaped in (
        (themes.chinese_units("\n".join(verse), True), True),
        (themes.chinese_units("\n".join(lyric), False), False),
    ):
        found = themes.chinese_words(units, shaped)
        assert "东风" in found and "明月" in found, found[:20]
        assert "被东" not in found


# --- lines that hold their keyword ---------------------------------------------------------


@pytest.mark.parametrize(
    ("form", "about", "acrostic"),
    [("qijue", "明月", None), ("wulv", "春風 白雲", None), ("qijue", "山", "春夏秋冬")],
)
def test_each_tang_clause_holds_its_keyword_and_every_rule(tmp_path, form, about, acrostic):
    path = themed(tmp_path, "tang", TANG_TEXT, "tang")
    plan = plan_of(path, form=form, about=about, acrostic=acrostic)
    places: set[int] = set()
    for poem in write(path, plan, range(6)):
        check = tang.check(poem.text, form, acrostic)
        assert check.all_rules, (poem.text, check)
        keywords = plan.theme.keywords(poem.text)
        assert len(keywords) == len(clauses(poem.text)), (poem.text, keywords)
        for clause, word in zip(clauses(poem.text), keywords, strict=True):
            assert word in clause
        assert all(word in poem.text for word in plan.theme.words)
        # The candidates of a line tried its keyword in more than one place.
        for choice in poem.lines:
            for text in choice.texts:
                word = next((w for w in plan.theme.plan if w in text), None)
                if word is not None:
                    places.add(text.index(word))
    assert len(places) >= 3


def test_verse_lines_hold_their_keywords_and_still_rhyme(tmp_path):
    path = themed(tmp_path, "lyrics", TANG_TEXT, "lyrics")
    plan = plan_of(path, form="verse", about="明月 春風 白雲 秋 山")
    for poem in write(path, plan, range(4)):
        lines = poem.text.strip().split("\n")
        assert len(lines) >= 5, poem.text  # one line at least for each of the user's words
        assert all(word in poem.text for word in plan.theme.words), poem.text
        assert all(any(w in line for w in plan.theme.plan) for line in lines), poem.text
        assert any(word in lines[-1] for word in plan.theme.words), poem.text  # ends on them
        assert lyrics.check_verse(poem.text).rhyme_rate == 1.0, poem.text


def test_an_english_speech_holds_a_keyword_a_line(tmp_path):
    path = themed(tmp_path, "plays", PLAY_TEXT, "plays")
    plan = plan_of(path, form="speech", about="the people", length=600)
    assert plan.theme.words == ("people",)  # function words are no theme
    for poem in write(path, plan, range(4)):
        lines = english.poem_lines(poem.text)
        assert "people" in english.words(poem.text), poem.text
        for line in lines:
            assert set(english.words(line)) & set(plan.theme.plan), (line, poem.text)


def test_a_sonnet_about_the_sea_keeps_its_metre_and_rhymes():
    plan = plan_of(SHAKESPEARE, form="sonnet", about="the sea")
    words = english.Lexicon.from_text((SHAKESPEARE / "words.txt").read_text(), cmu=True)
    (poem,) = write(SHAKESPEARE, plan, range(3, 4), candidates=8)
    check = english.check_sonnet(poem.text, words)
    assert check.fourteen and check.rhyme_pairs_kept == 7 and check.syllable_ok == 14, poem.text
    lines = english.poem_lines(poem.text)
    assert "sea" in english.words(lines[0]) and "sea" in english.words(lines[-1]), poem.text
    for line in lines:
        assert set(english.words(line)) & set(plan.theme.plan), (line, poem.text)
    # A couplet is too short to come back to its word: its second line takes the plan's next.
    plan = plan_of(SHAKESPEARE, form="couplet", about="the sea")
    (poem,) = write(SHAKESPEARE, plan, range(3, 4), candidates=8)
    assert [w for w in english.words(poem.text) if w == "sea"] == ["sea"], poem.text


def test_a_sonnet_about_a_theme_keeps_its_rules_whatever_the_writer_allows():
    """Walks at random through what the writer allows (the network's likeliest paths are
    only some of them): every sonnet about a theme keeps its 14 lines, syllables and rhymes.
    The word before a line's keyword must leave it room, and a keyword may not end a line
    where its rhyme word should (a sonnet about "many" ended a line on "years" for "thereof")."""
    bundle = load_bundle(SHAKESPEARE)
    words = english.Lexicon.from_text((SHAKESPEARE / "words.txt").read_text(), cmu=True)
    vocab = sorted(bundle.vocab.chars)
    plan = plan_of(SHAKESPEARE, form="sonnet", about="the sea")
    for seed in range(30):
        writer, pick, text = plan.rules(seed), random.Random(seed), ""
        while not writer.done and len(text) < 3000:
            rule = writer.allowed()
            able = [c for c in vocab if all(c in r for r in rule.required) and c not in rule.banned]
            liked = [c for c in able if all(c in p for p in rule.preferred)]
            text += pick.choice(liked or able)
            writer.advance(text[-1])
        check = english.check_sonnet(text, words)
        assert check.fourteen and check.rhyme_pairs_kept == 7 and check.syllable_ok == 14, text


def test_a_paragraph_starts_each_line_with_its_keyword(tmp_path):
    path = themed(tmp_path, "plays", PLAY_TEXT, "plays", forms=["speech", "paragraph"])
    plan = plan_of(path, form="paragraph", about="people gods", length=400)
    for poem in write(path, plan, range(3)):
        lines = [line for line in poem.text.split("\n") if line.strip()]
        assert len(lines) >= 2 and lines[0].startswith("people") and lines[1].startswith("gods")


def test_a_users_word_gives_way_until_the_lines_left_are_its_own():
    """A line takes the first plan word with a place by every rule; a user's word that has
    none gives way, until the lines left are no more than the user's words to write: then it
    may bend a preferred rule (a tone), and is written."""
    thread = themes.Thread(("秋風", "落葉", "明月"), frozenset({"秋風"}))

    def places(word: str, strict: bool) -> list[int]:
        return [] if word == "秋風" and strict else [0, 2, 4]

    left = ["秋風", "落葉", "明月"]
    assert thread.choose(left, 3, places, 0) == ("落葉", 0)
    assert thread.choose(left, 2, places, 1) == ("落葉", 2)
    assert thread.choose(left, 1, places, 2) == ("秋風", 4)
    assert thread.choose(["明月"], 1, lambda w, s: [], 0) is None  # no word fits: none


def test_a_sonnet_or_verse_ends_on_the_users_words():
    """Where words recur (`close`: a sonnet's couplet, a lyric's refrain) the last line takes
    a user's word again, once all are written; a user's word still to write comes first, and
    a user's word with no place there gives way to the plan."""
    thread = themes.Thread(("秋風", "落葉", "明月"), frozenset({"秋風"}))
    anywhere = lambda word, strict: [0, 2]  # noqa: E731
    assert thread.choose(["明月"], 1, anywhere, 0, close=True) == ("秋風", 0)
    assert thread.choose(["明月"], 1, anywhere, 0) == ("明月", 0)  # a form without refrains
    assert thread.choose(["明月"], 2, anywhere, 0, close=True) == ("明月", 0)  # not the last
    assert thread.choose(["落葉", "秋風"], 1, anywhere, 1, close=True) == ("秋風", 2)
    nowhere = lambda word, strict: [] if word == "秋風" else [0]  # noqa: E731
    assert thread.choose(["明月"], 1, nowhere, 0, close=True) == ("明月", 0)


def test_an_english_plan_takes_the_words_related_to_the_users_first():
    """An English plan's words related to the user's come before those related only to
    the plan's (love's hate and tears before the plays' blood and death)."""
    related = themes.Related.load(SHAKESPEARE / themes.THEMES_FILE)
    for about in ("love", "war", "winter"):
        plan = plan_of(SHAKESPEARE, form="sonnet", about=about).theme.plan
        near = {related.words[j] for j, _ in related.related_to(related.index[about])}
        firsts = [word in near for word in plan[1:]]
        assert any(firsts) and firsts == sorted(firsts, reverse=True), (about, plan)


def test_an_english_plan_holds_each_word_once_not_again_as_its_plural_or_possessive():
    """A sonnet writes no content word twice, and its plan's keywords are forced into their
    lines: a plan holding love and love's, or king and kings, wrote the word twice in every
    such sonnet. Over the live model's own themes, no plan word is another's form."""
    models = ROOT / "models"
    live = models / "shakespeare" / active_version(models, "shakespeare")
    card = load_bundle(live).card
    for about in card["poem"]["default_themes"]:
        plan = plan_of(live, form="sonnet", about=about).theme.plan
        for i, word in enumerate(plan):
            again = [w for w in plan[:i] if english.owner(word) in english.forms_of(w)]
            assert not again, (about, word, again, plan)


def test_a_keyword_that_ends_a_training_clause_is_judged_not_stuck():
    """Where the line guard would ban the only character the writer allows (a keyword's
    last, completing a training clause), the line is written and its penalty rejects it."""

    class Forced:
        done = False

        def allowed(self) -> Allowed:
            return Allowed(required=(frozenset("居"),))

        def last_of_line(self) -> bool:
            return True

        def advance(self, ch: str) -> None: ...

        def cut(self) -> int:
            return 0

    guard = LineGuard(Forced(), LineIndex.build("秦川雄帝宅，函谷壯皇居。"))
    for ch in "函谷壯皇":
        guard.advance(ch)
    assert "居" not in guard.allowed().banned
    for ch in "居。":
        guard.advance(ch)
    assert guard.penalty() == float("inf")


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bundle", "options", "says"),
    [
        (TANG, {"about": "☕ 秋天"}, "without markup, punctuation or emoji (☕)"),
        (TANG, {"about": "**秋**"}, "without markup"),
        (TANG, {"about": "<@123> 秋"}, "without markup"),
        (TANG, {"about": "秋\x00天"}, "control or invisible"),
        (TANG, {"about": " " * 200}, "at most 100 characters"),
        (TANG, {"about": " " * 50}, "empty"),
        (TANG, {"about": "咖啡"}, "does not know 咖 啡"),
        (TANG, {"about": "咖月"}, "Words it knows near it:"),
        (TANG, {"about": "秋风 autumn"}, "writes Chinese; 'autumn'"),
        (TANG, {"about": "一二三四五六七八九十百千萬"}, "at most 12 Chinese characters"),
        (TANG, {"about": "春 夏 秋 冬 花", "form": "qijue"}, "has 4 lines"),
        (TANG, {"about": "春夏秋冬花鳥風月雲", "form": "qilv"}, "has 8 lines"),
        (SHAKESPEARE, {"about": "秋天"}, "writes English"),
        (SHAKESPEARE, {"about": "lovingly"}, "try loving"),
        (SHAKESPEARE, {"about": "qwzx"}, "never written 'qwzx'"),
        (SHAKESPEARE, {"about": "sea sky sun moon star rain"}, "at most 5 words"),
        (SHAKESPEARE, {"about": "sea land", "form": "couplet", "acrostic": "A"}, "needs 2"),
        (SHAKESPEARE, {"about": "sea land star", "form": "couplet"}, "has 2 lines"),
        (SHAKESPEARE, {"about": "romeo", "form": "sonnet"}, "never written 'romeo'"),
    ],
)
def test_words_a_style_cannot_write_are_refused_in_words(bundle, options, says):
    with pytest.raises(FormError) as refused:
        plan_of(bundle, **options)
    assert says in str(refused.value)
    assert refused.value.field == ("about" if "acrostic" not in options else None)


def test_a_bundle_without_theme_data_says_about_is_not_available(tmp_path):
    path = themed(tmp_path, "old", TANG_TEXT, "tang")
    (path / themes.THEMES_FILE).unlink()
    with pytest.raises(FormError, match="`about` is not available for this style") as refused:
        plan_of(path, about="山")
    assert refused.value.field == "about"
    assert plan_of(path).theme is None  # without a theme it writes as before


def test_the_shell_writes_about_a_theme_and_exits_2_on_a_bad_one():
    done = shell("generate", "--style", "tang", "--form", "qijue", "--about", "秋风", "--seed", "3")
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stderr.splitlines() if line.startswith("-- about 秋风: "))
    named = line.split(": ", 1)[1].split(" · ")
    assert len(named) == 4 and named[0] == "秋風"
    assert all(word in done.stdout for word in named)
    refused = shell("generate", "--style", "tang", "--about", "咖啡")
    assert refused.returncode == 2 and "does not know 咖 啡" in refused.stderr
    assert refused.stdout == ""


@asynchronous
async def test_the_api_writes_about_a_theme_and_names_the_field_of_a_bad_one(tmp_path):
    async with page_client(tmp_path) as (client, _):
        styles = (await (await client.get("/api/styles")).json())["styles"]
        assert all(s["about"] for s in styles)
        options = {"style": "tang", "form": "wujue", "about": "明月", "seed": 2}
        response = await client.post("/api/poems", json=options)
        assert response.status == 200
        poem = await response.json()
        assert poem["about"]["theme"] == "明月" and poem["about"]["plan"][0] == "明月"
        assert poem["about"]["line"].startswith("about 明月: 明月 · ")
        assert all(word in poem["text"] for word in poem["about"]["plan"])
        assert poem["options"]["about"] == "明月"
        for bad in ("咖啡", "🎉", " " * 200, "<b>秋</b>"):
            refused = await client.post("/api/poems", json={"style": "tang", "about": bad})
            body = await refused.json()
            assert refused.status == 400 and body["field"] == "about", body
        empty = await client.post("/api/poems", json={"style": "tang", "about": "", "seed": 2})
        assert empty.status == 200 and (await empty.json())["about"] is None


# --- through Discord ------------------------------------------------------------------------


@asynchronous
async def test_poem_about_shows_its_plan_and_again_and_continue_keep_it(tmp_path):
    settings = make_settings(tmp_path, shipped(tmp_path, "tang"), default_style="tang")
    async with bot_world(tmp_path, settings=settings) as w:
        options = {"style": "tang", "form": "qijue", "about": "秋风", "seed": 5}
        _, message = await w.poem(options)
        poem = message.embeds[0]["description"]
        about = footer(message).split("\n")[0]
        assert about.startswith("about 秋风: 秋風 · ") and "seed 5" in footer(message)
        named = about.split(": ", 1)[1].split(" · ")
        assert len(named) == 4 and all(word in poem for word in named)
        again = await (await w.discord.press(message, buttons(message)["Again"], w.member)).final(
            30
        )
        assert footer(again).startswith("about 秋风: 秋風 · ")
        more = await (await w.discord.press(message, buttons(message)["Continue"], w.member)).final(
            30
        )
        assert footer(more).startswith("about 秋风: 秋風 · ")
        # In a Chinese client the line is in its words, in the script asked for.
        record = await w.discord.invoke(
            w.guild,
            w.channel,
            w.member,
            "poem",
            {**options, "script": "simplified"},
            locale="zh-CN",
        )
        shown = await record.final(timeout=30)
        assert footer(shown).startswith("主题 秋风：秋风 · ")
        _, refused = await w.poem({"style": "tang", "about": "咖啡"})
        assert refused.ephemeral and "咖 啡" in refused.content
        # As plain text, the theme's line is subtext above the footer's.
        await w.run("settings", w.moderator, {"value": "text"}, subcommand="format")
        _, plain = await w.poem(options)
        lines = unescaped(plain.content).split("\n")
        assert lines[-2].startswith("-# about 秋风: 秋風 · ") and "seed 5" in lines[-1]
        assert not w.discord.violations


# --- a theme of the style's own --------------------------------------------------------------


@asynchronous
async def test_a_poem_asked_without_a_theme_takes_one_of_its_styles_own(tmp_path):
    """Where a style names themes of its own, /poem with none writes about one (shown as a
    theme the user typed would be); `about: -`, opening words or an acrostic write free."""
    own = ("love", "the sea", "winter", "death", "night", "war", "spring", "time", "home", "rain")
    models = own_themes(tmp_path, *own)
    settings = make_settings(tmp_path, models, default_style="shakespeare", about_candidates=4)
    async with bot_world(tmp_path, settings=settings) as w:
        _, message = await w.poem({"style": "shakespeare", "form": "couplet", "seed": 5})
        about = footer(message).split("\n")[0]
        theme = about.removeprefix("about ").split(": ")[0]
        assert theme in own and about.startswith(f"about {theme}: ")
        assert "seed 5" in footer(message)
        # Again and Continue keep the theme the bot chose, as they keep a user's.
        for button in ("Again", "Continue"):
            pressed = await w.discord.press(message, buttons(message)[button], w.member)
            shown = await pressed.final(30)
            assert footer(shown).startswith(f"about {theme}: "), button
        for free in ({"about": "-"}, {"prompt": "Shall I"}, {"acrostic": "LO"}):
            _, shown = await w.poem({"style": "shakespeare", "form": "couplet", "seed": 5, **free})
            assert shown.embeds, (free, shown.content)
            assert not footer(shown).startswith("about"), free
        assert not w.discord.violations


@asynchronous
async def test_the_api_gives_a_poem_asked_without_a_theme_one_of_its_styles_own(tmp_path):
    settings = make_settings(
        tmp_path, own_themes(tmp_path, "the sea", "winter"), about_candidates=4
    )
    registry = build_registry(settings)
    await registry.reload()
    client = TestClient(TestServer(build_page(settings, registry).app()))
    await client.start_server()
    try:
        got = set()
        for seed in range(4):
            asked = {"style": "shakespeare", "form": "couplet", "seed": seed}
            response = await client.post("/api/poems", json=asked)
            poem = await response.json()
            assert response.status == 200 and poem["about"]["theme"] in ("the sea", "winter")
            got.add(poem["about"]["theme"])
            if seed == 0:
                again = await client.post("/api/poems", json=asked)
                assert (await again.json())["text"] == poem["text"]  # the seed picks it
        assert got == {"the sea", "winter"}
        free = await client.post(
            "/api/poems", json={"style": "shakespeare", "form": "couplet", "seed": 1, "about": "-"}
        )
        assert free.status == 200 and (await free.json())["about"] is None
    finally:
        await client.close()
        await registry.close()


def test_the_shell_writes_about_a_theme_of_the_styles_own_unless_told_not_to():
    shipped_models = ROOT / "models"
    live = shipped_models / "shakespeare" / active_version(shipped_models, "shakespeare")
    own = load_bundle(live).card["poem"]["default_themes"]
    fewer = {"ABOUT_CANDIDATES": "4"}
    done = shell(
        "generate", "--style", "shakespeare", "--form", "couplet", "--seed", "3", env=fewer
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stderr.splitlines() if line.startswith("-- about "))
    assert line[len("-- about ") :].split(": ")[0] in own
    free = shell(
        "generate",
        "--style",
        "shakespeare",
        "--form",
        "couplet",
        "--seed",
        "3",
        "--about",
        "-",
        env=fewer,
    )
    assert free.returncode == 0, free.stderr
    assert not any(line.startswith("-- about ") for line in free.stderr.splitlines())
    assert free.stdout != done.stdout
