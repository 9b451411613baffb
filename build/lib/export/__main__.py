"""`python -m export RUN --models DIR`: turn a finished training run into a verified bundle.
`python -m export derive BUNDLE...`: build the prefill and int8 graphs again (with
--new-version, the one-step graph too, as a new version), add the poem section or a copy guard,
for bundles that exist.
`python -m export kernels`: write the bot's row kernels (`bot/engine/kernels/*.onnx`) again."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bot.engine.ngram import DEFAULT_WEIGHT  # numpy only: no TensorFlow at parse time
from bot.forms.units import UNITS


def derive_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export derive",
        description="Add to existing bundles, without a training run: the prompt prefill graph "
        "and the int8 step graph (from their own model.onnx; with --new-version, a new version "
        "whose one-step graph is built again too, checked against the old one); with --poem, "
        "the card's poem section; with --copy-guard, a copy guard; with --ngram, an n-gram "
        "model.",
    )
    p.add_argument("bundles", type=Path, nargs="+", help="bundle folders, models/STYLE/VERSION")
    p.add_argument("--corpus", help="the corpus the bundle was trained on (default: the card's)")
    p.add_argument("--no-int8", action="store_true", help="only add the prefill graph")
    p.add_argument(
        "--no-prefill",
        action="store_true",
        help="only add the int8 graph (a prefill graph holds a second copy of the weights, too "
        "much for a big network within the 50 MB a bundle has)",
    )
    p.add_argument(
        "--poem",
        action="store_true",
        help="only add the card's poem section (its unit and forms) and, for an English "
        "style, its training split's words; the graphs stay as they are",
    )
    p.add_argument("--unit", choices=UNITS, help="with --poem: a poem is one paragraph or line")
    p.add_argument(
        "--copy-guard",
        type=int,
        metavar="K",
        help="only add a copy guard: no K consecutive characters of the training split are "
        "ever written (the graphs stay as they are)",
    )
    p.add_argument(
        "--ngram",
        type=int,
        metavar="ORDER",
        help="only add a Kneser-Ney n-gram model of this order, fitted on the training split "
        "and mixed with the network as served (replacing any the bundle had)",
    )
    p.add_argument(
        "--ngram-weight",
        type=float,
        default=DEFAULT_WEIGHT,
        help=f"with --ngram: the network's share of the mixture, in (0, 1) (default "
        f"{DEFAULT_WEIGHT})",
    )
    p.add_argument(
        "--new-version",
        help="write the result as this new version of the style (the bundle given stays as it "
        "is); without --copy-guard, --ngram or --poem, its one-step graph is built again from "
        "the weights",
    )
    args = p.parse_args(argv)
    if args.poem and args.new_version:
        p.error(
            "--poem changes a bundle in place; --new-version goes with the graphs, --copy-guard "
            "or --ngram"
        )

    from bot.corpus import CorpusError
    from bot.engine.bundle import BundleError
    from export.graphs import GraphError
    from export.onnx_export import ExportError, add_guard, add_ngram, add_poem, derive

    for path in args.bundles:
        try:
            if args.copy_guard is not None:
                add_guard(path, args.copy_guard, args.corpus, args.new_version)
            elif args.ngram is not None:
                add_ngram(path, args.ngram, args.ngram_weight, args.corpus, args.new_version)
            elif args.poem:
                add_poem(path, args.corpus, args.unit)
            else:
                command = shlex.join(["python", "-m", "export", "derive", *argv])
                derive(
                    path,
                    args.corpus,
                    not args.no_int8,
                    args.new_version,
                    command=command,
                    prefill=not args.no_prefill,
                )
        except (ExportError, BundleError, CorpusError, GraphError, ValueError) as err:
            print(f"error: {path}: {err}", file=sys.stderr)
            return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["derive"]:
        return derive_main(argv[1:])
    if argv[:1] == ["kernels"]:
        from export.kernels import write

        for path in write():
            print(f"wrote {path}")
        return 0
    p = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a training run to an ONNX bundle and check it against TensorFlow.",
    )
    p.add_argument("run", type=Path, help="the run folder `python -m training --out` wrote")
    p.add_argument("--models", type=Path, default=Path("models"), help="models folder")
    p.add_argument("--version", help="version name (default: the next vN)")
    p.add_argument("--activate", action="store_true", help="make it the live version")
    p.add_argument("--int8", action="store_true", help="also write the int8 step graph")
    p.add_argument(
        "--ngram",
        type=int,
        default=0,
        metavar="ORDER",
        help="also fit a Kneser-Ney n-gram model of this order on the training split, which "
        "the bot mixes with the network (worth it on a small corpus; default 0: none)",
    )
    p.add_argument(
        "--ngram-weight",
        type=float,
        default=DEFAULT_WEIGHT,
        help=f"the network's share of the mixture, in (0, 1) (default {DEFAULT_WEIGHT})",
    )
    p.add_argument("--display-name", help="name shown to users (default: the corpus's)")
    p.add_argument("--language", help="BCP 47 language tag of the corpus, e.g. en, zh-Hant")
    p.add_argument(
        "--unit",
        choices=UNITS,
        help="what one poem is: a paragraph (up to a blank line) or a line (default: a "
        "paragraph where the corpus has blank lines, else a line)",
    )
    p.add_argument(
        "--copy-guard",
        type=int,
        metavar="K",
        help="never write K consecutive characters of the training split (default: 8 for a "
        "corpus known to be copyrighted, none otherwise; 0: none)",
    )
    p.add_argument(
        "--no-prefill",
        action="store_true",
        help="no prompt prefill graph (a prompt is then read a step at a time): it holds a "
        "second copy of the weights, too much for a big network within the 50 MB a bundle has",
    )
    args = p.parse_args(argv)

    from bot.corpus import CorpusError
    from bot.engine.bundle import BundleError
    from export.onnx_export import ExportError, export_run

    try:
        bundle = export_run(
            args.run,
            args.models,
            version=args.version,
            activate=args.activate,
            int8=args.int8,
            display_name=args.display_name,
            language=args.language,
            ngram=args.ngram,
            ngram_weight=args.ngram_weight,
            command=shlex.join(["python", "-m", "export", *argv]),
            unit=args.unit,
            copy_guard=args.copy_guard,
            prefill=not args.no_prefill,
        )
    except (ExportError, BundleError, CorpusError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {bundle.style}/{bundle.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
