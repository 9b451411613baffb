"""The shipped bundles side by side: validation loss against the Kneser-Ney baseline of the same
split, size, parameters, training time and speed, all read from the bundles' cards.

    python -m benchmarks.bundles      # writes benchmarks/results/bundles.md
"""

from __future__ import annotations

import json
from pathlib import Path

from bot.engine.bundle import active_version, load_bundle, styles

ROOT = Path(__file__).resolve().parent.parent


def kneser_ney(results: Path) -> dict[str, float]:
    """The 6-gram figure per corpus name, from `python -m benchmarks.kneser_ney`."""
    path = results / "kneser_ney.json"
    if not path.exists():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return {
        corpus["name"]: corpus["orders"]["6"]["nats_per_char"]
        for corpus in data["corpora"]
        if "6" in corpus["orders"]
    }


def table(models: Path, results: Path) -> str:
    baseline = kneser_ney(results)
    rows = [
        "| style | version | cell | parameters | validation nats/char (bits) | n-gram mixed in | "
        "KN 6-gram | int8 nats/char | parity | epochs | training | chars/s | size MB |",
        "|---|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for style in styles(models):
        version = active_version(models, style)
        bundle = load_bundle(models / style / version)
        card, m = bundle.card, bundle.card["metrics"]
        kn = baseline.get(card["corpus"]["name"])
        int8 = m.get("val_loss_int8")
        ngram = card.get("ngram")
        mixed = (
            f"{ngram['order']}-gram at {1 - ngram['weight']:g} (network alone "
            f"{m['val_loss_network']:.4f}, n-gram alone {ngram['val_loss']:.4f})"
            if ngram
            else "-"
        )
        rows.append(
            "| "
            + " | ".join(
                [
                    style,
                    version,
                    f"{card['layers']}x{card['cell'].upper()} {card['units']}",
                    f"{card.get('parameters', 0):,}",
                    f"{m['val_loss']:.4f} ({m['val_bpc']:.3f})",
                    mixed,
                    f"{kn:.4f}" if kn is not None else "-",
                    f"{int8:.4f}" if int8 is not None else "-",
                    f"{card.get('parity', {}).get('max_abs_logit_diff', float('nan')):.1e}",
                    str(m["epochs"]),
                    f"{m['training_seconds'] / 60:.0f} min",
                    f"{m['chars_per_second']:,}",
                    f"{bundle.size_bytes / 1e6:.1f}",
                ]
            )
            + " |"
        )
    return "\n".join(rows) + "\n"


def main() -> None:
    results = ROOT / "benchmarks" / "results"
    text = table(ROOT / "models", results)
    results.mkdir(parents=True, exist_ok=True)
    (results / "bundles.md").write_text(
        "# Shipped bundles\n\nRead from each live bundle's card by `python -m benchmarks.bundles`."
        " Validation is the last 10% of each corpus, scored with full context.\n\n" + text,
        encoding="utf-8",
    )
    print(text)


if __name__ == "__main__":
    main()
