"""`python -m training`: train a char-RNN style from a corpus file or a known corpus name."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from bot.corpus import KNOWN_CORPORA
    from bot.engine.bundle import CELLS
    from training.speed import PRECISIONS

    p = argparse.ArgumentParser(
        prog="python -m training",
        description="Train a character-level language model for one style.",
    )
    p.add_argument(
        "--corpus",
        required=True,
        help=f"a UTF-8 text file, or a known corpus name ({', '.join(KNOWN_CORPORA)})",
    )
    p.add_argument("--style", required=True, help="style name (a-z, 0-9, _ and -)")
    p.add_argument("--out", required=True, help="run folder, e.g. runs/shakespeare")
    p.add_argument(
        "--cell",
        choices=CELLS,
        default="lstm",
        help="lstm, gru, peephole (LSTM whose gates read the cell state) or coupled (LSTM "
        "whose input gate is 1 - forget gate)",
    )
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--units", type=int, default=512)
    p.add_argument("--embedding", type=int, default=64)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (cosine decay)")
    p.add_argument("--clipnorm", type=float, default=5.0, help="global gradient-norm clip")
    p.add_argument("--patience", type=int, default=3, help="early-stopping patience in epochs")
    p.add_argument("--min-count", type=int, default=1, help="rarer characters read as unknown")
    p.add_argument(
        "--unk-rate",
        type=float,
        help="share of each target given to the unknown id (default: estimated from the data)",
    )
    p.add_argument(
        "--init-from",
        help="start from this run's best weights (fine-tuning); a --pretrain run for the same "
        "corpus also gives its vocabulary",
    )
    p.add_argument(
        "--pretrain",
        nargs="+",
        default=[],
        metavar="CORPUS",
        help="pretrain: train on these corpora and --corpus's training split, validated on "
        "--corpus's validation tail (refused if a line of it occurs in them); then fine-tune "
        "with --init-from this run",
    )
    p.add_argument(
        "--drop-leaks",
        action="store_true",
        help="with --pretrain: leave out of the pretraining corpora each line that holds a "
        "line of --corpus's validation tail (the card counts them) instead of refusing",
    )
    p.add_argument(
        "--pretrain-min-count",
        type=int,
        default=50,
        help="with --pretrain: their characters rarer than this read as unknown",
    )
    p.add_argument(
        "--sampled-softmax",
        type=int,
        default=1024,
        metavar="N",
        help="training scores each target against N sampled characters, not the whole "
        "vocabulary (validation stays the full softmax); 0: the full softmax. Used only where "
        "the vocabulary has at least 2N characters",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bfloat16 mixed precision where the hardware computes it natively "
        "(AVX-512 BF16 or AMX, a GPU of compute capability 8+), else float32",
    )
    p.add_argument(
        "--jit",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="compile the training step with XLA (one device only; slower than without on "
        "the CPUs measured, benchmarks/results/train_options.md)",
    )
    p.add_argument(
        "--select-by",
        choices=("windowed", "full"),
        default="windowed",
        help="validation loss that picks the best epoch and early-stops: Keras's windows, or "
        "the full-context figure the card reports (about a second more per epoch)",
    )
    p.add_argument(
        "--epoch-chars",
        type=int,
        help="an epoch (checkpoint, validation, progress line) every this many training "
        "characters instead of one pass over the text: for long pretraining texts",
    )
    p.add_argument("--sample-chars", type=int, default=200, help="sample printed per epoch")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--max-minutes", type=float, default=None, help="wall-clock budget")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument(
        "--strategy",
        choices=("default", "mirrored", "multi-worker"),
        default="default",
        help="mirrored: every local GPU (else every logical CPU); multi-worker: the machines "
        "TF_CONFIG names",
    )
    p.add_argument(
        "--cpu-devices", type=int, default=0, help="split the CPU into this many devices (tests)"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bot.corpus import CorpusError

    if args.cpu_devices > 1:
        from training.strategy import split_cpu

        split_cpu(args.cpu_devices)
    from training.train import TrainConfig, train

    cfg = TrainConfig(
        corpus=args.corpus,
        style=args.style,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        lr=args.lr,
        clipnorm=args.clipnorm,
        patience=args.patience,
        seed=args.seed,
        max_minutes=args.max_minutes,
        min_count=args.min_count,
        init_from=args.init_from,
        unk_rate=args.unk_rate,
        sample_chars=args.sample_chars,
        select_by=args.select_by,
        strategy=args.strategy,
        sampled_softmax=args.sampled_softmax,
        precision=args.precision,
        jit_compile=args.jit,
        pretrain=tuple(args.pretrain),
        pretrain_min_count=args.pretrain_min_count,
        drop_leaks=args.drop_leaks,
        epoch_chars=args.epoch_chars,
    )
    model_args = {
        "cell": args.cell,
        "layers": args.layers,
        "units": args.units,
        "embedding": args.embedding,
        "dropout": args.dropout,
    }
    try:
        train(cfg, model_args, resume=args.resume)
    except (CorpusError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
