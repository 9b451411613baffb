"""Which version of each style is live, and hot swap between versions.

A swap builds the new session and scheduler first, then flips the pointer; requests already on
the old scheduler finish there, and it closes once empty. A bundle that fails to load is
reported (log and `problems`) and the live model keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.engine.bundle import (
    Bundle,
    BundleError,
    active_version,
    check_name,
    load_bundle,
    set_active,
    styles,
    versions,
)
from bot.engine.scheduler import Generation, Limits, Request, Scheduler
from bot.engine.sessions import StepModel, load_model

log = logging.getLogger(__name__)


class UnknownStyle(LookupError):
    """No live model for this style."""


@dataclass(frozen=True)
class StoredVersion:
    """A version the shared database holds, as its card describes it."""

    style: str
    version: str
    val_loss: float | None
    size_bytes: int
    created_at: str


class SharedVersions(Protocol):
    """Live-version pointers and bundles shared by several processes (PostgreSQL:
    `bot.stores.live_versions.SharedModels`); without one, the ACTIVE files are the pointers."""

    async def fetch(self, style: str, version: str, models_dir: Path) -> Path: ...

    async def store(self, style: str, version: str, path: Path) -> None: ...

    async def stored_versions(self, style: str) -> list[str]: ...

    async def catalog(self) -> list[StoredVersion]: ...

    async def publish(self, style: str, version: str, path: Path) -> None: ...

    async def seed(self, style: str, version: str, path: Path) -> bool: ...

    async def follow(self, apply: Callable[[dict[str, str]], Awaitable[None]]) -> None: ...


@dataclass(frozen=True)
class Live:
    bundle: Bundle
    scheduler: Scheduler

    @property
    def version(self) -> str:
        return self.bundle.version

    @property
    def provider(self) -> str:
        return self.scheduler.model.provider

    @property
    def precision(self) -> str:
        """What its steps run in: "int8" (the bundle's int8 graph) or "fp32"."""
        return "int8" if self.scheduler.model.int8 else "fp32"


@dataclass(frozen=True)
class VersionInfo:
    style: str
    version: str
    live: bool
    val_loss: float | None
    size_bytes: int
    created_at: str
    problem: str | None
    serving: str | None = None  # the live version's precision as loaded: "int8" or "fp32"


class Registry:
    def __init__(
        self,
        models_dir: Path,
        providers: str = "auto",
        limits: Limits | None = None,
        precision: str | None = None,
        shared: SharedVersions | None = None,
        prepare: Callable[[Bundle], None] | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        # Builds, in the loading thread, what serving a bundle's poems needs beyond the model
        # (the forms' tables), so a version goes live ready and no request pays for it.
        self.prepare = prepare
        self.shared = shared
        self.providers = providers
        self.precision = precision
        self.limits = limits or Limits()
        self.problems: dict[str, str] = {}  # "style/version" -> why it cannot be served
        self._live: dict[str, Live] = {}
        self._previous: dict[str, list[str]] = {}  # versions that were live, newest last
        self._swap = asyncio.Lock()
        self._draining: set[asyncio.Task] = set()
        self._following: asyncio.Task | None = None

    # Reading -----------------------------------------------------------------------------
    def styles(self) -> list[str]:
        return sorted(self._live)

    def live(self, style: str) -> Live:
        try:
            return self._live[style]
        except KeyError:
            raise UnknownStyle(style) from None

    def versions(self, style: str) -> list[VersionInfo]:
        check_name(style, "style")
        live = self._live.get(style)
        out = []
        for version in versions(self.models_dir, style):
            path = self.models_dir / style / version
            problem = self.problems.get(f"{style}/{version}")
            try:
                bundle = load_bundle(path)
                card = bundle.card
                val_loss = card.get("metrics", {}).get("val_loss")
                size, created = bundle.size_bytes, str(card.get("created_at", ""))
            except BundleError as err:
                problem, val_loss, size, created = str(err), None, 0, ""
            is_live = live is not None and live.version == version
            out.append(
                VersionInfo(
                    style=style,
                    version=version,
                    live=is_live,
                    val_loss=val_loss if isinstance(val_loss, (int, float)) else None,
                    size_bytes=size,
                    created_at=created,
                    problem=problem,
                    serving=live.precision if is_live and live is not None else None,
                )
            )
        return out

    async def generate(
        self, style: str, request: Request, listener: Callable[[str], None] | None = None
    ) -> Generation:
        """The live model of `style` writes `request` (`listener` hears its text as it is
        written: `Scheduler.generate`)."""
        # The scheduler is taken and the request queued on it before any await, so a swap
        # that happens meanwhile lets this request finish on the model it started with.
        return await self.live(style).scheduler.generate(request, listener)

    # Changing ----------------------------------------------------------------------------
    async def _build(self, style: str, version: str) -> Live:
        path = self.models_dir / check_name(style, "style") / check_name(version, "version")
        if self.shared is not None and not path.is_dir():
            await self.shared.fetch(style, version, self.models_dir)

        def load() -> StepModel:
            model = load_model(path, self.providers, self.precision)
            model.warm_up()
            if self.prepare is not None:
                self.prepare(model.bundle)
            return model

        try:
            model = await asyncio.to_thread(load)
        except BundleError as err:
            self.problems[f"{style}/{version}"] = str(err)
            log.error("refusing bundle %s/%s: %s", style, version, err)
            raise
        self.problems.pop(f"{style}/{version}", None)
        return Live(bundle=model.bundle, scheduler=Scheduler(model, self.limits))

    def _flip(self, style: str, new: Live) -> None:
        old = self._live.get(style)
        self._live[style] = new
        if old is not None:
            history = self._previous.setdefault(style, [])
            if not history or history[-1] != old.version:
                history.append(old.version)
            task = asyncio.create_task(old.scheduler.close(), name=f"drain-{style}-{old.version}")
            self._draining.add(task)
            task.add_done_callback(self._draining.discard)
        log.info(
            "%s now serves %s (%s, was %s)",
            style,
            new.version,
            new.provider,
            old.version if old else "nothing",
        )

    async def activate(self, style: str, version: str) -> Live:
        """Make `version` live for `style` (and record it in ACTIVE, and in the shared
        pointers so that every process follows); BundleError if broken."""
        async with self._swap:
            new = await self._build(style, version)
            if self.shared is not None:
                await self.shared.publish(style, version, new.bundle.path)
            set_active(self.models_dir, style, version)
            self._flip(style, new)
            return new

    async def follow(self, pointers: dict[str, str]) -> list[str]:
        """Serve what the shared pointers name (fetching bundles this process lacks), and
        bring the styles they do not name yet; one line per change or refusal."""
        notes = []
        async with self._swap:
            for style, live in list(self._live.items()):
                if style not in pointers and await self.shared.seed(
                    style, live.version, live.bundle.path
                ):
                    notes.append(f"{style}: {live.version} is now the shared live version")
            for style, version in sorted(pointers.items()):
                live = self._live.get(style)
                if live is not None and live.version == version:
                    continue
                try:
                    new = await self._build(style, version)
                except BundleError as err:
                    notes.append(f"{style}/{version} refused: {err}")
                    continue
                set_active(self.models_dir, style, version)
                self._flip(style, new)
                notes.append(f"{style}: now {version}")
        for note in notes:
            log.info("shared live versions: %s", note)
        return notes

    def start_following(self) -> None:
        """With shared pointers, follow them from now until `close` (a background task)."""
        if self.shared is None or self._following is not None:
            return

        async def apply(pointers: dict[str, str]) -> None:
            await self.follow(pointers)

        self._following = asyncio.create_task(self.shared.follow(apply), name="live-versions")

    async def rollback(self, style: str) -> Live:
        """Go back to the version live before this one (after a restart: the next older)."""
        current = self.live(style).version
        history = [v for v in self._previous.get(style, []) if v != current]
        if history:
            target = history[-1]
        else:
            older = versions(self.models_dir, style)
            older = older[: older.index(current)] if current in older else []
            if not older:
                raise BundleError(f"{style} has no version older than {current} to go back to")
            target = older[-1]
        live = await self.activate(style, target)
        hist = self._previous.get(style, [])
        # The version rolled back from must not be the next rollback's target.
        self._previous[style] = [v for v in hist if v not in (target, current)]
        return live

    async def reload(self) -> list[str]:
        """Rescan the models folder: load new styles and changed ACTIVE pointers, drop styles
        whose folder is gone. Returns one line per change or refusal."""
        notes = []
        async with self._swap:
            on_disk = styles(self.models_dir)
            for style in on_disk:
                try:
                    wanted = active_version(self.models_dir, style)
                except ValueError as err:
                    notes.append(f"{style}: ACTIVE is unusable ({err})")
                    continue
                live = self._live.get(style)
                if wanted is None or (live is not None and live.version == wanted):
                    continue
                try:
                    self._flip(style, await self._build(style, wanted))
                    notes.append(f"{style}: now {wanted}")
                except BundleError as err:
                    kept = f"; still serving {live.version}" if live else ""
                    notes.append(f"{style}/{wanted} refused: {err}{kept}")
            for style in set(self._live) - set(on_disk):
                old = self._live.pop(style)
                task = asyncio.create_task(old.scheduler.close())
                self._draining.add(task)
                task.add_done_callback(self._draining.discard)
                notes.append(f"{style}: folder gone, no longer served")
        return notes

    async def close(self) -> None:
        """Finish what is in flight on every model, then stop."""
        if self._following is not None:
            self._following.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._following
        closing = [live.scheduler.close() for live in self._live.values()]
        self._live.clear()
        await asyncio.gather(*closing, *self._draining, return_exceptions=True)
