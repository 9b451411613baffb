"""One poem request from a user's options: the form's plan (bot/forms) turned into the engine's
Request. The Discord side and the page both ask for poems through it, so the same options
give the same poem in either; it raises FormError for options the form cannot take."""

from __future__ import annotations

import dataclasses
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.engine.registry import Live
from bot.engine.scheduler import Request
from bot.forms import catalog
from bot.forms.rules import FormError

MAX_SEED = 2**53 - 1  # Discord's integer options, and a browser's exact numbers, stop at 2^53
DEFAULT_CANDIDATES = 8  # a style's candidates a line where neither CANDIDATES nor its card says
ABOUT_FACTOR = 2  # a poem about a theme, where nothing says how many: twice a free poem's
NO_THEME = "-"  # `about` as typed for a poem about nothing in particular
THEME_PICK = 0x7E3A  # mixed into the seed that picks a default theme (not the sampler's stream)


def candidates_for(settings: Settings, card: dict[str, Any], about: bool = False) -> int:
    """How many times a poem of this style writes each line of its form: CANDIDATES where the
    operator set it (for this style by name, else for every style), else the style's own (its
    card's `poem.candidates`, chosen by blind readers against the latency), else
    DEFAULT_CANDIDATES; never more than the batch.

    A poem `about` a theme: ABOUT_CANDIDATES where the operator set it; else twice what
    CANDIDATES sets, where it does; else the style's own (`poem.about_candidates`); else
    ABOUT_FACTOR times a free poem's. Its candidates each try the line's keyword in another
    place, so each place has fewer tries than a free line's: at twice the candidates, readers
    found the themed poems' fluency closer to the free ones' on all four shipped styles, and
    Shakespeare's only level at four times (`benchmarks/results/ratings/topic-about-*`)."""
    style = card.get("style", "")
    poem = card.get("poem", {})
    operator = settings.style_candidates.get(style) or settings.candidates
    chosen = operator or poem.get("candidates") or DEFAULT_CANDIDATES
    if about:
        chosen = (
            settings.style_about_candidates.get(style)
            or settings.about_candidates
            or (operator and ABOUT_FACTOR * operator)
            or poem.get("about_candidates")
            or ABOUT_FACTOR * chosen
        )
    return max(1, min(int(chosen), settings.limits.max_batch))


@dataclass(frozen=True)
class PoemOptions:
    """Everything a user asks a poem with (None: the channel's or the bot's default), as
    /poem, its buttons and the page take them. `context` is text the model reads first (the
    poem a Continue writes on from, a message too long to be a prompt); `about` the theme,
    which Again and Continue keep."""

    style: str | None = None
    prompt: str = ""
    length: int | None = None
    temperature: float | None = None
    seed: int | None = None
    form: str | None = None
    acrostic: str | None = None
    script: str | None = None
    context: str = ""
    about: str | None = None  # the theme: a few words the poem is about

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PoemOptions:
        """Options kept as JSON (a button's record); keys it does not know are left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def read_as_finished(context: str, card: dict[str, Any]) -> str:
    """`context` (the poem a Continue writes on from, a message) ended as the corpus's pieces
    end: a line's newline, or a paragraph's blank line. A poem ends at its last 。 or full stop,
    and the corpus puts a newline after it; read without one, the new poem would be the old
    one's next clause, its first line glued to the old one's last."""
    unit = card.get("poem", {}).get("unit", "paragraph")
    return context.rstrip("\n") + ("\n" if unit == "line" else "\n\n")


def theme_for(
    settings: Settings,
    card: dict[str, Any],
    seed: int,
    *,
    about: str | None,
    prompt: str = "",
    acrostic: str | None = None,
    context: str = "",
) -> tuple[str | None, bool]:
    """What a poem is about, and whether the bot chose it: the user's `about` as typed; none
    where they typed NO_THEME (or a caller passed ""); else, for a poem asked with no opening
    words, no acrostic and nothing to write on from, one of its style's own themes (its
    card's `poem.default_themes`), picked by the seed, unless the operator turned that off
    (DEFAULT_THEMES=off). Blind readers found Shakespeare's poems about a theme more coherent
    than free ones and as fluent (`benchmarks/results/ratings/topic-24-shakespeare-jaychou`);
    a style whose readers found no gain names none."""
    if about is not None:
        return (None, False) if about == "" or about.strip() == NO_THEME else (about, False)
    if prompt or acrostic or context or not settings.default_themes:
        return None, False
    listed = card.get("poem", {}).get("default_themes")
    if not isinstance(listed, list):  # none, or a card an operator mistyped: no theme
        return None, False
    own = [t for t in listed if isinstance(t, str) and t.strip()]
    if not own:
        return None, False
    return random.Random(seed ^ THEME_PICK).choice(own), True


def plan_with_theme(
    settings: Settings,
    card: dict[str, Any],
    chars: Sequence[str],
    path: Path,
    seed: int,
    *,
    about: str | None,
    form: str | None = None,
    acrostic: str | None = None,
    script: str | None = None,
    prompt: str = "",
    length: int | None = None,
    context: str = "",
) -> catalog.PoemPlan:
    """The form's plan (`catalog.plan`) about what `theme_for` says: a theme the bot chose
    gives way, the poem written free, where the form cannot take it."""
    theme, chosen = theme_for(
        settings, card, seed, about=about, prompt=prompt, acrostic=acrostic, context=context
    )

    def planned(theme: str | None) -> catalog.PoemPlan:
        return catalog.plan(
            card,
            chars,
            path,
            form=form,
            acrostic=acrostic,
            output_script=script,
            prompt=prompt,
            length=length,
            default_length=settings.default_length,
            max_length=settings.limits.max_length,
            about=theme,
        )

    try:
        return planned(theme)
    except FormError:
        if not chosen:
            raise
        return planned(None)


def plan_request(
    settings: Settings,
    live: Live,
    *,
    prompt: str = "",
    length: int | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    form: str | None = None,
    acrostic: str | None = None,
    script: str | None = None,
    context: str = "",
    about: str | None = None,
) -> tuple[catalog.PoemPlan, Request]:
    """The plan and the Request for a poem of `live`'s style: the form's writer and length
    bound, the settings' temperature where none is given, a seed a user can type back where
    none is given, the theme `theme_for` says (`plan_with_theme`)."""
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    plan = plan_with_theme(
        settings,
        live.bundle.card,
        live.bundle.vocab.chars,
        live.bundle.path,
        seed,
        about=about,
        form=form,
        acrostic=acrostic,
        script=script,
        prompt=prompt,
        length=length,
        context=context,
    )
    if temperature is None:
        temperature = settings.default_temperature
    if context:
        context = read_as_finished(context, live.bundle.card)
        context = context[-(settings.limits.max_length + settings.limits.max_prompt) :]
    request = Request(
        prompt=plan.prompt,
        length=plan.length,
        temperature=temperature + 0.0,  # -0.0 would show as "-0" in a footer
        seed=seed,
        rules=plan.rules,
        context=context,
        candidates=candidates_for(settings, live.bundle.card, about=plan.theme is not None),
        candidate_unit=settings.candidate_unit,
    )
    return plan, request


def plan_poem(
    settings: Settings, live: Live, options: PoemOptions
) -> tuple[catalog.PoemPlan, Request]:
    """`plan_request` for a user's options (their style is `live`'s)."""
    return plan_request(
        settings,
        live,
        prompt=options.prompt or "",
        length=options.length,
        temperature=options.temperature,
        seed=options.seed,
        form=options.form,
        acrostic=options.acrostic,
        script=options.script,
        context=options.context,
        about=options.about,
    )
