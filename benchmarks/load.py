"""`/poem` under load, through the loopback Discord only: many users in many channels of several
guilds arrive in bursts, against the real bot running as its own process (`python -m bot`) with
the production defaults of `.env.example`.

Checked for every interaction: acknowledged within Discord's 3 s; answered exactly once, in its
own channel, with its own poem (the footer names the style and seed it asked for) or with a
clear "try again in N s" (engine busy, user cooldown, channel full); never silence. Checked for
the bot: no Discord rule broken, memory that stops growing, a clean exit on SIGTERM.
Reported: acknowledgement latency p50/p99/max, answer latency p50/p99, throughput, each kind of
busy answer, peak RSS. `tests/test_load.py` runs a small version of the same code.

    python -m benchmarks.load [--interactions 1000] [--users 200] [--channels 20] [--guilds 5]
                              [--seconds 60] [--seed 2026]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import itertools
import json
import os
import random
import re
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.stats import cpu_name, percentile
from bot.config import read_dotenv
from tests.botworld import TOKEN, bot_process, footer, still_writing
from tests.loopback import Channel, Guild, InteractionRecord, LoopbackDiscord, Member

ROOT = Path(__file__).resolve().parent.parent
ACK_DEADLINE = 3.0
MIB = 1024 * 1024
SHOWN_SETTINGS = (
    "MAX_BATCH",
    "MAX_QUEUE",
    "REQUEST_DEADLINE_SECONDS",
    "USER_COOLDOWN_SECONDS",
    "CHANNEL_MAX_POEMS",
)

# Prompts each style knows; short, so they are the poem's start rather than its bulk.
PROMPTS = {
    "shakespeare": ["ROMEO:", "To be, or not", "O gentle night,", "KING HENRY:"],
    "tang": ["春風", "明月", "山中", "秋夜"],
    "jaychou": ["我", "天空", "雨下", "你的"],
    "songci": ["春风", "明月", "小楼", "西风"],  # its default tune, 浣溪沙, started so
}


def prompts_for(models: Path) -> dict[str, list[str]]:
    """PROMPTS of the styles `models` holds: the crowd asks for those."""
    return {style: PROMPTS[style] for style in PROMPTS if (models / style).is_dir()}


# The answers that are not a poem, by what they tell the user (all of them say when to retry).
BUSY_ANSWERS = {
    "cooldown": re.compile(r"^You can ask for another poem in (\d+) s\.$"),
    "channel full": re.compile(
        r"^\d+ poems are being written in this channel; try again in (\d+) s\.$"
    ),
    "busy": re.compile(r"^I'm busy writing other poems; try again in (\d+) s\.$"),
}


@dataclass(frozen=True)
class Shape:
    """Who asks, where, when and for what. Arrivals: `burst_share` of them in `bursts` bursts of
    `burst_seconds` each, the rest spread evenly over `seconds`."""

    interactions: int = 1000
    users: int = 200
    channels: int = 20
    guilds: int = 5
    seconds: float = 60.0
    bursts: int = 12
    burst_share: float = 0.7
    burst_seconds: float = 0.5
    min_length: int = 50
    max_length: int = 1000
    prompt_share: float = 0.3
    temperature_share: float = 0.5
    seed: int = 2026


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds after the start
    user: int
    channel: int
    options: dict[str, Any]


def plan(shape: Shape, prompts: dict[str, list[str]]) -> list[Arrival]:
    """The arrivals, in time order; the same shape gives the same plan. Each user belongs to one
    guild and posts in its channels; each request has its own seed, so its poem is recognisable."""
    rng = random.Random(shape.seed)
    in_bursts = round(shape.interactions * shape.burst_share)
    starts = [
        (i + rng.random()) * (shape.seconds - shape.burst_seconds) / shape.bursts
        for i in range(shape.bursts)
    ]
    times = [rng.choice(starts) + rng.random() * shape.burst_seconds for _ in range(in_bursts)]
    times += [rng.random() * shape.seconds for _ in range(shape.interactions - in_bursts)]
    times.sort()
    users = [i % shape.users for i in range(shape.interactions)]
    rng.shuffle(users)
    per_guild = shape.channels // shape.guilds
    styles = sorted(prompts)
    arrivals = []
    for index, (at, user) in enumerate(zip(times, users, strict=True)):
        guild = user % shape.guilds
        style = rng.choice(styles)
        options: dict[str, Any] = {
            "style": style,
            "length": rng.randint(shape.min_length, shape.max_length),
            "seed": index + 1,
        }
        if rng.random() < shape.prompt_share:
            options["prompt"] = rng.choice(prompts[style])
        if rng.random() < shape.temperature_share:
            options["temperature"] = round(rng.uniform(0.3, 1.2), 2)
        channel = guild * per_guild + rng.randrange(per_guild)
        arrivals.append(Arrival(at, user, channel, options))
    return arrivals


@dataclass
class Crowd:
    """The loopback world the arrivals happen in."""

    guilds: list[Guild]
    channels: list[Channel]
    members: list[Member]
    warmers: list[Member]  # members who warm the bot up, outside the measured run


def populate(
    discord: LoopbackDiscord, shape: Shape, guild_id: Callable[[int], int] | None = None
) -> Crowd:
    """The guilds, channels and users of `shape`; `guild_id(g)` picks guild g's id (and so
    its shard), else Discord's next snowflake."""
    guilds = [
        discord.add_guild(f"guild-{g}", guild_id=guild_id(g) if guild_id else None)
        for g in range(shape.guilds)
    ]
    per_guild = shape.channels // shape.guilds
    channels = [guild.add_text_channel(f"poems-{c}") for guild in guilds for c in range(per_guild)]
    members = [
        guilds[u % shape.guilds].add_member(discord.add_user(f"user-{u}"))
        for u in range(shape.users)
    ]
    warmers = [guilds[0].add_member(discord.add_user(f"warm-{i}")) for i in range(3)]
    return Crowd(guilds, channels, members, warmers)


def add_env_option(parser: argparse.ArgumentParser, text: str) -> None:
    """`--env NAME=VALUE`, repeatable: a bot setting over .env.example's."""
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help=text)


def env_changes(parser: argparse.ArgumentParser, items: list[str]) -> dict[str, str]:
    """`--env NAME=VALUE` options as settings, the parser's error on one without a name."""
    changes = dict(item.split("=", 1) for item in items if "=" in item)
    if len(changes) != len(items) or not all(changes):
        parser.error("--env takes NAME=VALUE")
    return changes


def production_env(root: Path, models: Path, **changes: str) -> dict[str, str]:
    """.env.example's settings, with the machine-specific ones pointed into `root`."""
    env = {k: v for k, v in read_dotenv(ROOT / ".env.example").items() if v}
    env.update(
        MODELS_DIR=str(models),
        DATABASE_URL=f"sqlite:///{root / 'data' / 'settings.sqlite3'}",
        DISCORD_GUILD_IDS="",
    )
    env.update(changes)
    return env


class MemoryWatch:
    """Samples a process's resident memory from /proc (Linux) while the run goes on."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, int]] = []  # (seconds since start, bytes)
        self.peak = 0
        self._task: asyncio.Task | None = None
        self._start = time.monotonic()

    def _read(self) -> tuple[int, int] | None:
        try:
            status = Path(f"/proc/{self.pid}/status").read_text()
        except OSError:
            return None
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024

    def sample(self) -> int | None:
        read = self._read()
        if read is None:
            return None
        self.samples.append((time.monotonic() - self._start, read[0]))
        self.peak = max(self.peak, read[1])
        return read[0]

    async def _run(self) -> None:
        while self.sample() is not None:
            await asyncio.sleep(self.every)

    def start(self) -> None:
        self._start = time.monotonic()
        self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.sample()


@dataclass
class Outcome:
    """What one interaction got: its kind of answer, latencies, and what was wrong with it."""

    arrival: Arrival
    kind: str  # "poem", one of BUSY_ANSWERS, or "none"
    ack: float | None
    answer: float | None
    wait: int | None = None  # the "try again in N s" of a busy answer
    first_text: float | None = None  # to the first write showing the poem (streamed or whole)
    edits: int = 0  # streamed edits before the finished poem
    rest_calls: int = 0  # REST calls the bot made for this interaction
    dispatched_at: float | None = None  # the loopback's clock (time.monotonic) at dispatch
    problems: list[str] = field(default_factory=list)

    @property
    def answered_at(self) -> float:
        """Seconds from the run's start to the answer (to the arrival if there was none)."""
        return self.arrival.at + (self.answer or 0.0)


def judge(arrival: Arrival, record: InteractionRecord) -> Outcome:
    """Classify an interaction's answer and name every invariant it breaks."""
    accepted = [c for c in record.callbacks if c.accepted]
    outcome = Outcome(arrival, "none", accepted[0].latency if accepted else None, None)
    outcome.dispatched_at = record.dispatched_at
    problems = outcome.problems
    if not accepted:
        problems.append("never acknowledged")
    elif outcome.ack > ACK_DEADLINE:
        problems.append(f"acknowledged after {outcome.ack:.2f} s")
    if len(record.callbacks) > 1 or len(record.shown) > 1:
        problems.append("answered more than once")
    message = record.answer  # a refusal after the defer: the defer deleted, a private followup
    if message is None or not message.versions or still_writing(message):
        problems.append("no answer" if message is None else "never finished")
        return outcome
    # A poem may stream in: edits marked "writing…", each showing more of the same poem, then
    # the finished poem, once, last.
    bodies = [v.body for v in message.versions]
    streamed = [b for b in bodies[:-1] if _writing(b)]
    if len(streamed) != len(bodies) - 1:
        problems.append(f"answer written {len(bodies) - len(streamed)} times")
    shown = [_description(b) for b in [*streamed, bodies[-1]]]
    growing = all(b.startswith(a) for a, b in itertools.pairwise(shown[:-1]))
    if not growing or not all(shown[-1].startswith(a) or a.startswith(shown[-1]) for a in shown):
        problems.append("a streamed edit is not the beginning of the poem")
    outcome.edits = len(streamed)
    outcome.first_text = message.versions[0].received_at - record.dispatched_at
    outcome.answer = message.versions[-1].received_at - record.dispatched_at
    if message.embeds:
        outcome.kind = "poem"
        style, seed = arrival.options["style"], arrival.options["seed"]
        text = footer(message).split("\n")[-1]  # under a theme's line, where it has one
        if not text.startswith(f"{style} ") or f"seed {seed}" not in text or message.ephemeral:
            problems.append(f"someone else's poem or a private one: {text!r}")
        return outcome
    matches = ((k, p.match(message.content)) for k, p in BUSY_ANSWERS.items())
    kind, match = next(((k, m) for k, m in matches if m), (None, None))
    if match is None:
        problems.append(f"unclear answer: {message.content[:200]!r}")
    else:
        outcome.kind, outcome.wait = kind, int(match[1])
        if kind != "busy" and not message.ephemeral:
            problems.append(f"{kind} answered in public")
    return outcome


def _writing(body: dict[str, Any]) -> bool:
    embeds = body.get("embeds") or []
    return bool(embeds) and "✍️" in ((embeds[0].get("footer") or {}).get("text") or "")


def _description(body: dict[str, Any]) -> str:
    embeds = body.get("embeds") or []
    text = (embeds[0].get("description") or "") if embeds else ""
    return text.split("…\n\n*The whole poem", 1)[0]  # an attachment's preview: its beginning


def memory_problems(watch: MemoryWatch, middle: float, end: float) -> tuple[dict, list[str]]:
    """Resident memory at the run's start, middle and end. Bounded: the second half of the run,
    which has as many arrivals as the first, must not grow it by more than a quarter of what the
    first half did (plus 32 MiB for the allocator's and threads' own warm-up)."""
    if not watch.samples:
        return {"measured": False}, []

    def at(t: float) -> int:
        return min(watch.samples, key=lambda s: abs(s[0] - t))[1]

    start, mid, last = watch.samples[0][1], at(middle), at(end)
    memory = {
        "measured": True,
        "start_mib": start / MIB,
        "middle_mib": mid / MIB,
        "end_mib": last / MIB,
        "peak_mib": watch.peak / MIB,
    }
    allowed = 0.25 * max(mid - start, 0) + 32 * MIB
    problems = []
    if last - mid > allowed:
        problems.append(
            f"memory kept growing: {mid / MIB:.0f} MiB at the middle, {last / MIB:.0f} MiB at "
            f"the end (allowed +{allowed / MIB:.0f} MiB)"
        )
    return memory, problems


@dataclass
class Report:
    shape: Shape
    env: dict[str, str]
    outcomes: list[Outcome]
    problems: list[str]  # every broken invariant, per interaction and for the whole run
    summary: dict[str, Any]

    @property
    def counts(self) -> dict[str, int]:
        return count_kinds(self.outcomes)


def count_kinds(outcomes: list[Outcome]) -> dict[str, int]:
    counts = dict.fromkeys(["poem", *BUSY_ANSWERS, "none"], 0)
    for outcome in outcomes:
        counts[outcome.kind] += 1
    return counts


async def warm_up(discord: LoopbackDiscord, crowd: Crowd, styles: list[str]) -> None:
    """One short poem per style, answered before the measured run starts (60 characters: a
    tune's shortest poem needs 48, and a shorter request is refused, warming nothing)."""
    guild, channel = crowd.guilds[0], crowd.channels[0]
    records = [
        await discord.invoke(guild, channel, who, "poem", {"style": style, "length": 60})
        for who, style in zip(crowd.warmers, styles, strict=False)
    ]
    for record in records:
        await record.final(timeout=60)


@contextlib.contextmanager
def harness_collector_off():
    """The harness (the loopback Discord and the crowd, in this process) collects no garbage
    while it drives the crowd and waits for the answers: Python's collections there ran inside
    whichever of its callbacks allocated and stalled its loop for up to 120 ms, so a frame it
    sent or an acknowledgement it received was stamped that much late, and counted against the
    bot. Discord's own servers are not in the bot's machine. What this process kept alive
    before is frozen out of the collector; the garbage of one run (a minute or two) is
    collected after it."""
    gc.collect()
    gc.freeze()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was:
            gc.enable()
        gc.collect()


async def drive(
    discord: LoopbackDiscord, crowd: Crowd, arrivals: list[Arrival]
) -> tuple[list[InteractionRecord], float]:
    """Dispatch every arrival at its time; returns the records and the worst lateness."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    records, late = [], 0.0
    for arrival in arrivals:
        await asyncio.sleep(max(0.0, start + arrival.at - loop.time()))
        late = max(late, loop.time() - start - arrival.at)
        channel = crowd.channels[arrival.channel]
        member = crowd.members[arrival.user]
        records.append(
            await discord.invoke(channel.guild, channel, member, "poem", arrival.options)
        )
    return records, late


async def settle(
    discord: LoopbackDiscord, records: list[InteractionRecord], timeout: float
) -> None:
    """Wait until every interaction has its answer (or `timeout` passes), then a little longer,
    so an answer sent twice is seen too."""
    pending = set(records)

    def answered() -> bool:
        pending.difference_update(
            [r for r in pending if r.answer is not None and not still_writing(r.answer)]
        )
        return not pending

    with contextlib.suppress(TimeoutError):
        await discord.wait_for(answered, timeout=timeout, what="answer to every interaction")
    await asyncio.sleep(1.0)


async def run_load(
    root: Path,
    models: Path,
    shape: Shape,
    prompts: dict[str, list[str]],
    **env_changes: str,
) -> Report:
    """Run `shape` against a bot serving `models`, and judge every interaction."""
    env = production_env(root, models, **env_changes)
    arrivals = plan(shape, prompts)
    deadline = float(env.get("REQUEST_DEADLINE_SECONDS", 60))
    async with LoopbackDiscord(token=TOKEN) as discord:
        crowd = populate(discord, shape)
        async with bot_process(root, discord, env) as bot:
            await discord.wait_for(discord.global_commands, timeout=60, what="synced commands")
            await warm_up(discord, crowd, sorted(prompts))
            warm = len(discord.messages)
            watch = MemoryWatch(bot.process.pid)
            load_before = os.getloadavg()
            watch.start()
            began = time.monotonic()
            with harness_collector_off():
                records, late = await drive(discord, crowd, arrivals)
                await settle(discord, records, timeout=deadline + 30)
            watch.stop()
            wall = time.monotonic() - began
            bot.process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(bot.process.wait(), 120)
        log = await bot.log()
        outcomes = [judge(a, r) for a, r in zip(arrivals, records, strict=True)]
        calls: dict[str, int] = {}
        for call in discord.requests:
            parts = call.path.split("/")
            if len(parts) > 3 and parts[1] in ("interactions", "webhooks"):
                calls[parts[3]] = calls.get(parts[3], 0) + 1  # by interaction token
        for outcome, record in zip(outcomes, records, strict=True):
            outcome.rest_calls = calls.get(record.token, 0)
        rate_limited = len(discord.rate_limit_hits)
        problems = [
            f"/poem #{o.arrival.options['seed']} ({o.arrival.options['style']}): {p}"
            for o in outcomes
            for p in o.problems
        ]
        problems += [f"Discord refused: {v.rule}: {v.detail}" for v in discord.violations]
        run_messages = discord.messages[warm:]
        stray = [m for m in run_messages if m.interaction_id not in {r.id for r in records}]
        problems += [
            f"a message outside any interaction: {m.kind} {m.content[:80]!r}" for m in stray
        ]
        if code != 0:
            problems.append(f"the bot exited with {code} after SIGTERM:\n{log[-2000:]}")
        problems += [f"the bot logged: {line}" for line in log.splitlines() if " ERROR " in line]
        memory, memory_issues = memory_problems(watch, shape.seconds / 2, wall)
        problems += memory_issues
    summary = summarise(shape, outcomes, wall, late, memory)
    summary["rate_limited_429s"] = rate_limited
    summary["load_average_before"] = [round(x, 2) for x in load_before]
    summary["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    summary["cpu"] = cpu_name()
    return Report(shape, env, outcomes, problems, summary)


def summarise(
    shape: Shape, outcomes: list[Outcome], wall: float, late: float, memory: dict
) -> dict[str, Any]:
    def pct(values: list[float], q: float) -> float | None:
        return percentile(values, q) if values else None

    acks = [o.ack for o in outcomes if o.ack is not None]
    poems = [o for o in outcomes if o.kind == "poem"]
    answers = [o.answer for o in poems if o.answer is not None]
    firsts = [o.first_text for o in poems if o.first_text is not None]
    refusals = [o.answer for o in outcomes if o.kind != "poem" and o.answer is not None]
    last = max(o.answered_at for o in outcomes)
    characters = sum(o.arrival.options["length"] for o in poems)
    delivered: dict[int, list[float]] = {}
    for o in poems:
        delivered.setdefault(o.arrival.channel, []).append(o.answered_at)
    freed = []
    for o in outcomes:
        later = [t for t in delivered.get(o.arrival.channel, []) if t > o.answered_at]
        if o.kind == "channel full" and later:
            freed.append(round(min(later) - o.answered_at, 2))

    def ms(value: float | None) -> float | None:
        return None if value is None else round(1e3 * value, 1)

    return {
        "interactions": len(outcomes),
        "answers": count_kinds(outcomes),
        "ack_ms": {
            "p50": ms(pct(acks, 0.5)),
            "p99": ms(pct(acks, 0.99)),
            "max": ms(max(acks, default=None)),
        },
        "poem_answer_ms": {
            "p50": ms(pct(answers, 0.5)),
            "p99": ms(pct(answers, 0.99)),
            "max": ms(max(answers, default=None)),
        },
        "poem_first_text_ms": {
            "p50": ms(pct(firsts, 0.5)),
            "p99": ms(pct(firsts, 0.99)),
            "max": ms(max(firsts, default=None)),
        },
        "rest_calls_per_poem": {
            "mean": round(sum(o.rest_calls for o in poems) / len(poems), 2) if poems else None,
            "max": max((o.rest_calls for o in poems), default=None),
        },
        "streamed_edits_per_poem": {
            "mean": round(sum(o.edits for o in poems) / len(poems), 2) if poems else None,
            "max": max((o.edits for o in poems), default=None),
            "poems_streamed": sum(o.edits > 0 for o in poems),
        },
        "busy_answer_ms": {
            "p50": ms(pct(refusals, 0.5)),
            "p99": ms(pct(refusals, 0.99)),
            "max": ms(max(refusals, default=None)),
        },
        "promised_wait_s": {
            kind: {"p50": pct(waits, 0.5), "max": max(waits)}
            for kind in BUSY_ANSWERS
            if (waits := [o.wait for o in outcomes if o.kind == kind])
        },
        # How good the channel-full promise was: when that channel's next poem was delivered.
        "channel_full_slot_freed_after_s": {
            "p50": pct(freed, 0.5),
            "max": max(freed, default=None),
        },
        "throughput": {
            "poems_per_s": round(len(poems) / last, 2),
            "characters_per_s": round(characters / last, 1),
            "interactions_per_s": round(len(outcomes) / shape.seconds, 2),
        },
        "seconds_until_last_answer": round(last, 1),
        "wall_seconds": round(wall, 1),
        "dispatch_lateness_ms": ms(late),
        "memory": {k: round(v, 1) if isinstance(v, float) else v for k, v in memory.items()},
    }


def markdown(report: Report, command: str, baseline: Path | None = None) -> str:
    s, shape, mem = report.summary, report.shape, report.summary["memory"]
    limits = ", ".join(f"{k}={report.env[k]}" for k in SHOWN_SETTINGS if k in report.env)

    def row(name: str, key: str) -> str:
        return f"| {name} | {s[key]['p50']} | {s[key]['p99']} | {s[key]['max']} |"

    verdict = f"{len(report.problems)} broken:" if report.problems else "all held."
    return "\n".join(
        [
            "# `/poem` under load through the loopback Discord",
            "",
            f"`{command}`",
            "",
            "The bot runs as its own process (`python -m bot`) with .env.example's settings "
            f"({limits}); the loopback Discord and the simulated users share the benchmark's "
            "process. Acknowledgement: from the INTERACTION_CREATE dispatch to the bot's first "
            "callback reaching the loopback; answer: to the poem (or refusal) reaching it.",
            "",
            f"{s['interactions']} interactions from {shape.users} users in {shape.channels} "
            f"channels of {shape.guilds} guilds over {shape.seconds:g} s: "
            f"{shape.burst_share:.0%} in {shape.bursts} bursts of {shape.burst_seconds:g} s, the "
            f"rest spread evenly; lengths {shape.min_length}-{shape.max_length}, "
            f"{shape.prompt_share:.0%} with a prompt, styles mixed evenly. Each arrival's user is "
            "drawn at random ("
            f"{shape.interactions // shape.users} each), so some ask again inside their cooldown.",
            "",
            "| answer | count |",
            "|---|---:|",
            *[f"| {kind} | {n} |" for kind, n in s["answers"].items()],
            "",
            "| latency (ms) | p50 | p99 | max |",
            "|---|---:|---:|---:|",
            row("acknowledgement", "ack_ms"),
            row("poem: first text shown", "poem_first_text_ms"),
            row("poem answer (finished)", "poem_answer_ms"),
            row("busy answer", "busy_answer_ms"),
            "",
            f"Streaming (STREAM_EDIT_SECONDS={report.env.get('STREAM_EDIT_SECONDS', '?')}): "
            f"{s['streamed_edits_per_poem']['poems_streamed']} of {s['answers']['poem']} poems "
            f"were shown while written, {s['streamed_edits_per_poem']['mean']} edits per poem "
            f"(max {s['streamed_edits_per_poem']['max']}); REST calls per poem "
            f"{s['rest_calls_per_poem']['mean']} (max {s['rest_calls_per_poem']['max']}), the "
            "defer and every write counted; requests refused with 429 by the loopback's per-route "
            f"limits (5 writes per interaction per 5 s): {s['rate_limited_429s']}.",
            *_before(s, baseline),
            "",
            "Busy answers promised a retry in: "
            + "; ".join(
                f"{kind} {w['p50']} s (p50), {w['max']} s (max)"
                for kind, w in s["promised_wait_s"].items()
            )
            + f". After a channel-full answer, that channel's next poem was delivered "
            f"{s['channel_full_slot_freed_after_s']['p50']} s later (p50), "
            f"{s['channel_full_slot_freed_after_s']['max']} s (max).",
            "",
            f"Throughput: {s['throughput']['poems_per_s']} poems/s, "
            f"{s['throughput']['characters_per_s']} characters/s, measured until the last "
            f"answer, {s['seconds_until_last_answer']} s after the first arrival.",
            "",
            f"Bot memory (RSS): {mem.get('start_mib')} MiB at the start, {mem.get('middle_mib')} "
            f"MiB at the middle, {mem.get('end_mib')} MiB at the end; peak {mem.get('peak_mib')} "
            "MiB. Poems written at once are bounded by CHANNEL_MAX_POEMS per channel "
            f"({int(report.env.get('CHANNEL_MAX_POEMS', 0)) * shape.channels} here) before "
            f"the engine's MAX_QUEUE; the engine said busy {s['answers']['busy']} times.",
            "",
            f"Machine: {os.cpu_count()} cores ({s.get('cpu', 'unknown')}), shared with other "
            "work; load average before "
            f"{s['load_average_before']}, after {s['load_average_after']}.",
            "",
            f"Invariants: {verdict}",
            *[f"- {p}" for p in report.problems[:50]],
            "",
        ]
    )


def _before(s: dict[str, Any], baseline: Path | None) -> list[str]:
    """A baseline run's figures (`--baseline`: the load.json of the same command on other
    code, run beside this one), next to this run's."""
    if baseline is None:
        return []
    old = json.loads(baseline.read_text())

    def cell(run: dict[str, Any], key: str, q: str = "p99") -> str:
        value = (run.get(key) or {}).get(q)
        return "-" if value is None else f"{value}"

    def both(name: str, key: str, q: str = "p99") -> str:
        return f"| {name} | {cell(old, key, q)} | {cell(s, key, q)} |"

    return [
        "",
        f"| beside `{old.get('label') or old.get('command') or baseline.name}` | before | now |",
        "|---|---:|---:|",
        both("acknowledgement p50 (ms)", "ack_ms", "p50"),
        both("acknowledgement p99 (ms)", "ack_ms"),
        both("poem answer p99 (ms)", "poem_answer_ms"),
        f"| poems | {old['answers']['poem']} | {s['answers']['poem']} |",
        both("REST calls per poem", "rest_calls_per_poem", "mean"),
        f"| 429s met | {old.get('rate_limited_429s', '-')} | {s['rate_limited_429s']} |",
        f"| load average before | {old.get('load_average_before')} | {s['load_average_before']} |",
    ]


CLI = ("interactions", "users", "channels", "guilds", "seconds", "seed")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    defaults = Shape()
    for name in CLI:
        value = getattr(defaults, name)
        p.add_argument(f"--{name}", type=type(value), default=value)
    p.add_argument("--models", type=Path, default=ROOT / "models")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument(
        "--database-url",
        default="",
        help="the bot's DATABASE_URL (default: a SQLite file in the run's temporary folder)",
    )
    p.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a load.json of the same command on other code, run beside this one, to compare",
    )
    add_env_option(
        p, "a bot setting over .env.example's (repeatable), e.g. GC_SECONDS=0 for a baseline"
    )
    args = p.parse_args()
    changes = env_changes(p, args.env)
    shape = dataclasses.replace(defaults, **{k: getattr(args, k) for k in CLI})
    command = "python -m benchmarks.load " + " ".join(f"--{k} {getattr(args, k):g}" for k in CLI)
    command += "".join(f" --env {item}" for item in args.env)
    prompts = prompts_for(args.models)
    with tempfile.TemporaryDirectory() as tmp:
        if args.database_url:
            changes["DATABASE_URL"] = args.database_url
        report = asyncio.run(run_load(Path(tmp), args.models.resolve(), shape, prompts, **changes))
    private = ("MODELS_DIR", "DATABASE_URL")
    result = {
        "command": command,
        "shape": dataclasses.asdict(shape),
        "settings": {k: v for k, v in report.env.items() if k not in private},
        **report.summary,
        "problems": report.problems,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "load.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    text = markdown(report, command, args.baseline)
    (args.out / "load.md").write_text(text)
    print(text)
    raise SystemExit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
