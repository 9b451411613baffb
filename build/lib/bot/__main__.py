"""`python -m bot` runs the Discord bot; `python -m bot generate` writes one text in the shell."""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
from pathlib import Path

from bot.config import ConfigError, Settings, load_dotenv
from bot.engine.bundle import BundleError, active_version, check_name, load_bundle, styles
from bot.engine.scheduler import Busy, Request, generate_once
from bot.engine.sessions import PRECISIONS, ProviderError
from bot.forms.rules import FormError
from bot.forms.themes import about_line
from bot.poems import MAX_SEED, candidates_for, plan_with_theme


def generate_main(args: argparse.Namespace, settings: Settings) -> int:
    models = Path(args.models) if args.models else settings.models_dir
    try:
        style = check_name(args.style, "style")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    version = args.version or active_version(models, style)
    if version is None or not (models / style / version).is_dir():
        known = ", ".join(styles(models)) or "none"
        print(
            f"error: no bundle for style {style!r} in {models} (styles: {known})", file=sys.stderr
        )
        return 2
    seed = args.seed if args.seed is not None else secrets.randbelow(MAX_SEED + 1)
    try:
        bundle = load_bundle(models / style / version)
        poem = plan_with_theme(
            settings,
            bundle.card,
            bundle.vocab.chars,
            bundle.path,
            seed,
            about=args.about,
            form=args.form,
            acrostic=args.acrostic,
            script=args.script,
            prompt=args.prompt,
            length=args.length,
        )
    except (BundleError, FormError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    request = Request(
        prompt=poem.prompt,
        length=poem.length,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=seed,
        rules=poem.rules,
        candidates=args.candidates
        or candidates_for(settings, bundle.card, about=poem.theme is not None),
        candidate_unit=settings.candidate_unit,
    )
    try:
        result = asyncio.run(
            generate_once(
                models / style / version,
                request,
                settings.providers,
                args.precision or settings.precision,
            )
        )
    except (ValueError, BundleError, ProviderError, Busy) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if result.unknown:
        print(
            f"note: {style} does not know {''.join(result.unknown)!r}; those prompt characters "
            "were left out of its input",
            file=sys.stderr,
        )
    print(poem.present(result.text))
    about = poem.about(result.text)
    if about is not None:
        print(f"-- {about_line(*about)}", file=sys.stderr)
    form = f", {result.form}" if result.form else ""
    print(
        f"-- {style} {result.version}{form}, temperature {result.temperature}, seed {result.seed}",
        file=sys.stderr,
    )
    if result.relaxed:
        print(f"note: rules bent to finish it: {'; '.join(result.relaxed)}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the Discord bot (the default)")
    sub.add_parser("worker", help="run retrain jobs from the queue in PostgreSQL (DATABASE_URL)")
    gen = sub.add_parser("generate", help="write one text with a style's live model")
    gen.add_argument("--style", required=True)
    gen.add_argument("--version", help="a version other than the live one")
    gen.add_argument("--prompt", default="", help="text to start from")
    gen.add_argument(
        "--length",
        type=int,
        help="most characters to write (default: the form's own, else DEFAULT_LENGTH); a poem "
        "cut short ends at its last whole line",
    )
    gen.add_argument("--form", help="a form the style offers (e.g. qijue, sonnet, verse)")
    gen.add_argument("--acrostic", help="藏头: line i starts with its i-th character (or letter)")
    gen.add_argument("--script", choices=("simplified", "traditional"), help="Chinese styles")
    gen.add_argument(
        "--about",
        help="what the poem is about: up to 5 words or 12 Chinese characters; - for nothing in "
        "particular (a style that has themes of its own gives a poem asked without one of them)",
    )
    gen.add_argument("--temperature", type=float, default=0.8, help="0 = always the likeliest")
    gen.add_argument("--top-k", type=int, default=0, help="sample among the k likeliest (0 = off)")
    gen.add_argument("--top-p", type=float, default=1.0, help="nucleus mass (1 = off)")
    gen.add_argument("--seed", type=int, help="same seed and options, same text")
    gen.add_argument(
        "--candidates",
        type=int,
        help="with a form, write each line this many times and keep the best (default: "
        "CANDIDATES, else the style's own)",
    )
    gen.add_argument("--models", help="models folder (default: MODELS_DIR or models)")
    gen.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="fp32, or int8 where the bundle has it (default: MODEL_PRECISION, else the style's "
        "own)",
    )
    args = parser.parse_args(argv)

    try:
        load_dotenv()
        settings = Settings.from_env()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "generate":
        return generate_main(args, settings)
    if args.command == "worker":
        from bot.worker import worker_main

        return worker_main(settings, Path("data"))
    from bot.composition import run

    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
