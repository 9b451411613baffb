"""One poem request from a user's options: the form's plan (bot/forms) turned into the engine's
Request. The Discord side and the page both ask for poems through it, so the same options
give the same poem in either; it raises FormError for options the form cannot take."""

from __future__ import annotations

import secrets

from bot.config import Settings
from bot.engine.registry import Live
from bot.engine.scheduler import Request
from bot.forms import catalog

MAX_SEED = 2**53 - 1  # Discord's integer options, and a browser's exact numbers, stop at 2^53


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
) -> tuple[catalog.PoemPlan, Request]:
    """The plan and the Request for a poem of `live`'s style: the form's writer and length
    bound, the settings' temperature where none is given, a seed a user can type back where
    none is given."""
    plan = catalog.plan(
        live.bundle.card,
        live.bundle.vocab.chars,
        live.bundle.path,
        form=form,
        acrostic=acrostic,
        output_script=script,
        prompt=prompt,
        length=length,
        default_length=settings.default_length,
        max_length=settings.limits.max_length,
    )
    if temperature is None:
        temperature = settings.default_temperature
    request = Request(
        prompt=plan.prompt,
        length=plan.length,
        temperature=temperature + 0.0,  # -0.0 would show as "-0" in a footer
        seed=seed if seed is not None else secrets.randbelow(MAX_SEED + 1),
        rules=plan.rules,
        context=context,
    )
    return plan, request
