"""`/model`: the bot's operators list, inspect, activate, roll back and retrain models.

These change what every guild sees, so they belong to the application's owner or team and
BOT_ADMIN_IDS only, checked by the bot on every call whatever Discord showed the user.
"""

# No `from __future__ import annotations`: discord.py reads the option annotations.
import contextlib
import logging
import time

import discord
from discord import app_commands

from bot.discord_app.authority import Operators
from bot.discord_app.errors import UserError
from bot.discord_app.replies import escape, quoted
from bot.engine.bundle import CELLS, BundleError, check_name, load_bundle, styles, versions
from bot.engine.registry import Registry, StoredVersion, UnknownStyle, VersionInfo
from bot.engine.sessions import serving_precision
from bot.forms.catalog import offered
from bot.forms.units import UNITS
from bot.jobs import SIZES, Job
from bot.stores.corpora import CorpusRefused, CorpusStore
from bot.stores.job_queue import JobMessage, JobQueue, QueueUnavailable

log = logging.getLogger(__name__)

MAX_EPOCHS = 200
MAX_NGRAM_ORDER = 6
MAX_COPY_GUARD = 64


def _loss(value: float | None) -> str:
    return f"{value:.3f} nats/char" if value is not None else "no loss recorded"


def _version_line(info: VersionInfo) -> str:
    if info.problem:
        return f"{info.version} · refused: {escape(info.problem[:150])}"
    mark = ""
    if info.live:
        mark = f" **live** ({info.serving})" if info.serving else " **live**"
    return (
        f"{info.version}{mark} · {_loss(info.val_loss)} · "
        f"{info.size_bytes / 1e6:.1f} MB · {info.created_at[:10]}"
    )


def _stored_line(stored: StoredVersion) -> str:
    return (
        f"{stored.version} · {_loss(stored.val_loss)} · {stored.size_bytes / 1e6:.1f} MB · "
        f"{stored.created_at[:10]} · in the database, not fetched here"
    )


class ModelGroup(app_commands.Group):
    """Manage the bot's models (operators only)."""

    def __init__(
        self,
        registry: Registry,
        jobs: JobQueue,
        operators: Operators,
        corpora: CorpusStore,
    ) -> None:
        super().__init__(
            name="model",
            description="Manage the bot's models (the bot's operators only)",
            default_permissions=discord.Permissions(administrator=True),
        )
        self.registry = registry
        self.jobs = jobs
        self.operators = operators
        self.corpora = corpora

    async def interaction_check(self, interaction: discord.Interaction) -> bool:
        if not self.operators.allows(interaction.user):
            raise UserError(
                "Only the bot's operators can manage models; being a server administrator is "
                "not enough, because models are shared by every server."
            )
        return True

    def _style(self, style: str) -> str:
        try:
            check_name(style, "style")
        except ValueError as err:
            raise UserError(escape(str(err))) from None
        if not versions(self.registry.models_dir, style):
            raise UserError(f"There is no style named {quoted(style)}.")
        return style

    def _version(self, style: str, version: str) -> str:
        try:
            check_name(version, "version")
        except ValueError as err:
            raise UserError(escape(str(err))) from None
        if version not in versions(self.registry.models_dir, style):
            raise UserError(f"{style} has no version {quoted(version)}.")
        return version

    @staticmethod
    def _epochs(epochs: int) -> int:
        # Discord's client keeps to the option's bounds; a modified one need not.
        if not 1 <= epochs <= MAX_EPOCHS:
            raise UserError(f"Epochs must be between 1 and {MAX_EPOCHS}.")
        return epochs

    @app_commands.command(name="list")
    async def list_(self, interaction: discord.Interaction) -> None:
        """List styles and versions, with the live one, validation loss, size and date."""
        registry = self.registry
        embed = discord.Embed(title="Models", colour=0x7A5CFA)
        stored: list[StoredVersion] = []
        if registry.shared is not None:
            # Made by a worker or another process: in the database, maybe not here yet.
            await interaction.response.defer(ephemeral=True, thinking=True)
            try:
                stored = await registry.shared.catalog()
            except BundleError as err:
                embed.description = f"The database's versions are not shown: {escape(str(err))}"
        local = styles(registry.models_dir)
        for style in sorted({*local, *(s.style for s in stored)})[:25]:
            lines = [_version_line(info) for info in registry.versions(style)[-10:]]
            here = set(versions(registry.models_dir, style))
            elsewhere = [s for s in stored if s.style == style and s.version not in here]
            lines += [_stored_line(s) for s in elsewhere[-10:]]
            embed.add_field(
                name=style, value="\n".join(lines)[:1024] or "no versions", inline=False
            )
        if not embed.fields:
            embed.description = f"No bundles in {registry.models_dir}."
        if interaction.response.is_done():
            await interaction.followup.send(embed=embed, ephemeral=True)
        else:
            await interaction.response.send_message(embed=embed, ephemeral=True)

    @app_commands.command(name="info")
    @app_commands.describe(style="the style", version="a version (default: the live one)")
    async def info(
        self, interaction: discord.Interaction, style: str, version: str | None = None
    ) -> None:
        """Show a model's card and its loss curve."""
        style = self._style(style)
        if version is None:
            try:
                version = self.registry.live(style).version
            except UnknownStyle:
                raise UserError(f"{style} has no live version; name one.") from None
        version = self._version(style, version)
        try:
            bundle = load_bundle(self.registry.models_dir / style / version)
        except BundleError as err:
            raise UserError(f"{style}/{version} is broken: {err}") from None
        card = bundle.card
        metrics = card.get("metrics", {})
        embed = discord.Embed(
            title=f"{card.get('display_name', style)} · {version}", colour=0x7A5CFA
        )
        ngram = card.get("ngram")
        mixed = (
            f" · mixed with a {ngram.get('order', '?')}-gram model at "
            f"{1 - bundle.ngram_weight:g} (network alone {_loss(metrics.get('val_loss_network'))})"
            if ngram
            else ""
        )
        int8 = card.get("int8", {})
        serves = serving_precision(bundle, self.registry.precision)
        if self.registry.precision is not None:
            serves += " (MODEL_PRECISION)"
        embed.add_field(
            name="Model",
            value=f"{card['layers']} x {card['cell'].upper()} {card['units']} · embedding "
            f"{card['embedding']} · vocab {card['vocab_size']:,} · "
            f"{card.get('parameters', 0):,} parameters{mixed} · serves {serves}"
            + (f" (int8 graph: {_loss(int8.get('val_loss'))})" if int8.get("file") else ""),
            inline=False,
        )
        embed.add_field(
            name="Validation (last 10% of the corpus)",
            value=f"{_loss(metrics.get('val_loss'))} · {metrics.get('val_bpc', 0):.3f} bits/char",
            inline=False,
        )
        forms = offered(card)
        language = str(card.get("language", "en"))
        unit = card.get("poem", {}).get("unit")
        guard = bundle.copy_guard
        embed.add_field(
            name="Copy guard",
            value=f"on: no {guard} consecutive characters of its training text are ever written"
            if guard
            else "off",
            inline=False,
        )
        embed.add_field(
            name="Poems",
            value=(
                f"one {unit} · forms: {', '.join(f.label(language) for f in forms)}"
                if unit
                else "a stream of characters (this bundle predates forms: "
                "`python -m export derive --poem` adds them)"
            )[:1024],
            inline=False,
        )
        corpus = card.get("corpus", {})
        embed.add_field(
            name="Corpus",
            value=f"{escape(str(corpus.get('name', '?')))} · "
            f"{corpus.get('characters', 0):,} characters",
            inline=False,
        )
        embed.add_field(
            name="Training",
            value=f"{metrics.get('epochs', '?')} epochs · "
            f"{metrics.get('training_seconds', 0) / 60:.0f} min · "
            f"parity {card.get('parity', {}).get('max_abs_logit_diff', float('nan')):.1e}",
            inline=False,
        )
        embed.set_footer(text=f"created {card.get('created_at', '?')}")
        files = []
        curve = bundle.path / "loss.png"
        if curve.is_file():
            files.append(discord.File(curve, filename="loss.png"))
            embed.set_image(url="attachment://loss.png")
        await interaction.response.send_message(embed=embed, files=files, ephemeral=True)

    @app_commands.command(name="activate")
    @app_commands.describe(style="the style", version="the version to make live")
    async def activate(self, interaction: discord.Interaction, style: str, version: str) -> None:
        """Make a version live now, without dropping poems being written."""
        shared = self.registry.shared
        with contextlib.suppress(ValueError):  # a bad name is refused below, saying why
            here = versions(self.registry.models_dir, style)
            if shared is not None and check_name(version, "version") not in here:
                # Made by a worker or another process: in the database, not here yet.
                await interaction.response.defer(ephemeral=True, thinking=True)
                with contextlib.suppress(BundleError):
                    await shared.fetch(style, version, self.registry.models_dir)
        style = self._style(style)
        version = self._version(style, version)
        if not interaction.response.is_done():
            await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            old = self.registry.live(style).version
        except UnknownStyle:
            old = "nothing"
        try:
            await self.registry.activate(style, version)
        except BundleError as err:
            await interaction.followup.send(
                f"{style}/{version} was refused: {escape(str(err))}. {old} stays live.",
                ephemeral=True,
            )
            return
        await interaction.followup.send(f"{style} now serves {version} (was {old}).")

    @app_commands.command(name="rollback")
    @app_commands.describe(style="the style to return to its previous version")
    async def rollback(self, interaction: discord.Interaction, style: str) -> None:
        """Return a style to the version that was live before."""
        style = self._style(style)
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            old = self.registry.live(style).version
            live = await self.registry.rollback(style)
        except (BundleError, UnknownStyle) as err:
            await interaction.followup.send(f"No rollback: {escape(str(err))}", ephemeral=True)
            return
        await interaction.followup.send(f"{style} rolled back to {live.version} (was {old}).")

    @app_commands.command(name="reload")
    async def reload(self, interaction: discord.Interaction) -> None:
        """Rescan the models folder: bundles copied in by hand appear."""
        await interaction.response.defer(ephemeral=True, thinking=True)
        notes = await self.registry.reload()
        text = "\n".join(escape(n) for n in notes) or "Nothing changed."
        await interaction.followup.send(text[:2000], ephemeral=True)

    @app_commands.command(name="retrain")
    @app_commands.describe(
        style="the style to train again on its corpus",
        epochs="passes over the corpus (default 10)",
        activate="make it live when done (default: only if its validation loss is better)",
        ngram="order of the n-gram model mixed in, 0 for none (default: as the live version)",
    )
    async def retrain(
        self,
        interaction: discord.Interaction,
        style: str,
        epochs: app_commands.Range[int, 1, MAX_EPOCHS] = 10,
        activate: bool | None = None,
        ngram: app_commands.Range[int, 0, MAX_NGRAM_ORDER] | None = None,
    ) -> None:
        """Train a new version of a style as a background job."""
        style = self._style(style)
        epochs = self._epochs(epochs)
        try:
            card = self.registry.live(style).bundle.card
        except UnknownStyle:
            raise UserError(f"{style} has no live version to retrain from.") from None
        try:
            corpus = self.corpora.source_for(style, card)
        except CorpusRefused as err:
            raise UserError(str(err)) from None
        args = [
            "--cell",
            card["cell"],
            "--layers",
            str(card["layers"]),
            "--units",
            str(card["units"]),
            "--embedding",
            str(card["embedding"]),
        ]
        config = card.get("training", {}).get("config", {})
        for key, flag in (("batch_size", "--batch-size"), ("seq_len", "--seq-len")):
            if key in config:
                args += [flag, str(config[key])]
        live = card.get("ngram")
        if ngram is None and live:  # the live version's make-up carries over
            mix = ["--ngram", str(live["order"]), "--ngram-weight", str(live["weight"])]
        else:
            mix = ["--ngram", str(ngram)] if ngram else []
        if card.get("poem", {}).get("unit") in UNITS:  # so does what one poem is
            mix += ["--unit", card["poem"]["unit"]]
        if "copy_guard" in card:  # and its guard (else export's default for the corpus)
            mix += ["--copy-guard", str(card["copy_guard"]["k"])]
        await self._start(interaction, style, corpus, args, epochs, activate, mix)

    @app_commands.command(name="add")
    @app_commands.describe(
        name="the new style's name (a-z, 0-9, _ and -)",
        corpus="a UTF-8 text file to learn from",
        epochs="passes over the corpus (default 10)",
        size="small trains in minutes; large writes best but trains for hours",
        ngram="order of a Kneser-Ney n-gram model to mix in (default 0: none); helps small corpora",
        unit="what one poem is (default: a paragraph where the text has blank lines, else a line)",
        copy_guard="never write this many consecutive characters of the upload (default 0: off; "
        "8 suits lyrics)",
        cell="the recurrent cell (default lstm; peephole: gates read the cell state; coupled: "
        "fewer weights)",
    )
    @app_commands.choices(
        size=[app_commands.Choice(name=s, value=s) for s in SIZES],
        unit=[app_commands.Choice(name=u, value=u) for u in UNITS],
        cell=[app_commands.Choice(name=c, value=c) for c in CELLS],
    )
    async def add(
        self,
        interaction: discord.Interaction,
        name: str,
        corpus: discord.Attachment,
        epochs: app_commands.Range[int, 1, MAX_EPOCHS] = 10,
        size: str = "medium",
        ngram: app_commands.Range[int, 0, MAX_NGRAM_ORDER] = 0,
        unit: str | None = None,
        copy_guard: app_commands.Range[int, 0, MAX_COPY_GUARD] = 0,
        cell: str = "lstm",
    ) -> None:
        """Add a new style trained on an uploaded text file."""
        try:
            check_name(name, "style name")
        except ValueError as err:
            raise UserError(escape(str(err))) from None
        if versions(self.registry.models_dir, name):
            raise UserError(f"{name} exists already; use /model retrain {name}.")
        epochs = self._epochs(epochs)
        if size not in SIZES:
            raise UserError(f"size must be one of {', '.join(SIZES)}.")
        if unit is not None and unit not in UNITS:
            raise UserError(f"unit must be one of {', '.join(UNITS)}.")
        if cell not in CELLS:
            raise UserError(f"cell must be one of {', '.join(CELLS)}.")
        if copy_guard == 1 or not 0 <= copy_guard <= MAX_COPY_GUARD:
            raise UserError(f"copy_guard must be 0 (off) or from 2 to {MAX_COPY_GUARD}.")
        limit = self.corpora.max_bytes
        if corpus.size > limit:
            raise UserError(
                f"{quoted(corpus.filename)} is {corpus.size:,} bytes; the limit is {limit:,}."
            )
        # Downloading may take longer than Discord's 3 seconds: answer first (privately, so a
        # refusal stays between the bot and the operator).
        await interaction.response.defer(ephemeral=True, thinking=True)
        try:
            path = await self._save_corpus(name, corpus)
        except CorpusRefused as err:
            await interaction.edit_original_response(content=str(err))
            return
        mix = ["--ngram", str(ngram)] if ngram else []
        if unit is not None:
            mix += ["--unit", unit]
        mix += ["--copy-guard", str(copy_guard)]
        args = ["--cell", cell, *SIZES[size]]
        await self._start(interaction, name, str(path), args, epochs, True, mix)

    async def _save_corpus(self, style: str, attachment: discord.Attachment):
        """Download an uploaded corpus and keep it if it is usable text; CorpusRefused if not."""
        self.corpora.check_size(attachment.size)
        data = await attachment.read()
        return self.corpora.save(style, data, quoted(attachment.filename))

    @app_commands.command(name="jobs")
    async def jobs(self, interaction: discord.Interaction) -> None:
        """List retrain jobs and their state."""
        try:
            jobs = await self.jobs.listing()
        except QueueUnavailable as err:
            raise UserError(escape(str(err))) from None
        await interaction.response.send_message(jobs_lines(jobs), ephemeral=True)

    @app_commands.command(name="cancel")
    @app_commands.describe(job="the job number from /model jobs")
    async def cancel(
        self, interaction: discord.Interaction, job: app_commands.Range[int, 1]
    ) -> None:
        """Cancel a queued or running retrain job; nothing live changes."""
        try:
            cancelled = await self.jobs.cancel(job)
        except (LookupError, ValueError, QueueUnavailable) as err:
            raise UserError(str(err)) from None
        await interaction.response.send_message(
            f"Job {cancelled.id} ({cancelled.style}) is being cancelled.", ephemeral=True
        )

    async def _start(
        self,
        interaction: discord.Interaction,
        style: str,
        corpus: str,
        args: list[str],
        epochs: int,
        activate: bool | None,
        export_args: list[str],
    ) -> None:
        # Queued: this posts the job's message; from then on the bot process holding this
        # guild edits it (`job_messages`), whichever process that is by then, and however often
        # processes restart while the job runs.
        if not interaction.response.is_done():
            await interaction.response.defer(ephemeral=True, thinking=True)
        where = JobMessage(
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            application_id=interaction.application_id,
            token=interaction.token,
            token_at=time.time(),
        )
        try:
            job = await self.jobs.enqueue(
                style, corpus, args, epochs, activate, interaction.user.id, export_args, where
            )
        except (ValueError, QueueUnavailable) as err:
            await interaction.followup.send(escape(str(err)), ephemeral=True)
            return
        message = await interaction.followup.send(job_text(job), wait=True)
        await self.jobs.message_posted(job, message.id)


def job_text(job: Job) -> str:
    lines = [f"**Job {job.id}** · {job.style} · {job.status}"]
    for p in job.progress[-5:]:
        lines.append(
            f"epoch {p['epoch']}/{job.epochs} · loss {p['loss']:.3f} · "
            f"validation {p['val_loss']:.3f} nats/char · {p['seconds']:.0f} s"
        )
    if job.detail:
        lines.append(escape(job.detail))
    return "\n".join(lines)[:2000]


def jobs_lines(jobs: list[Job]) -> str:
    if not jobs:
        return "No jobs yet."
    return "\n".join(escape(j.summary()) for j in jobs[-15:])[:2000]
