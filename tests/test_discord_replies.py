"""What a Discord user sees of a poem: it streams in as it is written (within the rate limits
Discord announces), buttons under it write again or on (also after the bot restarts), the
message menu writes from a message, Chinese users read Chinese, and a channel can ask for
plain text. All through the loopback Discord."""

from __future__ import annotations

import dataclasses
import itertools
import re

from bot.engine.bundle import CARD_FILE

from .botworld import (
    TOKEN,
    asynchronous,
    bot_world,
    buttons,
    footer,
    footer_seed,
    make_models,
    make_settings,
    still_writing,
)
from .loopback import LoopbackDiscord
from .stepping import paced

AGAIN = re.compile(r"^poem:again:\d+$")
MORE = re.compile(r"^poem:more:\d+$")


def unescaped(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def english_left(thing: dict) -> list[str]:
    """Names and descriptions in a command as seen that have no Chinese character."""
    left = [
        thing[key]
        for key in ("name", "description")
        if thing.get(key) and not re.search(r"[\u4e00-\u9fff]", thing[key])
    ]
    for part in (*thing.get("options", []), *thing.get("choices", [])):
        left += english_left(part)
    return left


def texts(thing: dict) -> list[str]:
    """Every description in a synced command."""
    found = [thing["description"]] if thing.get("description") else []
    for part in thing.get("options", []):
        found += texts(part)
    return found


def streaming_settings(root, **changes):
    models = make_models(root)
    return make_settings(root, models, stream_edit_seconds=0.05, **changes)


@asynchronous
async def test_a_long_poem_streams_in_order_and_its_last_edit_is_the_finished_poem(tmp_path):
    settings = streaming_settings(tmp_path)
    async with bot_world(tmp_path, settings) as w:
        # Every step takes at least 1 ms: the poem takes seconds on any machine, time for more
        # edits than the loopback's 5 per 5 s allow.
        paced(w.bot.registry.live("verse").scheduler, 0.001)
        _, message = await w.poem({"style": "verse", "length": 2500, "seed": 7, "prompt": "The "})
        versions = [v.body for v in message.versions]
        streamed = [b for b in versions if "embeds" in b and still_writing_body(b)]
        assert len(streamed) >= 2, f"{len(versions)} writes, none streamed"
        texts = [b["embeds"][0]["description"] for b in streamed]
        final = versions[-1]["embeds"][0]["description"]
        # Each edit shows more of the same poem, and the last write is the whole of it.
        assert all(a != b and b.startswith(a) for a, b in itertools.pairwise(texts))
        assert all(final.startswith(t.rstrip("…")) for t in texts)
        assert not still_writing(message) and "seed 7" in footer(message)
        assert len(unescaped(final)) == 4 + 2500 and unescaped(final).startswith("The ")
        assert all(unescaped(t).startswith("The ") for t in texts)
        # Only the last write carries the buttons.
        assert set(buttons(message)) == {"Again", "Continue"}
        assert not any(b.get("components") for b in versions[:-1])
        # The stream kept to the 5 writes per 5 s the loopback announces, leaving room for the
        # finished poem: it never waited for the window to reopen, and nothing was refused.
        assert w.discord.rate_limit_hits == []
        times = [v.received_at for v in message.versions]
        assert sum(times[-1] - t < 5.0 for t in times[:-1]) <= 4
        assert w.discord.violations == []


def still_writing_body(body) -> bool:
    return "✍️" in ((body["embeds"][0].get("footer") or {}).get("text", ""))


@asynchronous
async def test_a_poem_finished_within_a_second_is_sent_once_with_no_edit(tmp_path):
    async with bot_world(tmp_path) as w:  # STREAM_EDIT_SECONDS at its default, 1
        _record, message = await w.poem({"style": "verse", "length": 40})
        assert len(message.versions) == 1 and message.edited_at is None
        assert set(buttons(message)) == {"Again", "Continue"}
        assert AGAIN.match(buttons(message)["Again"]) and MORE.match(buttons(message)["Continue"])
        assert len(buttons(message)["Again"]) <= 100


@asynchronous
async def test_again_after_a_restart_writes_the_same_options_with_another_seed(tmp_path):
    make_models(tmp_path)
    settings = make_settings(tmp_path, tmp_path / "models")
    async with LoopbackDiscord(token=TOKEN) as fake:
        async with bot_world(tmp_path, settings, discord=fake) as w:
            _, poem = await w.poem({"style": "verse", "length": 60, "temperature": 1.3})
        # The bot process is gone; a new one starts on the same settings database.
        async with bot_world(tmp_path, settings, discord=fake) as w:
            record = await fake.press(poem, buttons(poem)["Again"], w.member)
            again = await record.final(timeout=30)
            assert again is not poem and again.reference is poem and again.type == 19
            assert "verse v1" in footer(again) and "temperature 1.3" in footer(again)
            assert footer_seed(again) != footer_seed(poem)
            assert len(unescaped(again.embeds[0]["description"])) == 60
            assert set(buttons(again)) == {"Again", "Continue"}
            # Pressing the same button again still works: it is not used up.
            second = await (await fake.press(poem, buttons(poem)["Again"], w.member)).final(30)
            assert footer_seed(second) not in (footer_seed(poem), footer_seed(again))
        assert fake.violations == []


@asynchronous
async def test_continue_writes_on_from_the_poem_as_a_reply_to_it(tmp_path):
    async with bot_world(tmp_path) as w:
        _, poem = await w.poem({"style": "verse", "length": 80, "prompt": "The "})
        record = await w.discord.press(poem, buttons(poem)["Continue"], w.admin)
        more = await record.final(timeout=30)
        assert more.reference is poem and more.type == 19
        assert "Continued" in more.embeds[0]["title"]
        text = unescaped(more.embeds[0]["description"])
        first = unescaped(poem.embeds[0]["description"])
        assert len(text) == 80 and text != first and not text.startswith("The ")
        assert w.discord.violations == []


@asynchronous
async def test_a_button_on_a_version_no_longer_live_uses_the_live_one_and_says_so(tmp_path):
    async with bot_world(tmp_path) as w:
        _, poem = await w.poem({"style": "verse", "length": 30})
        assert "verse v1" in footer(poem)
        await w.run("model", w.operator, {"style": "verse", "version": "v2"}, "activate")
        again = await (await w.discord.press(poem, buttons(poem)["Again"], w.member)).final(30)
        assert "verse v2" in footer(again)
        notes = " ".join(f["value"] for f in again.embeds[0].get("fields", []))
        assert "v1 is no longer live" in notes


@asynchronous
async def test_buttons_keep_the_pressers_cooldown(tmp_path):
    settings = dataclasses.replace(
        make_settings(tmp_path, make_models(tmp_path)), user_cooldown=60.0
    )
    async with bot_world(tmp_path, settings) as w:
        _, poem = await w.poem({"style": "verse", "length": 30})
        record = await w.discord.press(poem, buttons(poem)["Again"], w.member)
        refused = await record.final(timeout=10)
        assert refused.ephemeral and "You can ask for another poem in" in refused.content
        # Someone else may press it.
        other = await (await w.discord.press(poem, buttons(poem)["Again"], w.admin)).final(30)
        assert other.embeds and not other.ephemeral


@asynchronous
async def test_a_button_whose_poem_was_forgotten_says_so(tmp_path):
    async with bot_world(tmp_path) as w:
        _, poem = await w.poem({"style": "verse", "length": 30})
        poem.components[0]["components"][0]["custom_id"] = "poem:again:12345"
        record = await w.discord.press(poem, "poem:again:12345", w.member)
        answer = await record.final(timeout=10)
        assert answer.ephemeral and "no longer have this poem's options" in answer.content


@asynchronous
async def test_write_a_poem_from_an_english_message(tmp_path):
    async with bot_world(tmp_path) as w:
        said = w.discord.post_message(w.channel, w.admin, "the sea ☃ and the sky")
        record = await w.discord.invoke_message_command(
            w.guild, w.channel, w.member, "Write a poem from this", said
        )
        poem = await record.final(timeout=30)
        text = unescaped(poem.embeds[0]["description"])
        known = set((tmp_path / "models" / "verse" / "v1" / "vocab.json").read_text())
        expected = "".join(c for c in "the sea ☃ and the sky" if c in known)
        expected = " ".join(expected.split())
        assert text.startswith(expected) and "☃" not in text
        assert "admin" in poem.embeds[0]["title"] and poem.type == 23
        assert w.discord.violations == []


@asynchronous
async def test_write_a_poem_from_a_chinese_message_in_a_tang_channel(tmp_path):
    async with bot_world(tmp_path) as w:
        await w.run("settings", w.moderator, {"name": "tang"}, subcommand="style")
        # Simplified characters: the traditional-script model reads them in its own script.
        said = w.discord.post_message(w.channel, w.admin, "函谷壮皇居 🙂")
        record = await w.discord.invoke_message_command(
            w.guild, w.channel, w.member, "Write a poem from this", said
        )
        poem = await record.final(timeout=30)
        assert "tang" in footer(poem)
        assert unescaped(poem.embeds[0]["description"]).startswith("函谷壯皇居")
        # A message with nothing the style knows gets a private answer.
        empty = w.discord.post_message(w.channel, w.admin, "🙂🙂")
        record = await w.discord.invoke_message_command(
            w.guild, w.channel, w.member, "Write a poem from this", empty
        )
        answer = await record.final(timeout=10)
        assert answer.ephemeral and "no text tang can write from" in answer.content


@asynchronous
async def test_chinese_users_see_chinese_names_errors_and_footers(tmp_path):
    async with bot_world(tmp_path) as w:
        for locale, poem_name, style_name in (("zh-TW", "寫詩", "風格"), ("zh-CN", "写诗", "风格")):
            seen = w.discord.command_as_seen("poem", locale, w.guild)
            assert seen["name"] == poem_name
            assert style_name in [o["name"] for o in seen["options"]]
            assert all(re.search(r"[\u4e00-\u9fff]", o["description"]) for o in seen["options"])
            menu = w.discord.command_as_seen("Write a poem from this", locale, w.guild, kind=3)
            assert menu["name"] in ("以此寫詩", "以此写诗")
        settings = w.discord.command_as_seen("settings", "zh-TW", w.guild)
        assert {o["name"] for o in settings["options"]} >= {"溫度", "格式"}
        # discord.py cuts a description over Discord's 100 characters short with "…": none is.
        for name in ("poem", "settings", "model"):
            assert not [t for t in texts(w.discord.command(name, w.guild)) if t.endswith("…")]
        # Nothing a Chinese user reads in the command list is left in English.
        for name in ("poem", "settings", "model"):
            for locale in ("zh-CN", "zh-TW"):
                untranslated = english_left(w.discord.command_as_seen(name, locale, w.guild))
                assert untranslated == [], (name, locale)
        # English stays as it was for everyone else.
        assert w.discord.command_as_seen("poem", "fr", w.guild)["name"] == "poem"
        record = await w.discord.invoke(
            w.guild, w.channel, w.member, "poem", {"style": "nope"}, locale="zh-TW"
        )
        refused = await record.final(timeout=10)
        assert refused.ephemeral and refused.content.startswith("沒有名為")
        record = await w.discord.invoke(
            w.guild, w.channel, w.member, "poem", {"style": "verse", "length": 30}, locale="zh-CN"
        )
        poem = await record.final(timeout=30)
        assert "温度" in footer(poem) and "种子" in footer(poem)
        assert set(buttons(poem)) == {"再写一首", "接着写"}
        _, said = await w.run(
            "settings", w.moderator, {"value": 0.6}, subcommand="temperature", locale="zh-TW"
        )
        assert said.content == "此頻道的詩現在使用溫度 0.6。"
        assert w.discord.violations == []


@asynchronous
async def test_format_text_sends_plain_messages_split_at_line_breaks(tmp_path):
    models = make_models(tmp_path)
    card = models / "verse" / "v1" / CARD_FILE
    assert card.exists()
    async with bot_world(tmp_path, make_settings(tmp_path, models)) as w:
        _, said = await w.run("settings", w.moderator, {"value": "text"}, subcommand="format")
        assert "plain text" in said.content
        record, _first = await w.poem({"style": "verse", "length": 4500, "seed": 3})
        await record.wait_for(lambda r: r.messages and buttons(r.messages[-1]), timeout=30)
        parts = record.messages
        assert len(parts) >= 3 and all(not m.embeds for m in parts)
        assert all(len(m.content) <= 2000 for m in parts)
        # Cut at line breaks: every part but the last ends where a line of the poem ends.
        whole = "\n".join(m.content for m in parts)
        poem = unescaped(whole.split("\n", 1)[1].rsplit("\n-# ", 1)[0])
        assert len(poem) == 4500
        assert "seed 3" in parts[-1].content and set(buttons(parts[-1])) == {"Again", "Continue"}
        assert not any(buttons(m) for m in parts[:-1])
        assert w.discord.violations == []
