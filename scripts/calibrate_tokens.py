"""Fit and measure batchrun's token-count heuristic (batchrun/tokens.py) against exact counts.

Needs two packages that batchrun itself does not: ``toktok-rs`` (exact tiktoken-identical BPE
counts with the vocabularies compiled in, nothing downloaded) and ``numpy`` (the fit):

    pip install toktok-rs numpy        # or: pip install --target /tmp/calib ... and PYTHONPATH
    python scripts/calibrate_tokens.py             # fit on half the corpus, measure on the other
    python scripts/calibrate_tokens.py --measure   # measure the weights now in tokens.py only

The corpus is built from text already on a Debian/Ubuntu machine with Python, so anyone can
rerun it offline: English prose (docstrings of the standard library), Python code (its
sources), JSON records, and UI text in 30 languages (the gettext catalogs under
/usr/share/locale). Texts are split into train and test halves by source file, so the measured
error is on text the fit did not see.
"""

from __future__ import annotations

import argparse
import ast
import gettext
import hashlib
import json
import random
import sys
import sysconfig
from collections import defaultdict
from pathlib import Path

import numpy as np
import toktok

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from batchrun.tokens import CL100K, FEATURES, O200K, WEIGHTS, features

LANGUAGES = ("de", "fr", "es", "it", "pt_BR", "nl", "sv", "pl", "cs", "tr", "vi", "id", "fi", "hu", "ro",
             "ru", "uk", "bg", "sr", "el", "ja", "zh_CN", "zh_TW", "ko", "ar", "he", "hi", "th", "ka", "fa")
PER_CATEGORY = 2000


def chunks(pieces: list[str], rng: random.Random, lo: int, hi: int, sep: str) -> list[str]:
    """Join consecutive pieces into texts of a random target length in [lo, hi] characters."""
    out, current, target = [], [], rng.randint(lo, hi)
    for piece in pieces:
        current.append(piece)
        if sum(map(len, current)) >= target:
            out.append(sep.join(current))
            current, target = [], rng.randint(lo, hi)
    if current:
        out.append(sep.join(current))
    return out


def stdlib_files() -> list[Path]:
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py"))


def english_and_code(rng: random.Random) -> list[tuple[str, str, str]]:
    samples = []
    for path in stdlib_files():
        source = path.read_text("utf-8", errors="replace")
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        docs = [d for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                and (d := ast.get_docstring(node))]
        samples += [("english", path.name, text) for text in chunks(docs, rng, 40, 3000, "\n\n")]
        lines = source.splitlines(keepends=True)
        samples += [("code", path.name, text) for text in chunks(lines, rng, 100, 4000, "")]
    return samples


def catalogs(rng: random.Random) -> list[tuple[str, str, str]]:
    samples = []
    for lang in LANGUAGES:
        for path in sorted(Path("/usr/share/locale", lang, "LC_MESSAGES").glob("*.mo")):
            try:
                catalog = gettext.GNUTranslations(path.open("rb"))._catalog  # type: ignore[attr-defined]
            except Exception:
                continue
            pairs = [(k, v) for k, v in catalog.items() if isinstance(k, str) and k and isinstance(v, str)]
            if len(pairs) < 5:
                continue
            source = f"{lang}/{path.name}"
            translated = [v.strip() for _, v in pairs if v.strip()]
            samples += [(f"lang:{lang}", source, t) for t in chunks(translated, rng, 20, 3000, "\n")]
            if lang == "de":  # the English originals once, as English UI text
                originals = [k.strip() for k, _ in pairs if k.strip()]
                samples += [("english-ui", source, t) for t in chunks(originals, rng, 20, 3000, "\n")]
            records = [{"id": i, "key": k[:80], "text": v, "lang": lang, "len": len(v), "ok": i % 3 == 0,
                        "score": round(rng.random(), 4)} for i, (k, v) in enumerate(pairs[:400])]
            for start in range(0, len(records), 10):
                group = records[start:start + rng.randint(1, 10)]
                text = json.dumps(group, ensure_ascii=False, indent=2 if start % 20 else None)
                samples.append(("json", source, text))
    return samples


def build_corpus(seed: int) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    samples = english_and_code(rng) + catalogs(rng)
    by_category: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for sample in samples:
        by_category[sample[0].split(":")[0] if not sample[0].startswith("lang:") else "languages"].append(sample)
    corpus = []
    for group in by_category.values():
        rng.shuffle(group)
        corpus += group[: PER_CATEGORY * (4 if group[0][0].startswith("lang:") else 1)]
    return corpus


def _group(category: str) -> str:
    """Fit groups: English prose, English UI text, code, JSON, and all 30 languages together."""
    return category.split(":")[0]


def is_test(source: str) -> bool:
    return hashlib.blake2b(source.encode(), digest_size=1).digest()[0] % 2 == 1


def fit(x: np.ndarray, y: np.ndarray, groups: list[str]) -> np.ndarray:
    """Least squares on relative error, each group weighing the same, no negative weights."""
    active = np.ones(x.shape[1], dtype=bool)
    sizes = {g: groups.count(g) for g in set(groups)}
    scale = np.array([1.0 / (size ** 0.5) for size in (sizes[g] for g in groups)]) / y
    while True:
        weights = np.zeros(x.shape[1])
        solution, *_ = np.linalg.lstsq(x[:, active] * scale[:, None], y * scale, rcond=None)
        weights[active] = solution
        if (weights >= 0).all():
            return weights
        active &= weights > 0


def measure(name: str, predicted: np.ndarray, y: np.ndarray, categories: list[str]) -> None:
    print(f"\n{name}")
    print(f"{'category':<14}{'texts':>7}{'tokens':>10}{'sum err':>9}{'median':>8}{'p90':>8}{'p99':>8}")
    cats = np.array(categories)
    groups = ["all", *sorted(set(c.split(":")[0] for c in categories))]
    for group in groups + sorted(set(c for c in categories if c.startswith("lang:"))):
        mask = np.ones(len(y), bool) if group == "all" else (
            cats == group if group.startswith("lang:") else np.char.startswith(cats.astype(str), group))
        if not mask.any():
            continue
        rel = np.abs(predicted[mask] - y[mask]) / y[mask]
        total = predicted[mask].sum() / y[mask].sum() - 1
        print(f"{group:<14}{mask.sum():>7}{int(y[mask].sum()):>10}{total:>+9.1%}"
              f"{np.median(rel):>8.1%}{np.percentile(rel, 90):>8.1%}{np.percentile(rel, 99):>8.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--measure", action="store_true", help="only measure the weights in tokens.py")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    corpus = [s for s in build_corpus(args.seed) if s[2].strip()]
    texts = [text for _, _, text in corpus]
    x = np.array([features(text) for text in texts])
    assert x.shape[1] == FEATURES
    test = np.array([is_test(source) for _, source, _ in corpus])
    categories = [c for c, _, _ in corpus]
    print(f"corpus: {len(texts):,} texts, {sum(map(len, texts)):,} characters; test half: {int(test.sum()):,} texts")
    for encoding in (O200K, CL100K):
        y = np.array(toktok.batch_count(texts, encoding), dtype=float)
        keep = y > 0
        train = keep & ~test
        groups = [_group(c) for c, t in zip(categories, train, strict=False) if t]
        weights = np.array(WEIGHTS[encoding]) if args.measure else fit(x[train], y[train], groups)
        if not args.measure:
            print(f"\n{encoding} weights:\n    " + ", ".join(f"{w:.4f}" for w in weights))
        mask = keep & test
        chars = np.array([len(t) for t in texts], dtype=float)
        cats = [c for c, m in zip(categories, mask, strict=False) if m]
        measure(f"{encoding}: heuristic on the test half", np.maximum(1, np.round(x[mask] @ weights)), y[mask], cats)
        measure(f"{encoding}: chars/4 on the test half (for comparison)", np.maximum(1, chars[mask] / 4), y[mask], cats)


if __name__ == "__main__":
    main()
