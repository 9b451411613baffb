"""Do a plan's words stay on its theme? Judged on a corpus the plans are not derived from.

    python -m benchmarks.plan_drift [--styles tang songci] [--corpora ../shared/corpora]

A Chinese style's plans (`bot.forms.themes.Related.plan`) come from its own training split. Here
each theme's plan (8 lines, as a 律詩) is judged on the 全宋詩 (`song_shi.txt`; for 宋詞, read in
simplified script): for each of the plan's seven words after the user's, the lift of its
co-occurrence with the user's word in one poem, P(both) / (P(theme) P(word)). Themes: the
topic sheets' and 50 of the style's frequent two-character words (`benchmarks.about`); a theme
the 全宋詩 holds in fewer than MIN_POEMS poems is left out. Two rules side by side, the same
run: a later word needs SUPPORT chosen words to agree on it (today's plans), and one (the plans
before `themes.SUPPORT`).

Writes benchmarks/results/plan_drift.json and .md.
"""

from __future__ import annotations

import argparse
import math
import statistics
from pathlib import Path
from typing import Any

from benchmarks.about import corpus_themes, live
from benchmarks.forms import DEFAULT_CORPORA, ROOT, say
from benchmarks.ratings import TOPIC_THEMES
from benchmarks.stats import write_results
from bot.forms import themes

LINES = 8
MIN_POEMS = 30
ON_THEME = 1.5
JUDGE = "song_shi.txt"


def poems_of(corpora: Path, simplified: bool) -> list[str]:
    text = (corpora / JUDGE).read_text(encoding="utf-8")
    if simplified:
        import opencc

        text = opencc.OpenCC("t2s").convert(text)
    return [line for line in text.split("\n") if len(line) > 10]


class Judge:
    """Poems holding a word, counted once per word."""

    def __init__(self, poems: list[str]) -> None:
        self.poems = poems
        self._holding: dict[str, set[int]] = {}

    def holding(self, word: str) -> set[int]:
        if word not in self._holding:
            self._holding[word] = {i for i, p in enumerate(self.poems) if word in p}
        return self._holding[word]

    def lift(self, theme: str, word: str) -> float:
        a, b = self.holding(theme), self.holding(word)
        if not b:
            return 0.0
        return len(a & b) * len(self.poems) / (len(a) * len(b))


def judge_plans(related: themes.Related, judge: Judge, asked: list[str], support: int) -> dict:
    plans = {t: related.plan([t], LINES, support=support) for t in asked}
    lifts = [judge.lift(t, w) for t, plan in plans.items() for w in plan[1:LINES]]
    logs = [math.log(max(x, 1e-3)) for x in lifts]
    return {
        "plans": {t: list(p[:LINES]) for t, p in plans.items()},
        "words": len(lifts),
        "mean_log_lift": statistics.fmean(logs),
        "share_on_theme": sum(x > ON_THEME for x in lifts) / len(lifts),
    }


def run(styles: list[str], corpora: Path) -> dict[str, Any]:
    styles_out: dict[str, Any] = {}
    out = {"judged_on": JUDGE, "lines": LINES, "min_poems": MIN_POEMS, "styles": styles_out}
    for style in styles:
        path = live(style)
        related = themes.Related.load(path / themes.THEMES_FILE)
        simplified = style == "songci"
        judge = Judge(poems_of(corpora, simplified))
        asked = list(dict.fromkeys([*TOPIC_THEMES[style], *corpus_themes(related)]))
        asked = [t for t in asked if len(judge.holding(t)) >= MIN_POEMS]
        say(f"{style}: {len(asked)} themes, {len(judge.poems):,} poems to judge on")
        styles_out[style] = {
            "bundle": f"{style}/{path.name}",
            "themes": len(asked),
            "rules": {
                f"support {n}": judge_plans(related, judge, asked, n) for n in (themes.SUPPORT, 1)
            },
        }
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Plans on their theme",
        "",
        "`python -m benchmarks.plan_drift`: each theme's plan (8 lines) judged on the 全宋詩, a "
        "corpus the plans are not derived from: per plan word after the user's, the lift of "
        "its co-occurrence with the user's word in one poem. `support 2`: a word related "
        "only to the plan's own words needs two of them to agree (today); `support 1`: one is "
        "enough (the plans before).",
        "",
        "| style | rule | themes | plan words | mean log lift | share with lift > 1.5 |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in report["styles"].values():
        for rule, got in row["rules"].items():
            lines.append(
                f"| {row['bundle']} | {rule} | {row['themes']} | {got['words']} | "
                f"{got['mean_log_lift']:.2f} | {got['share_on_theme']:.0%} |"
            )
    lines += ["", "Plans that changed (before → now), the first ten:", ""]
    for style, row in report["styles"].items():
        now, before = (row["rules"][k]["plans"] for k in row["rules"])
        changed = [t for t in now if now[t] != before[t]][:10]
        for t in changed:
            lines.append(f"- {style}: {' · '.join(before[t])} → {' · '.join(now[t])}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--styles", nargs="+", default=["tang", "songci"])
    parser.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    args = parser.parse_args()
    report = run(args.styles, args.corpora)
    write_results(ROOT / "benchmarks" / "results", "plan_drift", report, markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
