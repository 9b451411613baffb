"""Poems about something (`about`, issue 23), measured on the shipped models.

    python -m benchmarks.about [--styles tang shakespeare jaychou] [--runs 20] [--corpora DIR]

1. Relatedness, and why discounted PMI: for each style, methods of relating words (the
   commonest words, P(b | a), PMI, normalised PMI, PMI * c / (c + 20), TextRank as a
   personalised PageRank of two steps over the counts) counted over units of the training
   split (a clause, a couplet, a poem; an English line pair or speech), judged on the
   validation tail: for one word of each validation poem, how many of the method's 8 best
   related words the same poem holds (precision), how many it would hold by their frequency
   alone (chance), and the ratio (lift).
2. The user's words appear in the poem: per style and form, a poem (default candidates) about
   each of 50 themes drawn from the corpus's frequent words and 20 a user would type; the
   share of poems holding every word of their theme, of lines holding a plan word, and of
   poems keeping every rule of their form.
3. Cost: a 七律 at concurrency 1 with and without a theme (each at the candidates a line the
   bot gives it: more for a theme), runs alternating, and the network's mean
   log-probability per character of the poems written (read afresh). Garbage is collected
   as the bot collects it (`bot/engine/heap.py`: what is alive frozen, collections on the
   event loop), not by Python's collector walking what the earlier parts of this run left.

Writes benchmarks/results/about.json and .md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.candidates import timed
from benchmarks.forms import CORPUS_FILES, DEFAULT_CORPORA, ROOT, STYLE_FORMS, say
from benchmarks.stats import cpu_name, percentile, write_results
from bot.config import Settings
from bot.corpus import load_corpus, split
from bot.engine.bundle import active_version, load_bundle
from bot.engine.heap import LoopCollector
from bot.engine.scheduler import Limits, Request, Scheduler
from bot.engine.sessions import load_model
from bot.forms import catalog, english, lyrics, tang, themes
from bot.forms.rules import FormError
from bot.poems import candidates_for

TOP = 8  # related words judged per query
QUERIES = 3000  # validation poems asked at most
CORPUS_THEMES = 50
THEME_POOL = 300  # corpus themes are drawn from this many of its commonest words
THEME_SEED = 23
TYPED: dict[bool, tuple[str, ...]] = {  # chinese -> themes a user would type
    True: (
        "月亮", "离别", "秋天", "故乡", "雨天", "青春", "春天", "思念", "大海", "夜晚",
        "朋友", "梦想", "雪", "花", "星星", "风", "回家", "山水", "黄昏", "爱情",
    ),
    False: (
        "love", "the sea", "winter", "death", "the king", "night", "war", "spring",
        "the moon", "friendship", "time", "home", "rain", "dreams", "beauty", "sorrow",
        "the sun", "music", "youth", "flowers",
    ),
}  # fmt: skip
SETTINGS = Settings.from_env()


# --- 1. relatedness methods ------------------------------------------------------------------


def _granular(style: str, text: str, unit: str) -> list[list[str]]:
    """The units of `text` at a granularity: Chinese runs of a clause, a couplet (the stored
    data's) or a poem (a Tang line; eight lines of lyrics); English content words of a line
    pair or of a speech (the stored data's)."""
    if style == "shakespeare":
        if unit == "speech":
            return themes.english_units(text)
        lines = text.split("\n")
        pairs = ("\n".join(lines[i : i + 2]) for i in range(0, len(lines), 2))
        return [themes.content_words(p) for p in pairs]
    if unit == "couplet":
        return themes.chinese_units(text, style == "tang")
    lines = [runs for runs in themes.chinese_clauses(text) if runs]
    if unit == "clause":
        return [[run] for runs in lines for run in runs]
    if style == "tang":
        return lines
    return [[r for runs in lines[i : i + 8] for r in runs] for i in range(0, len(lines), 8)]


def _ppr(co: themes.Cooccurrence, n: int) -> Callable[[int], list[int]]:
    """TextRank as Wang et al. use it: a personalised PageRank from the query word over the
    co-occurrence counts, two steps (restart 0.5), as a ranking function."""
    cond = co.scores("conditional")
    order = np.argsort(co.a, kind="stable")
    a, b, p = co.a[order], co.b[order], cond[order]
    starts = np.searchsorted(a, np.arange(n + 1))

    def rank(word: int) -> list[int]:
        acc = np.zeros(n)
        lo, hi = starts[word], starts[word + 1]
        acc[b[lo:hi]] += 0.5 * p[lo:hi]
        for j in np.argsort(-p[lo:hi])[:20].tolist():
            x, px = int(b[lo + j]), float(p[lo + j])
            acc[b[starts[x] : starts[x + 1]]] += 0.25 * px * p[starts[x] : starts[x + 1]]
        acc[word] = 0.0
        found = np.argsort(-acc, kind="stable")[:TOP]
        return [int(j) for j in found if acc[j] > 0]

    return rank


def relatedness(style: str, corpora: Path) -> dict[str, Any]:
    """Each method's precision, chance and lift on the validation tail, per training unit."""
    train, val = split(load_corpus(str(corpora / CORPUS_FILES[style])).text)
    chinese = style != "shakespeare"
    units = {
        "tang": ("clause", "couplet", "poem"),
        "jaychou": ("clause", "couplet", "poem"),
        "shakespeare": ("line pair", "speech"),
    }[style]
    asked = "poem" if chinese else "speech"
    rows: dict[str, Any] = {}
    for unit in units:
        trained = list(dict.fromkeys(tuple(u) for u in _granular(style, train, unit)))
        if chinese:
            words = themes.chinese_words(trained, style == "tang")
        else:
            seen = Counter(w for u in trained for w in set(u))
            words = sorted((w for w, c in seen.items() if c >= themes.MIN_WORD), key=seen.get)
            words.reverse()
        index = {w: i for i, w in enumerate(words)}
        ids = [themes.unit_ids(u, index, chinese, style == "tang") for u in trained]
        co = themes.Cooccurrence.count(ids, words, chinese)
        held = [
            set(themes.unit_ids(u, index, chinese, style == "tang"))
            for u in _granular(style, val, asked)
        ]
        share = np.zeros(len(words))
        for got in held:
            share[list(got)] += 1
        share /= max(len(held), 1)
        pmi = co.pmi()
        together = co.together >= (themes.MIN_TOGETHER if chinese else 2)
        methods: dict[str, Callable[[int], list[int]]] = {}
        commonest = np.argsort(-co.counts, kind="stable")[: 4 * TOP].tolist()
        methods["commonest words"] = lambda w, c=commonest: [j for j in c if j != w][:TOP]
        for name, method, keep in (
            ("P(b | a)", "conditional", np.ones_like(together)),
            ("PMI", "pmi", together),
            ("normalised PMI", "npmi", together),
            ("PMI * c / (c + 20), stored", "dpmi", together & (pmi >= themes.MIN_PMI)),
        ):
            ranked = co.ranked(co.scores(method), keep, TOP)
            methods[name] = lambda w, r=ranked: [j for j, _ in r[w]]
        methods["TextRank (PageRank, 2 steps)"] = _ppr(co, len(words))
        rng = random.Random(THEME_SEED)
        queries = [rng.choice(sorted(got)) for got in held if len(got) >= 3][:QUERIES]
        poems = [got for got in held if len(got) >= 3][:QUERIES]
        rows[unit] = {"words": len(words), "units": co.units, "methods": {}}
        for name, rank in methods.items():
            hits = chance = 0.0
            for word, got in zip(queries, poems, strict=True):
                found = rank(word)[:TOP]
                hits += sum(j in got for j in found)
                chance += float(share[found].sum())
            precision, base = hits / (TOP * len(poems)), chance / (TOP * len(poems))
            rows[unit]["methods"][name] = {
                "precision": precision,
                "chance": base,
                "lift": precision / base if base else None,
            }
        say(f"  {style} {unit}: {len(words):,} words, {len(poems):,} validation poems")
    return {"judged_on": asked, "units": rows}


# --- 2. the user's words in the poem ----------------------------------------------------------


def live(style: str) -> Path:
    models = ROOT / "models"
    return models / style / str(active_version(models, style))


def corpus_themes(related: themes.Related) -> list[str]:
    """CORPUS_THEMES words drawn from the style's commonest plan words (Chinese: its
    two-character ones)."""
    pool = [w for w in related.words if len(w) == 2 or not related.chinese][:THEME_POOL]
    return random.Random(THEME_SEED).sample(pool, CORPUS_THEMES)


def rules_kept(
    text: str, form: str, lexicon: english.Lexicon | None, usual: dict[str, str] | None
) -> bool:
    kind = catalog.FORMS[form].kind
    if kind == "tang":
        return tang.check(text, form).all_rules
    if form == "sonnet":
        check = english.check_sonnet(text, lexicon)
        return check.fourteen and check.rhyme_pairs_kept == 7 and check.syllable_ok == 14
    if form == "couplet":
        check = english.check_couplet(text, lexicon)
        return check.two and check.rhyme_kept and check.syllable_ok == 2
    if form == "speech":
        return 4 <= len(english.poem_lines(text)) <= 14 and english.ends_sentence(text)
    return lyrics.check_verse(text, usual).rhyme_rate == 1.0


def holds(text: str, word: str, chinese: bool) -> bool:
    if chinese:
        return word in text
    return all(w in english.words(text) for w in word.split())


def line_keywords(text: str, plan: Sequence[str], chinese: bool) -> tuple[int, int]:
    """(lines holding a plan word, lines) of a poem."""
    if chinese:
        lines = [c for c in re.split(r"[，。\n]", text) if c.strip()]
    else:
        lines = english.poem_lines(text)
    held = sum(any(holds(line.lower(), w, chinese) for w in plan) for line in lines)
    return held, len(lines)


async def write_all(path: Path, plans: list[catalog.PoemPlan], candidates: int) -> list:
    model = load_model(path)
    scheduler = Scheduler(model, Limits(max_batch=4096, max_queue=100_000, deadline=3600.0))
    try:
        requests = [
            Request(
                p.prompt,
                p.length,
                SETTINGS.default_temperature,
                seed=seed,
                rules=p.rules,
                candidates=candidates,
            )
            for seed, p in enumerate(plans)
        ]
        return await asyncio.gather(*(scheduler.generate(r) for r in requests))
    finally:
        await scheduler.close()


def appear(style: str) -> dict[str, Any]:
    path = live(style)
    bundle = load_bundle(path)
    related = catalog.table(path, bundle.card, "themes", "themes")
    chinese = related.chinese
    lexicon = catalog.lexicon(path, bundle.card)
    readings = catalog.table(path, bundle.card, "readings", "verse") if style == "jaychou" else None
    usual = readings.usual if readings is not None else None
    sets = {"corpus": corpus_themes(related), "typed": list(TYPED[chinese])}
    out: dict[str, Any] = {"themes": sets, "forms": {}}
    for form in STYLE_FORMS[style]:
        plans, asked, refused = [], [], {}
        for kind, words in sets.items():
            for theme in words:
                try:
                    plan = catalog.plan(
                        bundle.card, bundle.vocab.chars, path, form=form, about=theme
                    )
                except FormError as err:
                    refused[theme] = str(err)
                    continue
                plans.append(plan)
                asked.append((kind, theme))
        started = time.perf_counter()
        poems = asyncio.run(
            write_all(path, plans, candidates_for(SETTINGS, bundle.card, about=True))
        )
        seconds = time.perf_counter() - started
        row: dict[str, Any] = {"refused": refused, "seconds": seconds}
        for kind in sets:
            mine = [
                (plan, poem)
                for plan, poem, (k, _) in zip(plans, poems, asked, strict=True)
                if k == kind
            ]
            every = [
                all(holds(p.text.lower(), w, chinese) for w in plan.theme.words) for plan, p in mine
            ]
            lines = [line_keywords(p.text, plan.theme.plan, chinese) for plan, p in mine]
            row[kind] = {
                "poems": len(mine),
                "users_words_in": statistics.fmean(every) if every else None,
                "lines_with_keyword": sum(h for h, _ in lines) / max(1, sum(n for _, n in lines)),
                "rules_kept": statistics.fmean(
                    rules_kept(p.text, form, lexicon, usual) for _, p in mine
                ),
                "tone_bent": sum(bool(p.relaxed) for _, p in mine),
                "missing": [
                    theme
                    for (plan, p), ok, (_, theme) in zip(
                        mine, every, [a for a in asked if a[0] == kind], strict=True
                    )
                    if not ok
                ],
            }
        example = next(i for i, (k, _) in enumerate(asked) if k == "typed")
        shown = plans[example].present(poems[example].text)
        row["example"] = {
            "theme": asked[example][1],
            "plan": list(plans[example].about(poems[example].text)[1]),
            "poem": shown if style != "jaychou" else None,  # never a lyric line in results
        }
        out["forms"][form] = row
        say(
            f"  {style} {form}: {len(poems)} poems in {seconds:.0f} s; "
            + "; ".join(
                f"{k} {row[k]['users_words_in']:.0%} words in, {row[k]['rules_kept']:.0%} rules"
                for k in sets
            )
        )
    out["plans"] = {
        theme: list(catalog.plan(bundle.card, bundle.vocab.chars, path, about=theme).theme.plan[:8])
        for theme in TYPED[chinese]
        if theme not in out["forms"][STYLE_FORMS[style][0]]["refused"]
    }
    return out


# --- 3. what it costs --------------------------------------------------------------------------


async def cost(runs: int) -> dict[str, Any]:
    path = live("tang")
    bundle = load_bundle(path)
    model = load_model(path)
    candidates = {
        "without": candidates_for(SETTINGS, bundle.card),
        "with": candidates_for(SETTINGS, bundle.card, about=True),
    }
    scheduler = Scheduler(model, Limits(max_batch=max(*candidates.values(), 8)))
    typed = TYPED[True]
    free = catalog.plan(bundle.card, bundle.vocab.chars, path, form="qilv")
    seconds: dict[str, list[float]] = {"without": [], "with": []}
    fluency: dict[str, list[float]] = {"without": [], "with": []}
    heap = LoopCollector(SETTINGS.gc_seconds)
    try:
        ask = Request(length=free.length, seed=0, rules=free.rules, candidates=candidates["with"])
        await scheduler.generate(ask)
        heap.start()
        for seed in range(1, runs + 1):
            themed = catalog.plan(
                bundle.card, bundle.vocab.chars, path, form="qilv", about=typed[seed % len(typed)]
            )
            for name, plan in (("without", free), ("with", themed)):
                request = Request(
                    length=plan.length, seed=seed, rules=plan.rules, candidates=candidates[name]
                )
                took, logp = await timed(scheduler, model, request)
                seconds[name].append(took)
                fluency[name].append(logp)
    finally:
        await heap.stop()
        await scheduler.close()
    out: dict[str, Any] = {
        name: {
            "p50_s": statistics.median(values),
            "p95_s": percentile(values, 0.95),
            "mean_logp": statistics.fmean(fluency[name]),
        }
        for name, values in seconds.items()
    }
    out["ratio_p50"] = out["with"]["p50_s"] / out["without"]["p50_s"]
    out["runs"] = runs
    out["candidates"] = candidates
    return out


# --- the report --------------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    out = [
        "# Poems about something (`about`)",
        "",
        f"`{report['command']}` on {report['cpu']} (load average "
        f"{', '.join(f'{x:.1f}' for x in report['load_average'])}), "
        "candidates a line: "
        + ", ".join(f"{style} {k}" for style, k in report["candidates"].items())
        + " (each style's own for a poem about a theme).",
        "",
        "## The user's words appear in the poem",
        "",
        f"Per style and form, one poem (seed = its number) about each of {CORPUS_THEMES} themes "
        "drawn from the corpus's commonest words and 20 a user would type. `words in`: poems "
        "holding every word of their theme; `lines`: lines holding a word of the plan; `rules`: "
        "poems keeping every rule of the form (the project's checkers); `bent`: poems where a "
        "user's word bent a tone.",
        "",
        "| style | form | themes | words in | lines | rules | bent | refused | seconds |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for style, got in report["appear"].items():
        for form, row in got["forms"].items():
            for kind in ("corpus", "typed"):
                r = row[kind]
                out.append(
                    f"| {style} | {form} | {kind} ({r['poems']}) | {r['users_words_in']:.0%} | "
                    f"{r['lines_with_keyword']:.0%} | {r['rules_kept']:.0%} | {r['tone_bent']} | "
                    f"{sum(1 for t in row['refused'] if t in got['themes'][kind])} | "
                    f"{row['seconds']:.0f} |"
                )
    refused = {
        (style, theme): why
        for style, got in report["appear"].items()
        for row in got["forms"].values()
        for theme, why in row["refused"].items()
    }
    if refused:
        out += ["", "Refused themes (the style cannot write them):", ""]
        out += [f"- {style}: {theme!r}: {why}" for (style, theme), why in sorted(refused.items())]
    out += ["", "Plans of the typed themes (first 8 words):", ""]
    for style, got in report["appear"].items():
        for theme, plan in got["plans"].items():
            out.append(f"- {style} `{theme}`: {' · '.join(plan)}")
    out += ["", "Examples (the first typed theme's poem per form; no lyrics are reproduced):", ""]
    for style, got in report["appear"].items():
        for form, row in got["forms"].items():
            ex = row["example"]
            if ex["poem"]:
                out += [
                    f"{style} {form}, about {ex['theme']}: {' · '.join(ex['plan'])}",
                    "",
                    "```text",
                    ex["poem"].rstrip(),
                    "```",
                    "",
                ]
    if report.get("cost"):
        c = report["cost"]
        out += [
            "## Cost: a 七律 at concurrency 1",
            "",
            f"{c['runs']} runs each, alternating, themes cycling through the typed ones; "
            f"candidates a line without / with a theme: {c['candidates']['without']} / "
            f"{c['candidates']['with']}; garbage collected as the bot collects it.",
            "",
            "| | p50 s | p95 s | network's mean log-prob per char |",
            "|---|---:|---:|---:|",
            *(
                f"| {name} a theme | {c[name]['p50_s']:.3f} | {c[name]['p95_s']:.3f} | "
                f"{c[name]['mean_logp']:.3f} |"
                for name in ("without", "with")
            ),
            "",
            f"With / without at p50: {c['ratio_p50']:.2f}x.",
            "",
        ]
    out += [
        "## Relatedness: which method the plans use",
        "",
        f"For one word of each validation poem (at most {QUERIES:,}), the method's {TOP} best "
        "related words: `precision` is the share the same validation poem holds, `chance` the "
        "share it would hold by those words' frequency alone, `lift` their ratio. The stored "
        "data is PMI * c / (c + 20) over couplets (Chinese) and speeches (English).",
    ]
    for style, got in report["relatedness"].items():
        judged = {"poem": "poems", "speech": "speeches"}[got["judged_on"]]
        out += ["", f"### {style} (judged on validation {judged})", ""]
        out += ["| trained on | method | precision | chance | lift |", "|---|---|---:|---:|---:|"]
        for unit, row in got["units"].items():
            for name, m in row["methods"].items():
                lift = "—" if m["lift"] is None else f"{m['lift']:.2f}"
                out.append(
                    f"| {unit} ({row['words']:,} words) | {name} | {m['precision']:.3f} | "
                    f"{m['chance']:.3f} | {lift} |"
                )
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--styles", nargs="+", default=list(STYLE_FORMS), choices=tuple(STYLE_FORMS))
    p.add_argument("--runs", type=int, default=20, help="七律 runs each, with and without")
    p.add_argument("--corpora", type=Path, default=DEFAULT_CORPORA)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args()
    report: dict[str, Any] = {
        "command": "python -m benchmarks.about"
        + (f" --styles {' '.join(args.styles)}" if args.styles != list(STYLE_FORMS) else "")
        + (f" --runs {args.runs}" if args.runs != 20 else ""),
        "cpu": cpu_name(),
        "load_average": list(os.getloadavg()),
        "candidates": {
            style: candidates_for(SETTINGS, load_bundle(live(style)).card, about=True)
            for style in args.styles
        },
        "appear": {},
        "relatedness": {},
    }
    if "tang" in args.styles:  # first: timed in a process that holds only what a bot would
        say("tang: a 七律's cost")
        report["cost"] = asyncio.run(cost(args.runs))
    for style in args.styles:
        say(f"{style}: the user's words in the poem")
        report["appear"][style] = appear(style)
    for style in args.styles:
        say(f"{style}: relatedness methods")
        report["relatedness"][style] = relatedness(style, args.corpora)
    report["load_average_after"] = list(os.getloadavg())
    text = markdown(report)
    write_results(args.out, "about", report, text)
    print(text)


if __name__ == "__main__":
    main()
