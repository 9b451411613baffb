"""The local poem page and its HTTP API, served by aiohttp with the bot's own engine.

- `GET /` and `/static/...`: the page (`bot/web/static/`: no CDN, no build step).
- `GET /api/styles`: the live styles, each with its forms, card and loss curve, and the limits.
- `GET /api/styles/{style}/loss.png`: a bundle's loss curve, where it has one.
- `POST /api/poems`: the `/poem` options as JSON; answers `text/event-stream` (`chunk` events of
  text as it is written, then one `poem` event with the whole poem and its metadata, or one
  `error` event) or, with `Accept: application/json`, the finished poem.

Errors are JSON `{"error": ..., "field": ...}`: 400 for bad input (the field named), 413 for a
body over MAX_BODY bytes, 429 with Retry-After when the engine or the client's own limit says
busy, 503 when no style is loaded. The limits are `/poem`'s: the same option bounds, the form
checks, and a per-client cooldown and cap keyed by the client's address.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.config import Settings
from bot.engine.registry import Registry, UnknownStyle
from bot.engine.scheduler import Busy, Generation, Request
from bot.forms import catalog, themes
from bot.forms.rules import FormError
from bot.poems import MAX_SEED, PoemOptions, plan_poem, plan_request
from bot.throttle import Throttle, Throttled

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
MAX_BODY = 16 * 1024
CHUNK_SECONDS = 0.1  # the shortest time between two chunks of one stream
MAX_TEMPERATURE = 2.0
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
_OPTIONS = {
    "style": str,
    "prompt": str,
    "length": int,
    "temperature": float,
    "seed": int,
    "form": str,
    "acrostic": str,
    "script": str,
    "context": str,
    "about": str,
}


class Refused(Exception):
    """A request answered with an error status: `status`, words for the user, the field."""

    def __init__(self, status: int, message: str, field: str | None = None, retry: float = 0):
        super().__init__(message)
        self.status, self.field, self.retry = status, field, retry

    def response(self) -> web.Response:
        headers = {"Retry-After": str(max(1, math.ceil(self.retry)))} if self.status == 429 else {}
        body = {"error": str(self), "field": self.field}
        return web.json_response(body, status=self.status, headers=headers)


class PoemPage:
    """The page's handlers, bound to the registry, the settings' limits and a throttle."""

    def __init__(self, settings: Settings, registry: Registry, throttle: Throttle) -> None:
        self.settings = settings
        self.registry = registry
        self.throttle = throttle
        self._samples: dict[tuple[str, str], str] = {}  # (style, version) -> its sample

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[_headers])
        app.router.add_get("/", self.index)
        app.router.add_static("/static/", STATIC, show_index=False)
        app.router.add_get("/api/styles", self.styles)
        app.router.add_get("/api/styles/{style}/loss.png", self.loss_curve)
        app.router.add_post("/api/poems", self.poems)
        return app

    async def index(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    # --- styles -------------------------------------------------------------------------

    def _style(self, name: str) -> dict[str, Any]:
        live = self.registry.live(name)
        card = live.bundle.card
        metrics = card.get("metrics", {})
        section = card.get("poem", {})
        language = str(card.get("language", "en"))
        return {
            "name": name,
            "display_name": str(card.get("display_name", name)),
            "language": language,
            "version": live.version,
            "forms": [
                {"name": f.name, "label": f.label(language), "acrostic": f.heads is not None}
                for f in catalog.offered(card)
            ],
            "default_form": section.get("default"),
            "scripts": ["simplified", "traditional"] if section.get("script") else [],
            "about": bool(section.get("themes")),
            "copy_guard": live.bundle.copy_guard,
            "card": {
                "model": f"{card.get('layers')} x {str(card.get('cell', '')).upper()} "
                f"{card.get('units')}",
                "parameters": card.get("parameters"),
                "val_loss": metrics.get("val_loss"),
                "val_bpc": metrics.get("val_bpc"),
                "corpus": card.get("corpus", {}).get("name"),
                "created_at": card.get("created_at"),
            },
            "loss_curve": f"/api/styles/{name}/loss.png"
            if (live.bundle.path / "loss.png").is_file()
            else None,
        }

    async def _sample(self, name: str) -> str:
        """A whole poem of the style's default form (its default length), seed 0, written
        once per version."""
        version = self.registry.live(name).version
        key = (name, version)
        if key not in self._samples:
            live = self.registry.live(name)
            try:
                plan, request = plan_request(self.settings, live, seed=0)
                result = await self.registry.generate(name, request)
                self._samples[key] = plan.present(result.text).strip()
            except (FormError, Busy, ValueError, UnknownStyle) as err:
                log.info("no sample for %s/%s: %s", name, version, err)
                return ""
        return self._samples[key]

    async def styles(self, request: web.Request) -> web.Response:
        limits = self.settings.limits
        names = self.registry.styles()
        samples = await asyncio.gather(*(self._sample(n) for n in names))
        default = self.settings.default_style if self.settings.default_style in names else None
        return web.json_response(
            {
                "styles": [
                    {**self._style(n), "sample": sample}
                    for n, sample in zip(names, samples, strict=True)
                ],
                "default_style": default or (names[0] if names else None),
                "limits": {
                    "max_length": limits.max_length,
                    "max_prompt": limits.max_prompt,
                    "max_temperature": MAX_TEMPERATURE,
                    "max_seed": MAX_SEED,
                    "max_acrostic": catalog.MAX_ACROSTIC,
                    "max_about": themes.MAX_TYPED,
                    "default_length": self.settings.default_length,
                    "default_temperature": self.settings.default_temperature,
                },
            }
        )

    async def loss_curve(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["style"]
        if name not in self.registry.styles():
            raise web.HTTPNotFound()
        path = self.registry.live(name).bundle.path / "loss.png"
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    # --- poems --------------------------------------------------------------------------

    async def poems(self, request: web.Request) -> web.StreamResponse:
        try:
            options = await self._options(request)
            plan, live_request, display = self._plan(options)
            slot = self._slot(request, options.style, live_request)
        except Refused as refused:
            return refused.response()
        with slot:
            if "text/event-stream" in request.headers.get("Accept", ""):
                return await self._stream(request, options, plan, live_request, display)
            try:
                result = await self.registry.generate(options.style, live_request)
            except (Busy, ValueError, UnknownStyle) as err:
                return _engine_refusal(err, options.style).response()
            return web.json_response(_poem(result, plan, display, options))

    async def _options(self, request: web.Request) -> PoemOptions:
        if not self.registry.styles():
            raise Refused(503, "No styles are loaded right now.")
        if request.content_length is not None and request.content_length > MAX_BODY:
            raise Refused(413, f"The request is over {MAX_BODY:,} bytes.")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise Refused(413, f"The request is over {MAX_BODY:,} bytes.") from None
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise Refused(400, "The request is not JSON.") from None
        if not isinstance(data, dict):
            raise Refused(400, "The request must be a JSON object of the poem's options.")
        values: dict[str, Any] = {}
        for name, value in data.items():
            kind = _OPTIONS.get(name)
            if kind is None:
                raise Refused(400, f"There is no option {name[:40]!r}.", name[:40])
            if value is None:
                continue
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise Refused(400, f"{name} must be a {_TYPE_NAMES[kind]}.", name)
            values[name] = value
        limits = self.settings.limits
        if "style" not in values:
            values["style"] = self.settings.default_style
            if values["style"] not in self.registry.styles():
                values["style"] = self.registry.styles()[0]
        if values["style"] not in self.registry.styles():
            raise Refused(400, f"There is no style named {values['style'][:40]!r}.", "style")
        prompt = values.get("prompt", "")
        if len(prompt) > limits.max_prompt:
            raise Refused(
                400, f"The prompt can be at most {limits.max_prompt} characters.", "prompt"
            )
        length = values.get("length")
        if length is not None and not 1 <= length <= limits.max_length:
            raise Refused(400, f"Length must be between 1 and {limits.max_length}.", "length")
        temperature = values.get("temperature")
        if temperature is not None and not (
            math.isfinite(temperature) and 0.0 <= temperature <= MAX_TEMPERATURE
        ):
            raise Refused(
                400, f"Temperature must be between 0 and {MAX_TEMPERATURE:g}.", "temperature"
            )
        seed = values.get("seed")
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise Refused(400, f"The seed must be between 0 and {MAX_SEED}.", "seed")
        if len(values.get("context", "")) > limits.max_length + limits.max_prompt:
            raise Refused(400, "The text to write on from is too long.", "context")
        for name in ("form", "acrostic", "script", "about"):
            if values.get(name) == "":
                values.pop(name)
        return PoemOptions(**values)

    def _plan(self, options: PoemOptions) -> tuple[catalog.PoemPlan, Request, str]:
        live = self.registry.live(options.style)
        try:
            plan, request = plan_poem(self.settings, live, options)
        except FormError as err:
            raise Refused(400, str(err), err.field or _field_of(str(err))) from None
        return plan, request, str(live.bundle.card.get("display_name", options.style))

    def _slot(self, request: web.Request, style: str, poem: Request):
        scheduler = self.registry.live(style).scheduler
        if scheduler.queued >= self.settings.limits.max_queue:
            wait = scheduler.retry_after()
            raise Refused(429, f"Busy writing other poems; try again in {wait:.0f} s.", retry=wait)
        client = _client_id(request)
        try:
            return self.throttle.take(client, client, scheduler.estimate(poem))
        except Throttled as err:
            raise Refused(429, str(err), retry=err.retry_after) from None

    async def _stream(
        self,
        request: web.Request,
        options: PoemOptions,
        plan: catalog.PoemPlan,
        live_request: Request,
        display: str,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        pending: list[str] = []
        written: list[str] = []  # all heard so far, and what of it was shown
        shown = ""
        wake = asyncio.Event()

        def heard(text: str) -> None:
            pending.append(text)
            wake.set()

        writing = asyncio.ensure_future(self.registry.generate(options.style, live_request, heard))
        writing.add_done_callback(lambda _: wake.set())
        try:
            while True:
                await wake.wait()
                wake.clear()
                if pending:  # everything heard since the last write, in one event
                    text = "".join(pending)
                    pending.clear()
                    written.append(text)
                    # The poem as `present` lays it out (a Tang couplet a line) grows at its
                    # end; where a script's conversion changes what was shown, the new text
                    # goes as it comes (the finished poem replaces it all).
                    whole = plan.present("".join(written))
                    more = whole[len(shown) :] if whole.startswith(shown) else plan.present(text)
                    shown = whole
                    await _event(response, "chunk", {"text": more})
                if writing.done():
                    break
                # At most one write per CHUNK_SECONDS a stream: the text still flows smoothly,
                # and the event loop is not kept busy with tiny writes (the poem's end is
                # never held back: `writing` finishing cuts the pause short).
                await asyncio.wait({writing}, timeout=CHUNK_SECONDS)
            try:
                result = writing.result()
            except (Busy, ValueError, UnknownStyle) as err:
                refusal = _engine_refusal(err, options.style)
                await _event(response, "error", {"error": str(refusal), "status": refusal.status})
            else:
                await _event(response, "poem", _poem(result, plan, display, options))
        except (ConnectionResetError, asyncio.CancelledError):
            writing.cancel()  # the client left: its row is freed at the next step
            raise
        finally:
            if not writing.done():
                writing.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writing
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response


_TYPE_NAMES = {str: "string", int: "whole number", float: "number"}


def _field_of(message: str) -> str | None:
    lowered = message.lower()
    for name in ("acrostic", "prompt", "script", "length", "form"):
        if name in lowered:
            return name
    return "form" if "needs" in lowered else None


def _engine_refusal(err: Exception, style: str) -> Refused:
    if isinstance(err, Busy):
        return Refused(
            429,
            f"Busy writing other poems; try again in {err.retry_after:.0f} s.",
            retry=err.retry_after,
        )
    if isinstance(err, UnknownStyle):
        return Refused(400, f"The style {style} was just removed; pick another.", "style")
    return Refused(400, f"I can't write that: {err}.")


def _client_id(request: web.Request) -> int:
    """The client's address as the throttle's key (a number, as Discord's ids are)."""
    address = request.remote or "unknown"
    return int.from_bytes(hashlib.blake2b(address.encode(), digest_size=7).digest(), "big")


def _poem(result: Generation, plan: catalog.PoemPlan, display: str, options: PoemOptions) -> dict:
    link = {k: v for k, v in asdict(options).items() if v not in (None, "") and k != "context"}
    link["seed"] = result.seed
    link["temperature"] = result.temperature
    return {
        "text": plan.present(result.text),
        "style": result.style,
        "display_name": display,
        "version": result.version,
        "form": result.form,
        "script": plan.script,
        "temperature": result.temperature,
        "seed": result.seed,
        "unknown": result.unknown,
        "relaxed": list(result.relaxed),
        "whole": result.whole,
        "about": _about(plan.about(result.text)),
        "seconds": round(result.seconds, 3),
        "options": link,
    }


def _about(about: tuple[str, list[str]] | None) -> dict[str, Any] | None:
    """A poem's theme for the page: as typed, the plan's words it holds, the footer's line."""
    if about is None:
        return None
    typed, words = about
    return {"theme": typed, "plan": words, "line": themes.about_line(typed, words)}


async def _event(response: web.StreamResponse, name: str, data: dict) -> None:
    payload = json.dumps(data, ensure_ascii=False)
    await response.write(f"event: {name}\ndata: {payload}\n\n".encode())


@web.middleware
async def _headers(request: web.Request, handler) -> web.StreamResponse:
    """Every answer: no inline script may run, no sniffing, no framing, no referrer leak."""
    try:
        response = await handler(request)
    except web.HTTPRequestEntityTooLarge:
        response = Refused(413, f"The request is over {MAX_BODY:,} bytes.").response()
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    return response


async def serve(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Start serving `app` on host:port; the runner, to clean up when done."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
