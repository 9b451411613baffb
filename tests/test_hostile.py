"""Hostile input to every /poem, /settings and /model option, through the loopback Discord, as
hypothesis properties: each gets an answer the user sees (a private one when it is refused),
Discord's limits hold, nothing pings, no path outside the models and data folders is opened,
listed, created or removed, and a normal /poem still works afterwards.

Discord's own client would not send many of these (values past an option's bounds, a prompt
past its max_length, a command the member cannot see); `Hostile.send` sends them anyway, as a
modified client can. Run with `--hypothesis-show-statistics` for the number of cases.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import lzma
import math
import os
import re
import sys
import unicodedata
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, currently_in_test_context, event, example, given, settings
from hypothesis import strategies as st

from bot.discord_app.model_command import MAX_EPOCHS
from bot.discord_app.poem_command import MAX_SEED, MAX_TEMPERATURE
from bot.engine.bundle import check_name
from bot.engine.scheduler import Limits
from bot.forms.hidden import visible

from .botworld import ROOT, World, WorldThread, footer, make_models, make_settings, world_thread
from .loopback import Channel, InteractionRecord, InvocationRefused, Member, Message, Upload

pytestmark = pytest.mark.timeout(300)

MAX_LENGTH = 300
MAX_PROMPT = 500
MAX_CORPUS = 64 * 1024
CASES = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- what a hostile user types ---------------------------------------------------------------

SPECIAL = [
    "\x00",
    "\x07",
    "\x1b[31m",
    "\r\n",
    "\t",
    "\u202e",  # right-to-left override
    "\u2066",  # left-to-right isolate
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\ufeff",
    "\u00ad",
    "@everyone",
    "@here",
    "<@123456789012345678>",
    "<@&123456789012345678>",
    "<#123456789012345678>",
    "</poem:123456789012345678>",
    "<t:0:R>",
    "<:pog:123456789012345678>",
    "```",
    "```py\nprint('hi')\n```",
    "**bold**",
    "__under__",
    "~~strike~~",
    "||spoiler||",
    "> quote",
    "# heading",
    "-# small",
    "[link](https://example.com)",
    "https://example.com",
    "\\",
    "👨\u200d👩\u200d👧\u200d👦",
    "🏳️\u200d🌈",
    "𝕳𝖊𝖑𝖑𝖔",
    "\U000e0001",
    "\U0010fffd",
    "ﷺ",
]
COMBINING = ["\u0301", "\u0336", "\u20dd", "\u0489"]

pieces = st.one_of(
    st.sampled_from(SPECIAL),
    st.text(max_size=20),
    st.builds(lambda mark, n: "Z" + mark * n, st.sampled_from(COMBINING), st.integers(1, 400)),
)
prompts = st.one_of(
    st.lists(pieces, max_size=8).map("".join),
    # Around the bound and up to the 6,000 characters Discord allows any string option.
    st.builds(
        lambda piece, n: (piece * n)[:n],
        st.sampled_from([*SPECIAL, "a", "春"]),
        st.sampled_from([MAX_PROMPT - 1, MAX_PROMPT, MAX_PROMPT + 1, 6000]) | st.integers(1, 6000),
    ),
)

TRAVERSALS = [
    "..",
    "../",
    "../outside.txt",
    "../../../../etc/passwd",
    "..\\..\\outside.txt",
    "verse/../verse",
    "verse/../../outside.txt",
    "./verse",
    "verse/v1",
    "%2e%2e%2foutside.txt",
    "....//",
    "verse\x00",
    "\x00",
    "verse\x00/../../outside.txt",
    "/etc/passwd",
    "/",
    "~",
    "~/.ssh/id_rsa",
    "C:\\Windows\\win.ini",
    "\\\\server\\share",
    # The repository's own models: a name the bot joined onto its models folder would reach them.
    str(ROOT / "models" / "shakespeare"),
    str(ROOT / "models" / "shakespeare" / "v1"),
]
LOOKALIKES = [
    "vеrse",  # Cyrillic е
    "ｖｅｒｓｅ",  # full width
    "verse\u200b",
    "VERSE",
    "verse ",
    " verse",
    "vérse",
    "tanɡ",  # Latin script g
    "ᴠerse",
    "verse\u202e",
]
names = st.one_of(
    st.sampled_from(TRAVERSALS + LOOKALIKES),
    st.lists(
        st.sampled_from(["..", ".", "", "verse", "v1", "outside.txt", "\x00"]), min_size=2
    ).map("/".join),
    st.text(max_size=40),
    st.builds(
        lambda piece, n: (piece * n)[:n],
        st.sampled_from(["../", "@", "`", "é", "🙂"]),
        st.integers(10, 6000),
    ),
)


def invalid(name: str) -> bool:
    try:
        check_name(name)
    except ValueError:
        return True
    return False


temperatures = st.one_of(
    st.sampled_from(
        [-math.inf, math.nan, math.inf, -0.0, 0.0, MAX_TEMPERATURE, -1e-300, 5e-324, 1e-300, 1e308]
    ),
    st.floats(-1.0, MAX_TEMPERATURE + 1.0),
    st.just(MAX_TEMPERATURE).map(lambda t: math.nextafter(t, math.inf)),
)
lengths = st.one_of(
    st.sampled_from([-(2**63), -1, 0, 1, MAX_LENGTH, MAX_LENGTH + 1, 2**53, 2**64]),
    st.integers(-5, 40),
)
seeds = st.one_of(
    st.sampled_from([0, MAX_SEED, MAX_SEED + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -1, -(2**63)]),
    st.integers(0, 2**16),
)

TEXT = ("To be, or not to be, that is the question. " * 60).encode()


def _compressed(kind: str, data: bytes) -> bytes:
    if kind == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            archive.writestr("corpus.txt", data)
        return buffer.getvalue()
    return {"gzip": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}[kind](data)


uploads = st.one_of(
    st.just(b"").map(lambda b: ("empty", b)),
    st.binary(max_size=4000).map(lambda b: ("not UTF-8", b"poem " + b + b"\xff")),
    st.just(("UTF-16", "\ufeff".encode("utf-16-le") + TEXT.decode().encode("utf-16-le"))),
    st.sampled_from(["zip", "gzip", "bz2", "xz"]).map(lambda k: (k, _compressed(k, TEXT))),
    st.sampled_from([b"7z\xbc\xaf\x27\x1c", b"(\xb5/\xfd"]).map(lambda m: ("archive", m + TEXT)),
    st.integers(1, len(TEXT) - 1).map(lambda n: ("NUL", TEXT[:n] + b"\x00" + TEXT[n:])),
    st.integers(1, 1999).map(lambda n: ("too short", TEXT[:n])),
    st.integers(MAX_CORPUS + 1, 4 * MAX_CORPUS).map(lambda n: ("huge", (TEXT * 100)[:n])),
)
# What each kind of upload is told (the reason, in words the operator can act on).
UPLOAD_REASONS = {
    "empty": "at least 2,000",
    "not UTF-8": "not UTF-8",
    "UTF-16": "not UTF-8",
    "zip": "zip archive",
    "gzip": "gzip file",
    "bz2": "bzip2 file",
    "xz": "xz file",
    "archive": "extract it",
    "NUL": "NUL characters",
    "too short": "at least 2,000",
    "huge": "the limit is",
}


# -- the world and what it may touch ---------------------------------------------------------

# Audit events that name a path the process opens, lists, creates, renames or removes, and
# which of their arguments are paths.
AUDITED = {
    "open": (0,),
    "os.listdir": (0,),
    "os.scandir": (0,),
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.truncate": (0,),
    "os.symlink": (0, 1),
    "os.link": (0, 1),
    "os.chmod": (0,),
    "os.utime": (0,),
    "shutil.copyfile": (0, 1),
    "shutil.move": (0, 1),
    "shutil.rmtree": (0,),
    "sqlite3.connect": (0,),
}


class FileAudit:
    """Every path Python code in this process touches (see AUDITED) while `watching`."""

    def __init__(self, inside: list[Path]) -> None:
        # Python's own installation too: a module imported late (an encoding) is read there.
        python = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
        self.inside = [os.path.realpath(p) for p in [*inside, *python]]
        self.touched: list[tuple[str, Any]] = []
        self.armed = False
        sys.addaudithook(self._hook)  # hooks stay for the process: disarmed, it does nothing

    def _hook(self, name: str, args: tuple) -> None:
        if self.armed and name in AUDITED:
            self.touched += [
                (name, args[i])
                for i in AUDITED[name]
                if i < len(args) and isinstance(args[i], (str, bytes, os.PathLike))
            ]

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        self.touched.clear()
        self.armed = True
        try:
            yield
        finally:
            self.armed = False

    def outside(self) -> list[tuple[str, str]]:
        paths = [(name, os.path.abspath(os.fsdecode(p))) for name, p in self.touched]
        return [
            (name, p)
            for name, p in paths
            if not any(p == root or p.startswith(root + os.sep) for root in self.inside)
        ]


@dataclass
class Hostile:
    running: WorldThread
    audit: FileAudit
    lab: Channel  # where /settings properties change things, away from the /poem ones

    @property
    def w(self) -> World:
        return self.running.world

    def send(
        self,
        command: str,
        options: dict[str, Any],
        user: Member | None = None,
        label: bool = True,
        **where: Any,
    ) -> tuple[InteractionRecord, Message]:
        """`user` (default: a plain member) runs the command; sent even where Discord's client
        would refuse to. Returns the record and the answer the user sees, and checks that no
        path outside the bot's folders was touched and no Discord rule broken."""
        w = self.w
        channel = where.pop("channel", w.channel)

        async def go():
            args = (w.guild, channel, user or w.member, command, options)
            try:
                record = await w.discord.invoke(*args, **where)
                delivered = True
            except InvocationRefused:
                record = await w.discord.invoke(*args, **where, skip_client_checks=True)
                delivered = False
            return delivered, record, await record.final(timeout=10)

        broken = len(w.discord.violations)
        with self.audit.watching():
            delivered, record, answer = self.running.run(go())
        if label and currently_in_test_context():
            event("Discord's client sends it" if delivered else "only a modified client sends it")
        assert self.audit.outside() == []
        assert w.discord.violations[broken:] == []
        assert len(record.shown) == 1
        assert answer.allowed_mentions == {"parse": []}
        return record, answer

    def show(self) -> str:
        _, shown = self.send(
            "settings", {}, self.w.moderator, label=False, channel=self.lab, subcommand="show"
        )
        return shown.content


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Iterator[Hostile]:
    root = tmp_path_factory.mktemp("hostile")
    models = make_models(root)
    (root / "outside.txt").write_text("a file next to the models folder\n")
    world_settings = make_settings(
        root,
        models,
        limits=Limits(max_length=MAX_LENGTH, max_prompt=MAX_PROMPT),
        default_length=100,
        max_corpus_bytes=MAX_CORPUS,
    )
    audit = FileAudit([models, root / "data"])
    with world_thread(root, world_settings) as running:
        hostile = Hostile(running, audit, running.world.guild.add_text_channel("settings-lab"))
        # The audit sees what the bot reads: /model list opens every bundle's card.
        hostile.send("model", {}, running.world.operator, subcommand="list")
        assert str(models / "verse" / "v2" / "card.json") in {
            os.fsdecode(path) for _, path in audit.touched
        }
        yield hostile
    assert sorted(p.name for p in root.iterdir()) == ["data", "models", "outside.txt"]


@pytest.fixture(autouse=True)
def still_writes(hostile) -> Iterator[None]:
    """After every property, a plain /poem is still answered with a poem."""
    yield
    _, message = hostile.send("poem", {"style": "verse", "length": 30, "seed": 1})
    assert "verse v1" in footer(message) and "seed 1" in footer(message)


# -- the properties --------------------------------------------------------------------------

# A Discord markdown or mention character with an even number of backslashes before it is live.
LIVE_MARKUP = re.compile(r"(?<!\\)(?:\\\\)*[@<*_~`|>#\[\]]")


def invisible(c: str) -> bool:
    """Control and format characters (bidi overrides, zero-width joiners, NUL...)."""
    return c != "\n" and unicodedata.category(c) in ("Cc", "Cf")


def assert_inert(text: str) -> None:
    """Shown literally: no markdown, mention or link syntax left live, nothing invisible but
    the joiners of emoji sequences (and a flag's tags)."""
    assert LIVE_MARKUP.search(text) is None, text
    for i, c in enumerate(text):
        if c == "\u200d":  # joins two emoji, past skin tones and the presentation selector
            before = text[:i].rstrip("\ufe0f\U0001f3fb\U0001f3fc\U0001f3fd\U0001f3fe\U0001f3ff")
            after = text[i + 1 : i + 2]
            assert before and unicodedata.category(before[-1]) == "So", text
            assert after and unicodedata.category(after) == "So", text
        elif 0xE0020 <= ord(c) <= 0xE007F:
            assert text[:i].rstrip("".join(map(chr, range(0xE0020, 0xE0080))))[-1:] == "🏴", text
        else:
            assert not invisible(c), text


def unescaped(text: str) -> str:
    """What Discord renders for text whose markdown is escaped with backslashes."""
    return re.sub(r"\\(.)", r"\1", text)


@settings(CASES, max_examples=300)
@given(prompt=prompts)
def test_any_prompt_gets_an_inert_poem_or_a_private_reason(hostile, prompt):
    _, answer = hostile.send("poem", {"style": "verse", "prompt": prompt, "length": 20})
    if len(prompt) > MAX_PROMPT:
        event("too long: refused")
        assert answer.ephemeral and f"at most {MAX_PROMPT} characters" in answer.content
        return
    event("poem")
    assert not answer.ephemeral and "verse v1" in footer(answer)
    embed = answer.embeds[0]
    assert_inert(embed["description"])
    for field in embed.get("fields", []):
        assert_inert(field["value"])
    # The poem starts with the prompt as typed, less what cannot be seen.
    assert unescaped(embed["description"]).startswith(
        visible(prompt)  # tests/test_hidden.py: what that leaves
    )


def _error_words(length, temperature, seed) -> list[str]:
    """What the answer must name: every option out of its bounds, in the order checked."""
    wrong = []
    if length is not None and not 1 <= length <= MAX_LENGTH:
        wrong.append("Length must be between 1")
    if temperature is not None and not 0.0 <= temperature <= MAX_TEMPERATURE:
        wrong.append("Temperature must be between 0")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        wrong.append("The seed must be between 0")
    return wrong


@settings(CASES, max_examples=300)
@given(length=lengths | st.none(), temperature=temperatures | st.none(), seed=seeds | st.none())
def test_numbers_at_and_past_their_bounds(hostile, length, temperature, seed):
    options = {"style": "verse", "length": length, "temperature": temperature, "seed": seed}
    options = {k: v for k, v in options.items() if v is not None}
    _, answer = hostile.send("poem", options)
    wrong = _error_words(length, temperature, seed)
    if wrong:
        event("out of bounds: refused")
        assert answer.ephemeral and wrong[0] in answer.content, (wrong, answer.content)
        return
    event("poem")
    shown = footer(answer)
    if temperature is not None:
        assert f"temperature {temperature + 0.0:g} " in shown
    if seed is not None:
        assert f"seed {seed}" in shown
    written = unescaped(answer.embeds[0]["description"])
    # The unknown id (shown as U+FFFD) is never written, whatever the temperature.
    assert "\ufffd" not in written
    if length is not None:
        assert len(written) == length


@settings(CASES, max_examples=200)
@given(name=names)
@example(name="✍️ writing…")  # a refusal quoting the bot's own "writing" marker is still final
def test_style_names_never_leave_the_models_folder(hostile, name):
    w = hostile.w
    if name in ("", *w.bot.registry.styles()):
        return  # a style that exists, or none given (the channel's or the default is used)
    _, answer = hostile.send("poem", {"style": name, "length": 10})
    assert answer.ephemeral and "There is no style named" in answer.content
    assert "Styles: tang, verse." in answer.content
    assert_inert(answer.content)
    broken = len(w.discord.violations)
    typed = hostile.running.run(
        w.discord.autocomplete(
            w.guild, w.channel, w.member, "poem", {"style": name}, focused="style"
        )
    )
    assert {c["value"] for c in typed} <= {"tang", "verse"}
    assert w.discord.violations[broken:] == []


@settings(CASES, max_examples=150)
@given(value=temperatures)
def test_settings_temperature_keeps_only_values_in_bounds(hostile, value):
    before = hostile.show()
    _, answer = hostile.send(
        "settings",
        {"value": value},
        hostile.w.moderator,
        channel=hostile.lab,
        subcommand="temperature",
    )
    assert answer.ephemeral
    if 0.0 <= value <= MAX_TEMPERATURE:
        event("saved")
        shown = f"temperature {value + 0.0:g}."  # -0 reads as 0, here as in /settings show
        assert shown in answer.content and shown in hostile.show()
    else:
        event("refused")
        assert "Temperature must be between 0 and 2" in answer.content
        assert hostile.show() == before


@settings(CASES, max_examples=150)
@given(name=names)
def test_settings_style_keeps_only_styles_that_exist(hostile, name):
    w = hostile.w
    before = hostile.show()
    _, answer = hostile.send(
        "settings", {"name": name}, w.moderator, channel=hostile.lab, subcommand="style"
    )
    assert answer.ephemeral
    if name in w.bot.registry.styles():
        assert f"now default to {name}" in answer.content
    else:
        assert "There is no style named" in answer.content
        assert_inert(answer.content)
        assert hostile.show() == before


def _models_tree(models: Path) -> dict[str, str]:
    return {
        str(p.relative_to(models)): p.read_text() if p.name == "ACTIVE" else ""
        for p in sorted(models.rglob("*"))
    }


bad_epochs = st.sampled_from([-(2**63), -1, 0, MAX_EPOCHS + 1, 2**53, 2**64]) | st.integers(-5, 0)
# Names that are not one of the world's styles or versions, so every call must be refused.
unknown = names.filter(lambda n: n not in ("verse", "tang", "v1", "v2"))
model_calls = st.one_of(
    st.tuples(
        st.just("info"), st.fixed_dictionaries({"style": unknown}, optional={"version": unknown})
    ),
    st.tuples(
        st.sampled_from(["info", "activate"]),
        st.fixed_dictionaries({"style": unknown | st.just("verse"), "version": unknown}),
    ),
    st.tuples(st.sampled_from(["rollback", "retrain"]), st.fixed_dictionaries({"style": unknown})),
    st.tuples(
        st.just("add"),
        st.fixed_dictionaries(
            {"name": names.filter(invalid), "corpus": st.just(Upload("corpus.txt", TEXT))}
        ),
    ),
    # Epochs past the option's bounds, for a style and a corpus that are fine otherwise.
    st.tuples(
        st.just("retrain"),
        st.fixed_dictionaries({"style": st.just("verse"), "epochs": bad_epochs}),
    ),
    st.tuples(
        st.just("add"),
        st.fixed_dictionaries(
            {
                "name": st.just("bard"),
                "corpus": st.just(Upload("bard.txt", TEXT)),
                "epochs": bad_epochs,
            }
        ),
    ),
    st.tuples(st.just("cancel"), st.fixed_dictionaries({"job": lengths})),
)


@settings(CASES, max_examples=200)
@given(call=model_calls)
def test_model_names_and_bounds_are_refused_and_nothing_changes(hostile, call):
    sub, options = call
    w = hostile.w
    models = w.root / "models"
    before = _models_tree(models)
    _, answer = hostile.send("model", options, w.operator, subcommand=sub)
    event(sub)
    assert answer.ephemeral
    assert re.search(
        r"is not valid|There is no style named|has no version|Epochs must be|there is no job",
        answer.content,
    )
    assert_inert(answer.content)
    assert _models_tree(models) == before
    assert w.bot.registry.live("verse").version == "v1"
    assert hostile.running.run(w.bot.jobs.listing()) == []


@settings(CASES, max_examples=150)
@given(upload=uploads)
def test_corpus_uploads_that_are_not_usable_text_are_refused(hostile, upload):
    kind, data = upload
    w = hostile.w
    event(kind)
    _, answer = hostile.send(
        "model", {"name": "bard", "corpus": Upload("bard.txt", data)}, w.operator, subcommand="add"
    )
    assert answer.ephemeral and UPLOAD_REASONS[kind] in answer.content, answer.content
    assert hostile.running.run(w.bot.jobs.listing()) == []
    assert not (w.root / "models" / "bard").exists()
    assert not (w.root / "data" / "corpora" / "bard.txt").exists()
