"""`python -m export RUN --models DIR`: turn a finished training run into a verified bundle."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export",
        description="Export a training run to an ONNX bundle and check it against TensorFlow.",
    )
    p.add_argument("run", type=Path, help="the run folder `python -m training --out` wrote")
    p.add_argument("--models", type=Path, default=Path("models"), help="models folder")
    p.add_argument("--version", help="version name (default: the next vN)")
    p.add_argument("--activate", action="store_true", help="make it the live version")
    p.add_argument("--int8", action="store_true", help="also write a dynamic-int8 model")
    p.add_argument("--display-name", help="name shown to users (default: the corpus's)")
    p.add_argument("--language", help="BCP 47 language tag of the corpus, e.g. en, zh-Hant")
    args = p.parse_args(argv)

    from bot.bundle import BundleError
    from export.onnx_export import ExportError, export_run
    from training.corpus import CorpusError

    try:
        bundle = export_run(
            args.run,
            args.models,
            version=args.version,
            activate=args.activate,
            int8=args.int8,
            display_name=args.display_name,
            language=args.language,
        )
    except (ExportError, BundleError, CorpusError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"exported {bundle.style}/{bundle.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
