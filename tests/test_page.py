"""The local page and its API: every status the API promises, the stream's order, a client
that leaves mid-poem freeing its row, the same seed giving the same poem; and the page itself
in headless Chromium (Debian's, driven by Playwright): a Tang poem and a Shakespeare speech
streamed in, the permalink writing the same poem again, a bad acrostic's error where it was
typed, a theme's plan named under its poem, hostile markup shown as text and never run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.composition import build_page, build_registry
from bot.forms import english, tang

from .botworld import asynchronous, make_settings
from .stepping import holding, until
from .test_forms_e2e import own_themes, shipped

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRE_BROWSER = bool(os.environ.get("POEMBOT_REQUIRE_BROWSER"))
# How long the browser waits for the page to be written or answer: a bound only a broken
# machine reaches (a sonnet of 8 candidates a line on 2 busy cores takes tens of seconds), not
# a measure of the page's speed.
WAIT_MS = 180_000


@contextlib.asynccontextmanager
async def page_client(root: Path, **changes):
    settings = make_settings(root, shipped(root, "tang", "shakespeare"), **changes)
    registry = build_registry(settings)
    await registry.reload()
    client = TestClient(TestServer(build_page(settings, registry).app()))
    await client.start_server()
    try:
        yield client, registry
    finally:
        await client.close()
        await registry.close()


async def events(response: aiohttp.ClientResponse) -> list[tuple[str, dict]]:
    out, name = [], None
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            out.append((name, json.loads(line[6:])))
    return out


@asynchronous
async def test_styles_list_forms_limits_and_the_live_version(tmp_path):
    async with page_client(tmp_path) as (client, _):
        response = await client.get("/api/styles")
        assert response.status == 200
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        body = await response.json()
        styles = {s["name"]: s for s in body["styles"]}
        assert styles["tang"]["version"] == "v1"
        assert [f["name"] for f in styles["tang"]["forms"]] == ["wujue", "qijue", "wulv", "qilv"]
        assert styles["tang"]["scripts"] and not styles["shakespeare"]["scripts"]
        assert body["limits"]["max_length"] == 5000 and body["limits"]["max_prompt"] == 500
        page = await client.get("/")
        assert page.status == 200 and "page.js" in await page.text()


@asynchronous
async def test_a_poem_streams_in_chunks_then_comes_whole_and_repeats_with_its_seed(tmp_path):
    async with page_client(tmp_path) as (client, _):
        options = {"style": "shakespeare", "prompt": "ROMEO:", "seed": 4, "length": 600}
        stream = await client.post(
            "/api/poems", json=options, headers={"Accept": "text/event-stream"}
        )
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        got = await events(stream)
        names = [n for n, _ in got]
        assert names[-1] == "poem" and set(names[:-1]) == {"chunk"} and len(names) > 2
        poem = got[-1][1]
        streamed = "".join(d["text"] for n, d in got if n == "chunk")
        assert poem["text"].startswith("ROMEO:") and streamed.startswith(poem["text"][6:])
        again = await client.post(
            "/api/poems", json=options, headers={"Accept": "application/json"}
        )
        assert (await again.json())["text"] == poem["text"]
        assert poem["options"]["seed"] == 4


@asynchronous
async def test_the_cards_sample_is_a_whole_poem_shown_as_one(tmp_path):
    async with page_client(tmp_path) as (client, _):
        styles = {s["name"]: s for s in (await (await client.get("/api/styles")).json())["styles"]}
        speech = styles["shakespeare"]["sample"]
        assert 4 <= len(english.poem_lines(speech)) <= 14 and english.ends_sentence(speech), speech
        couplets = styles["tang"]["sample"].split("\n")
        assert len(couplets) in (2, 4) and all(c.endswith("。") for c in couplets), couplets


@asynchronous
async def test_a_tang_poem_streams_in_one_couplet_a_line(tmp_path):
    async with page_client(tmp_path) as (client, _):
        options = {"style": "tang", "form": "qilv", "seed": 2}
        stream = await client.post(
            "/api/poems", json=options, headers={"Accept": "text/event-stream"}
        )
        got = await events(stream)
        streamed = "".join(d["text"] for n, d in got if n == "chunk")
        assert streamed == got[-1][1]["text"] and len(streamed.split("\n")) == 4, streamed


@asynchronous
async def test_a_bidi_override_is_dropped_from_a_prompt_and_refused_in_an_acrostic(tmp_path):
    async with page_client(tmp_path) as (client, _):
        options = {"style": "shakespeare", "prompt": "\u202eHello", "seed": 1, "length": 200}
        response = await client.post("/api/poems", json=options)
        assert response.status == 200
        assert (await response.json())["text"].startswith("Hello")
        options = {"style": "tang", "form": "qijue", "acrostic": "春\u2066夏秋冬"}
        refused = await client.post("/api/poems", json=options)
        assert refused.status == 400 and (await refused.json())["field"] == "acrostic"


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        (json.dumps([1, 2]).encode(), 400, None),
        (json.dumps({"style": "tang", "length": "long"}).encode(), 400, "length"),
        (json.dumps({"style": "tang", "temperature": True}).encode(), 400, "temperature"),
        (json.dumps({"style": "tang", "seed": -1}).encode(), 400, "seed"),
        (json.dumps({"style": "nope"}).encode(), 400, "style"),
        (json.dumps({"style": "tang", "colour": "red"}).encode(), 400, "colour"),
        (
            json.dumps({"style": "tang", "form": "qijue", "acrostic": "春夏"}).encode(),
            400,
            "acrostic",
        ),
        (json.dumps({"style": "tang", "form": "qilv", "length": 10}).encode(), 400, "length"),
        (json.dumps({"style": "tang", "prompt": "x" * 20_000}).encode(), 413, None),
    ],
)
@asynchronous
async def test_bad_requests_are_refused_with_the_field_named(tmp_path, body, status, field):
    async with page_client(tmp_path) as (client, _):
        response = await client.post(
            "/api/poems", data=body, headers={"Content-Type": "application/json"}
        )
        assert response.status == status
        reason = await response.json()
        assert reason["error"] and reason["field"] == field


@asynchronous
async def test_a_client_over_its_cooldown_gets_429_with_retry_after(tmp_path):
    async with page_client(tmp_path, user_cooldown=30.0) as (client, _):
        first = await client.post("/api/poems", json={"style": "tang", "seed": 1})
        assert first.status == 200
        second = await client.post("/api/poems", json={"style": "tang", "seed": 2})
        assert second.status == 429 and int(second.headers["Retry-After"]) >= 29
        assert "another poem" in (await second.json())["error"]


@asynchronous
async def test_no_style_loaded_is_503(tmp_path):
    settings = make_settings(tmp_path, tmp_path / "empty")
    registry = build_registry(settings)
    await registry.reload()
    async with TestClient(TestServer(build_page(settings, registry).app())) as client:
        response = await client.post("/api/poems", json={})
        assert response.status == 503
    await registry.close()


@asynchronous
async def test_a_client_that_leaves_mid_poem_frees_its_row(tmp_path):
    async with page_client(tmp_path) as (client, registry):
        scheduler = registry.live("shakespeare").scheduler
        options = {"style": "shakespeare", "form": "sonnet", "seed": 3, "length": 1000}
        # Every step takes at least 5 ms: the engine hands the batch back to the event loop
        # every few steps (a burst lasts 20 ms), and the sonnet takes seconds to write.
        with holding(scheduler, delay=0.005) as held:
            response = await client.post(
                "/api/poems", json=options, headers={"Accept": "text/event-stream"}
            )
            await held.reached(1)  # the poem is being written, its first step held
            assert scheduler.active == 1
            response.close()  # the browser tab closes
            held.release()
            await until(lambda: scheduler.active == 0, what="the row freed")
        # Freed at the stream's next write, long before the sonnet's end (14 lines of some 40
        # characters: 569 steps for this seed, read whole).
        assert held.steps < 300


# --- the page in a real browser ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served_page(root: Path, models: Path | None = None, **changes) -> Iterator[str]:
    """The page on a loopback port, its event loop in a thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = _free_port()
    settings = make_settings(root, models or shipped(root, "tang", "shakespeare"), **changes)

    async def up():
        registry = build_registry(settings)
        await registry.reload()
        runner = aiohttp.web.AppRunner(build_page(settings, registry).app())
        await runner.setup()
        await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
        return registry, runner

    registry, runner = asyncio.run_coroutine_threadsafe(up(), loop).result(60)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:

        async def down():
            await runner.cleanup()
            await registry.close()

        asyncio.run_coroutine_threadsafe(down(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


@pytest.fixture
def browser():
    if CHROMIUM is None:
        if REQUIRE_BROWSER:
            pytest.fail("no chromium on this machine, and POEMBOT_REQUIRE_BROWSER is set")
        pytest.skip("no chromium here (make test installs Debian's package where it can)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


def _write(page, count: int) -> None:
    page.click("#write")
    page.wait_for_function(f"document.body.dataset.done === '{count}'", timeout=WAIT_MS)


def test_the_page_streams_poems_and_keeps_hostile_text_as_text(browser, tmp_path):
    with served_page(tmp_path) as url:
        # The test's own probes are evaluated scripts, which the page's CSP forbids: the
        # context lets them through (so markup that ran would run, too: the page must not
        # run it by itself), and the CSP header is checked on its own.
        context = browser.new_context(locale="en-US", bypass_csp=True)
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        response = page.goto(url)
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.wait_for_function("document.body.dataset.ready === '1'")
        # A Tang acrostic quatrain.
        page.select_option("#style", "tang")
        page.select_option("#form", "qijue")
        page.fill("#acrostic", "春夏秋冬")
        page.fill("#seed", "8")
        _write(page, 1)
        poem = page.text_content("#poem")
        assert tang.check(poem, "qijue", "春夏秋冬").all_rules, poem
        assert "seed 8" in page.text_content("#meta")
        link = page.get_attribute("#permalink", "href")
        page.screenshot(path=str(tmp_path / "tang.png"), full_page=True)

        # The permalink writes the same poem again.
        again = context.new_page()
        again.goto(url.rstrip("/") + link)
        again.wait_for_function("document.body.dataset.done === '1'", timeout=WAIT_MS)
        assert again.text_content("#poem") == poem

        # A Shakespeare sonnet, seen growing while it streams.
        page.evaluate(
            """() => { window.lengths = []; new MutationObserver(() =>
                window.lengths.push(document.getElementById('poem').textContent.length)
            ).observe(document.getElementById('poem'), {childList: true, characterData: true,
            subtree: true}); }"""
        )
        page.select_option("#style", "shakespeare")
        page.select_option("#form", "sonnet")  # 14 lines: many bursts of the engine
        page.fill("#acrostic", "")
        page.fill("#seed", "2")
        _write(page, 2)
        lengths = page.evaluate("window.lengths")
        assert len(set(lengths)) >= 3, lengths  # it grew in steps, then came whole
        assert page.is_visible("#footer") and not page.is_visible("#writing")

        # A bad acrostic: the error stands under the acrostic field, nothing is written.
        page.select_option("#style", "tang")
        page.select_option("#form", "qijue")
        page.fill("#acrostic", "春夏秋")
        page.click("#write")
        page.wait_for_function(
            "document.querySelector('.error[data-for=acrostic]').textContent.length > 0"
        )
        assert "4" in page.text_content(".error[data-for=acrostic]")

        # A theme: its plan is named under the poem, each of its words in it; a theme the
        # style cannot write is refused under its own field.
        page.fill("#acrostic", "")
        page.fill("#about", "秋风")
        _write(page, 3)
        named = page.text_content("#theme")
        assert named.startswith("about 秋风: 秋風 · "), named
        assert all(word in page.text_content("#poem") for word in named.split(": ")[1].split(" · "))
        page.fill("#about", "咖啡")
        page.click("#write")
        page.wait_for_function(
            "document.querySelector('.error[data-for=about]').textContent.length > 0"
        )
        assert "咖 啡" in page.text_content(".error[data-for=about]")
        page.fill("#about", "")

        # Hostile markup is text: nothing runs, and it shows as typed.
        page.select_option("#style", "shakespeare")
        page.select_option("#form", "")  # its own: a speech
        hostile = '<img src=x onerror="window.pwned=1">'
        page.fill("#prompt", hostile)
        page.fill("#length", "200")
        _write(page, 4)
        assert page.evaluate("window.pwned === undefined")
        assert page.text_content("#poem").startswith(hostile)
        assert page.locator("#poem img").count() == 0
        # A bidi override typed before the prompt would flip the poem: it is dropped.
        page.fill("#prompt", "\u202eHello")
        _write(page, 5)
        assert page.text_content("#poem").startswith("Hello")
        page.screenshot(path=str(tmp_path / "shakespeare.png"), full_page=True)
        keep = os.environ.get("POEMBOT_SCREENSHOTS")  # a folder to keep the screenshots in
        if keep:
            for name in ("tang.png", "shakespeare.png"):
                shutil.copy(tmp_path / name, Path(keep) / name)


def test_the_page_keeps_the_theme_the_bot_chose_on_again_and_continue(browser, tmp_path):
    own = ("love", "the sea", "winter", "death", "night", "war", "spring", "time", "home", "rain")
    # Four candidates a line: what is tested is which theme, not how well it is written.
    with served_page(tmp_path, own_themes(tmp_path, *own), about_candidates=4) as url:
        context = browser.new_context(locale="en-US", bypass_csp=True)
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        page.goto(url)
        page.wait_for_function("document.body.dataset.ready === '1'")
        page.select_option("#style", "shakespeare")
        page.select_option("#form", "couplet")
        page.fill("#seed", "5")
        _write(page, 1)
        named = page.text_content("#theme")
        theme = named.removeprefix("about ").split(": ")[0]
        assert theme in own, named
        for done, button in enumerate(("#again", "#continue"), start=2):
            page.click(button)
            page.wait_for_function(f"document.body.dataset.done === '{done}'", timeout=WAIT_MS)
            assert page.text_content("#theme").startswith(f"about {theme}: "), button
        # `-` in the About field: no theme, and Again keeps it so.
        page.fill("#about", "-")
        _write(page, 4)
        assert not page.is_visible("#theme")
        page.click("#again")
        page.wait_for_function("document.body.dataset.done === '5'", timeout=WAIT_MS)
        assert not page.is_visible("#theme")
        page.screenshot(path=str(tmp_path / "own-theme.png"), full_page=True)
