"""The bot end to end, driven only through the loopback Discord as its users would."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re

import pytest

from bot.discord_app import client as client_module

from .botworld import asynchronous, bot_world, footer, footer_seed, make_models, make_settings
from .bundles import make_bundle
from .loopback import ALL_PERMISSIONS, InvocationRefused, Permission, Upload
from .stepping import holding, until

pytestmark = pytest.mark.timeout(120)


@asynchronous
async def test_synced_schema_has_the_documented_options_bounds_and_permissions(tmp_path):
    async with bot_world(tmp_path) as w:
        poem = w.discord.command("poem")
        options = {o["name"]: o for o in poem["options"]}
        assert list(options) == [
            *("style", "prompt", "length", "temperature", "seed"),
            *("form", "acrostic", "script", "about"),
        ]
        assert options["style"]["autocomplete"] is True and options["form"]["autocomplete"]
        assert [c["value"] for c in options["script"]["choices"]] == ["simplified", "traditional"]
        assert (options["length"]["min_value"], options["length"]["max_value"]) == (1, 5000)
        assert (options["temperature"]["min_value"], options["temperature"]["max_value"]) == (
            0.0,
            2.0,
        )
        assert options["prompt"]["max_length"] == 500
        assert (options["about"]["min_length"], options["about"]["max_length"]) == (1, 100)
        assert not any(o.get("required") for o in options.values())
        settings = w.discord.command("settings")
        assert int(settings["default_member_permissions"]) == Permission.MANAGE_CHANNELS
        assert {o["name"] for o in settings["options"]} == {
            *("temperature", "style", "format", "show", "reset")
        }
        model = w.discord.command("model")
        assert int(model["default_member_permissions"]) == Permission.ADMINISTRATOR
        assert {o["name"] for o in model["options"]} == {
            "list",
            "info",
            "activate",
            "rollback",
            "reload",
            "retrain",
            "add",
            "jobs",
            "cancel",
        }
        add = next(o for o in model["options"] if o["name"] == "add")
        cell = next(o for o in add["options"] if o["name"] == "cell")
        assert [c["value"] for c in cell["choices"]] == ["lstm", "gru", "peephole", "coupled"]
        assert not cell.get("required")


@asynchronous
async def test_poem_in_english_defers_then_answers_with_a_repeatable_embed(tmp_path):
    async with bot_world(tmp_path) as w:
        record, message = await w.poem({"style": "verse", "prompt": "ROMEO:", "length": 200})
        first = await record.first_response()
        assert first.type == 5 and first.latency < 3
        embed = message.embeds[0]
        assert embed["title"] == "Verse"
        assert "verse v1" in footer(message) and "temperature 0.8" in footer(message)
        seed = footer_seed(message)
        assert embed["description"].startswith("ROMEO\\:")
        _, again = await w.poem({"style": "verse", "prompt": "ROMEO:", "length": 200, "seed": seed})
        assert again.embeds[0]["description"] == embed["description"]
        assert message.allowed_mentions == {"parse": []}
        assert w.discord.violations == []


@asynchronous
async def test_poem_in_chinese(tmp_path):
    async with bot_world(tmp_path) as w:
        _, message = await w.poem({"style": "tang", "prompt": "春眠", "length": 48, "seed": 7})
        text = message.embeds[0]["description"]
        assert text.startswith("春眠")
        assert sum("\u4e00" <= c <= "\u9fff" for c in text) > 30
        assert "tang v1" in footer(message) and "seed 7" in footer(message)


@asynchronous
async def test_style_autocomplete_lists_live_styles(tmp_path):
    async with bot_world(tmp_path) as w:
        choices = await w.discord.autocomplete(
            w.guild, w.channel, w.member, "poem", {"style": "ta"}, focused="style"
        )
        assert [c["value"] for c in choices] == ["tang"]
        everything = await w.discord.autocomplete(
            w.guild, w.channel, w.member, "poem", {"style": ""}, focused="style"
        )
        assert [c["value"] for c in everything] == ["tang", "verse"]


@asynchronous
async def test_unknown_style_and_unknown_prompt_characters(tmp_path):
    async with bot_world(tmp_path) as w:
        _, message = await w.poem({"style": "nope"})
        assert message.ephemeral and "no style named nope" in message.content
        assert "tang, verse" in message.content
        _, message = await w.poem({"style": "verse", "prompt": "Hello 世界 🙂", "length": 30})
        field = message.embeds[0]["fields"][0]
        assert "世 界 🙂" in field["value"]


@asynchronous
async def test_a_prompt_with_a_bidi_override_comes_back_without_it(tmp_path):
    async with bot_world(tmp_path) as w:
        prompt = "\u202eHello \u2066世界\u2069"
        _, message = await w.poem({"style": "verse", "prompt": prompt, "length": 30, "seed": 3})
        assert not message.ephemeral
        assert message.embeds[0]["description"].startswith("Hello")
        # The characters the style does not know are named; the invisible ones are not there.
        unknown = message.embeds[0]["fields"][0]["value"]
        assert "世 界" in unknown and "U+20" not in unknown


@asynchronous
async def test_everyone_in_a_prompt_pings_nobody_and_cannot_break_formatting(tmp_path):
    async with bot_world(tmp_path) as w:
        role = w.guild.add_role("poets")
        prompt = f"@everyone <@&{role.id}> <@{w.member.id}> ```**bold** [x](https://e.x)"
        _, message = await w.poem({"style": "verse", "prompt": prompt, "length": 20})
        text = message.embeds[0]["description"]
        assert "\\@everyone" in text and "\\<\\@&" in text
        assert "```" not in text and "\\*\\*bold\\*\\*" in text
        for m in w.discord.messages:
            assert m.allowed_mentions == {"parse": []}, m


@asynchronous
async def test_long_poem_goes_as_an_attachment(tmp_path):
    async with bot_world(tmp_path) as w:
        _, message = await w.poem({"style": "verse", "length": 5000, "seed": 1})
        assert len(message.attachments) == 1
        attached = message.attachments[0].data.decode("utf-8")
        assert len(attached) == 5000
        assert "attached" in message.embeds[0]["description"]
        assert w.discord.violations == []


@asynchronous
async def test_channel_settings_apply_and_survive_a_restart(tmp_path, database_url):
    settings = make_settings(tmp_path, make_models(tmp_path), database_url=database_url)
    async with bot_world(tmp_path, settings=settings) as w:
        _, reply = await w.run("settings", w.moderator, {"value": 0.0}, subcommand="temperature")
        assert reply.ephemeral and "temperature 0" in reply.content
        _, reply = await w.run("settings", w.moderator, {"name": "tang"}, subcommand="style")
        _, greedy = await w.poem({"length": 40})
        assert "tang v1" in footer(greedy) and "temperature 0 " in footer(greedy)
        discord = w.discord
        await w.bot.close()
        async with bot_world(tmp_path, settings=settings, discord=discord) as w2:
            _, again = await w2.poem({"length": 40})
            assert again.embeds[0]["description"] == greedy.embeds[0]["description"]
            _, shown = await w2.run("settings", w2.moderator, subcommand="show")
            assert "style tang" in shown.content and "temperature 0" in shown.content
            await w2.run("settings", w2.moderator, subcommand="reset")
            _, default = await w2.poem({"length": 40})
            assert "verse v1" in footer(default) and "temperature 0.8" in footer(default)


@asynchronous
async def test_member_without_manage_channels_is_refused_settings(tmp_path):
    async with bot_world(tmp_path) as w:
        with pytest.raises(InvocationRefused):
            await w.discord.invoke(
                w.guild, w.channel, w.member, "settings", {"value": 1.5}, subcommand="temperature"
            )
        # A client that ignores Discord's gate still meets the bot's own check.
        _, reply = await w.run(
            "settings", w.member, {"value": 1.5}, subcommand="temperature", skip_client_checks=True
        )
        assert reply.ephemeral and "Manage Channels" in reply.content
        _, message = await w.poem({"style": "verse", "length": 10})
        assert "temperature 0.8" in footer(message)


MODEL_CALLS = [
    ("list", {}),
    ("info", {"style": "verse"}),
    ("activate", {"style": "verse", "version": "v2"}),
    ("rollback", {"style": "verse"}),
    ("reload", {}),
    ("retrain", {"style": "verse"}),
    ("add", {"name": "bard", "corpus": Upload("bard.txt", b"To be, or not to be. " * 200)}),
    ("jobs", {}),
    ("cancel", {"job": 1}),
]


PERMISSIONS_SENT = {
    "administrator": str(ALL_PERMISSIONS),
    "no permissions": "0",
    "permissions field absent": None,
}


def _drop_permissions(payload: dict) -> None:
    del payload["member"]["permissions"]


@pytest.mark.parametrize("who", ["administrator", "no permissions", "permissions field absent"])
@asynchronous
async def test_every_model_command_is_refused_to_anyone_but_the_operators(tmp_path, who):
    async with bot_world(tmp_path) as w:
        assert {o["name"] for o in w.discord.command("model")["options"]} == {
            sub for sub, _ in MODEL_CALLS
        }
        member, options = w.admin, {}
        if who != "administrator":
            # Discord would not deliver these: a client that ignores its gate sends them.
            member = w.guild.add_member(w.discord.add_user("nobody"))
            w.channel.overwrite(member, deny=ALL_PERMISSIONS)
            options["skip_client_checks"] = True
        if who == "permissions field absent":
            options["edit_payload"] = _drop_permissions
        for sub, values in MODEL_CALLS:
            record, reply = await w.run("model", member, values, subcommand=sub, **options)
            assert record.payload["member"].get("permissions") == PERMISSIONS_SENT[who]
            assert reply.ephemeral and "Only the bot's operators" in reply.content, sub
            assert len(record.messages) == 1, sub
        assert (w.root / "models" / "verse" / "ACTIVE").read_text().strip() == "v1"
        assert w.bot.registry.live("verse").version == "v1"
        assert w.bot.registry.styles() == ["tang", "verse"]
        assert sorted(p.name for p in (w.root / "models").iterdir()) == ["tang", "verse"]
        assert not (w.root / "data" / "corpora").exists()
        assert await w.bot.jobs.listing() == []


@asynchronous
async def test_operator_lists_and_inspects_models(tmp_path):
    models = make_models(tmp_path)
    make_bundle(models, "verse", "v3", seed=4, val_loss=1.8, ngram=3, ngram_weight=0.75)
    quantised = make_bundle(models, "verse", "v4", seed=5, int8=True)
    card = json.loads((quantised / "card.json").read_text())
    card["int8"]["serve"] = True
    (quantised / "card.json").write_text(json.dumps(card))
    async with bot_world(tmp_path) as w:
        _, listing = await w.run("model", w.operator, subcommand="list")
        fields = {f["name"]: f["value"] for f in listing.embeds[0]["fields"]}
        assert "v1 **live** (fp32)" in fields["verse"] and "v2" in fields["verse"]
        assert "1.900 nats/char" in fields["verse"]
        _, info = await w.run(
            "model", w.operator, {"style": "verse", "version": "v4"}, subcommand="info"
        )
        model = next(f["value"] for f in info.embeds[0]["fields"] if f["name"] == "Model")
        assert "serves int8 (int8 graph:" in model
        _, info = await w.run("model", w.operator, {"style": "tang"}, subcommand="info")
        assert info.embeds[0]["title"].startswith("Tang")
        _, info = await w.run(
            "model", w.operator, {"style": "verse", "version": "v3"}, subcommand="info"
        )
        model = next(f["value"] for f in info.embeds[0]["fields"] if f["name"] == "Model")
        assert "mixed with a 3-gram model at 0.25" in model and "serves fp32" in model


@asynchronous
async def test_hot_swap_while_poems_stream_loses_and_mixes_nothing(tmp_path):
    async with bot_world(tmp_path) as w:
        seeds = list(range(24))
        records = []
        # Each version's poems are held until the next change of version, so every one of
        # them has reached its model when the change comes, and is still being written.
        with contextlib.ExitStack() as stack:
            v1 = w.bot.registry.live("verse").scheduler
            held = stack.enter_context(holding(v1))
            for i, seed in enumerate(seeds):
                records.append(
                    await w.discord.invoke(
                        w.guild,
                        w.channel,
                        w.member,
                        "poem",
                        {"style": "verse", "length": 600, "seed": seed, "temperature": 1.0},
                    )
                )
                if i == 8:
                    await until(lambda: v1.active + v1.queued == 9, what="nine poems on v1")
                    assert all(r.original is None or r.original.loading for r in records)
                    _, swapped = await w.run(
                        "model",
                        w.operator,
                        {"style": "verse", "version": "v2"},
                        subcommand="activate",
                    )
                    assert "now serves v2" in swapped.content
                    held.release()
                    v2 = w.bot.registry.live("verse").scheduler
                    held = stack.enter_context(holding(v2))
                if i == 16:
                    await until(lambda s=v2: s.active + s.queued == 8, what="eight poems on v2")
                    _, back = await w.run(
                        "model", w.operator, {"style": "verse"}, subcommand="rollback"
                    )
                    assert "rolled back to v1" in back.content
                    held.release()
        finals = [await r.final(timeout=60) for r in records]
        versions = [footer(m).split()[1] for m in finals]
        assert set(versions) == {"v1", "v2"}
        # Each poem is exactly what its footer's version writes alone with that seed.
        for seed, message, version in zip(seeds, finals, versions, strict=True):
            _, alone = (
                await w.poem({"style": "verse", "length": 600, "seed": seed, "temperature": 1.0})
                if version == "v1"
                else (None, None)
            )
            if alone is not None:
                assert alone.embeds[0]["description"] == message.embeds[0]["description"]
        assert (w.root / "models" / "verse" / "ACTIVE").read_text().strip() == "v1"
        assert w.discord.violations == []


@asynchronous
async def test_direct_messages_poem_works_settings_refused_model_for_operators_only(tmp_path):
    async with bot_world(tmp_path) as w:
        record = await w.discord.invoke(
            None, None, w.member.user, "poem", {"style": "verse", "length": 20}
        )
        assert "verse v1" in footer(await record.final(timeout=30))
        with pytest.raises(InvocationRefused):  # Discord itself does not offer it in DMs
            await w.discord.invoke(
                None, None, w.moderator.user, "settings", {"value": 1.0}, subcommand="temperature"
            )
        record = await w.discord.invoke(
            None,
            None,
            w.moderator.user,
            "settings",
            {"value": 1.0},
            subcommand="temperature",
            skip_client_checks=True,
        )
        assert "only in servers" in (await record.final(timeout=30)).content
        record = await w.discord.invoke(None, None, w.member.user, "model", {}, subcommand="list")
        assert "Only the bot's operators" in (await record.final(timeout=30)).content
        record = await w.discord.invoke(None, None, w.operator.user, "model", {}, subcommand="list")
        assert (await record.final(timeout=30)).embeds[0]["title"] == "Models"


@asynchronous
async def test_user_cooldown_and_channel_cap_answer_privately_with_the_wait(tmp_path):
    from .botworld import make_models, make_settings

    settings = make_settings(
        tmp_path, make_models(tmp_path), user_cooldown=30.0, channel_concurrency=2
    )
    async with bot_world(tmp_path, settings=settings) as w:
        _, first = await w.poem({"style": "verse", "length": 10})
        assert first.embeds
        record, again = await w.poem({"style": "verse", "length": 10})
        assert again.ephemeral and "another poem in" in again.content
        # Refused at once, to the user alone: the channel never sees a "thinking…" for it.
        assert (await record.first_response()).type == 4 and len(record.messages) == 1
        wait = int(again.content.split(" in ")[1].split()[0])
        assert 25 <= wait <= 30
        # Two other users fill the channel with long poems; a third is told to wait.
        writers = [w.moderator, w.admin]
        scheduler = w.bot.registry.live("verse").scheduler
        with holding(scheduler) as held:  # the two long poems are written only when let
            running = [
                await w.discord.invoke(
                    w.guild, w.channel, u, "poem", {"style": "verse", "length": 5000}
                )
                for u in writers
            ]
            await until(lambda: scheduler.active + scheduler.queued == 2, what="both taken")
            held.allow(1)  # the first one's held step: the second joins the batch after it
            await until(lambda: scheduler.active == 2, what="both long poems in the batch")
            _, full = await w.poem({"style": "verse", "length": 10}, user=w.operator)
            assert full.ephemeral and "2 poems are being written in this channel" in full.content
            # 5000 characters at the measured step time: a wait in whole seconds, never zero.
            assert int(re.search(r"try again in (\d+) s\.$", full.content)[1]) >= 1
            # Another channel is served while those two are still being written: it joins
            # their batch at the step let through, and only batches of three go on.
            held.let(lambda ids: len(ids) > 2)
            other = w.guild.add_text_channel("elsewhere")
            record = await w.discord.invoke(
                w.guild, other, w.operator, "poem", {"style": "verse", "length": 10}
            )
            await until(lambda: scheduler.queued == 1, what="the other channel's poem queued")
            held.allow(1)
            assert (await record.final(timeout=30)).embeds
            assert scheduler.active == 2
        for record in running:
            assert (await record.final(timeout=60)).attachments


@asynchronous
async def test_a_version_activated_from_discord_is_still_live_after_a_restart(tmp_path):
    async with bot_world(tmp_path) as w:
        _, reply = await w.run(
            "model", w.operator, {"style": "verse", "version": "v2"}, subcommand="activate"
        )
        assert "now serves v2" in reply.content
        discord = w.discord
        await w.bot.close()
        async with bot_world(tmp_path, discord=discord) as w2:
            _, message = await w2.poem({"style": "verse", "length": 20})
            assert "verse v2" in footer(message)


@asynchronous
async def test_a_poem_cut_off_by_a_restart_says_so(tmp_path, monkeypatch):
    """A poem still being written when the bot stops, past the grace the bot waits for the
    poems in flight, is not left saying "writing…" for ever: its reply says it was cut off."""
    monkeypatch.setattr(client_module, "SHUTDOWN_GRACE_SECONDS", 0.2)
    async with bot_world(tmp_path) as w:
        scheduler = w.bot.registry.live("verse").scheduler
        with holding(scheduler) as held:  # the poem cannot finish within the grace
            record = await w.discord.invoke(
                w.guild, w.channel, w.member, "poem", {"style": "verse", "length": 5000}
            )
            await until(lambda: scheduler.active == 1, what="the poem being written")
            closing = asyncio.create_task(w.bot.close())
            await until(
                lambda: record.answer is not None and "restarted" in (record.answer.content or ""),
                what="the reply saying the poem was cut off",
            )
            held.release()
            await closing
        message = record.answer
        assert message.content == (
            "I restarted before this poem was finished; ask again in a minute."
        )
        assert not message.embeds and len(record.messages) == 1
        assert w.discord.violations == []
