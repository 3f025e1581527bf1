"""Measure duplicate removal against exact Jaccard similarity on generated near copies.

The corpus is generated from a seed. It contains base documents of random words
and copies of each base edited at controlled rates: each word is replaced,
deleted or followed by an inserted word with probability RATE. It also contains
variants that keep only a prefix of a base and continue with new words, and
documents that share a boilerplate header and footer.

The script runs the pipeline's `FindDuplicates` transform on Beam's in-process
FnApiRunner and compares its clusters with the pairs whose exact Jaccard
similarity of word n-gram sets reaches the threshold.

    PYTHONPATH=. python benchmarks/dedup_quality.py --bases 400

Prints Markdown tables; docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import random
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline.dedup import DuplicateClusters, lsh_parameters, normalize_text, word_shingles
from pipeline.dedup_stage import FindDuplicates
from schemas.config import DedupOptions, ReadOptions

EDIT_RATES = (0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2)
PREFIX_FRACTIONS = (0.6, 0.8, 0.9, 0.95)
VOCABULARY_SIZE = 20_000
VOCABULARY = [f"w{rank}" for rank in range(VOCABULARY_SIZE)]
CUMULATIVE_WEIGHTS = list(itertools.accumulate(1 / (rank + 1) for rank in range(VOCABULARY_SIZE)))


@dataclass
class GeneratedDocument:
    """A generated document and how it was made: its base and the edit applied."""

    text: str
    base: int
    variant: str


def zipf_words(rng: random.Random, count: int) -> list[str]:
    """Draw words with Zipf-like frequencies, so common words repeat as in real text."""
    return rng.choices(VOCABULARY, cum_weights=CUMULATIVE_WEIGHTS, k=count)


def edit_words(words: list[str], rate: float, rng: random.Random) -> list[str]:
    """Replace, delete or follow with a new word each word with probability `rate`."""
    edited = []
    for word in words:
        if rng.random() >= rate:
            edited.append(word)
            continue
        operation = rng.randrange(3)
        if operation == 0:
            edited += zipf_words(rng, 1)
        elif operation == 2:
            edited += [word, *zipf_words(rng, 1)]
    return edited


def generate_corpus(bases: int, words: int, seed: int) -> list[GeneratedDocument]:
    """Generate bases with edited copies and prefix variants, then boilerplate documents."""
    rng = random.Random(seed)
    documents = []
    for base in range(bases):
        original = zipf_words(rng, words)
        documents.append(GeneratedDocument(" ".join(original), base, "base"))
        for rate in EDIT_RATES:
            edited = edit_words(original, rate, rng)
            documents.append(GeneratedDocument(" ".join(edited), base, f"edit {rate:g}"))
        fraction = PREFIX_FRACTIONS[base % len(PREFIX_FRACTIONS)]
        kept = original[: round(words * fraction)]
        variant = kept + zipf_words(rng, words - len(kept))
        documents.append(GeneratedDocument(" ".join(variant), base, f"prefix {fraction:g}"))
    header, footer = zipf_words(rng, 40), zipf_words(rng, 40)
    for index in range(bases // 2):
        text = " ".join(header + zipf_words(rng, words // 2) + footer)
        documents.append(GeneratedDocument(text, bases + index, "boilerplate"))
    rng.shuffle(documents)
    return documents


def exact_similar_pairs(
    documents: list[GeneratedDocument], ngram_size: int, threshold: float
) -> dict[tuple[int, int], float]:
    """Return {(i, j): Jaccard} for every pair with exact Jaccard at least `threshold`.

    Pairs sharing no shingle have similarity 0, so an inverted index over
    shingles finds every pair with a non-zero intersection.
    """
    shingle_sets = [word_shingles(normalize_text(d.text), ngram_size) for d in documents]
    postings: dict[bytes, list[int]] = defaultdict(list)
    for index, shingles in enumerate(shingle_sets):
        for shingle in shingles:
            postings[shingle].append(index)
    intersections: Counter[tuple[int, int]] = Counter()
    for indexes in postings.values():
        intersections.update(itertools.combinations(indexes, 2))
    pairs = {}
    for (i, j), shared in intersections.items():
        similarity = shared / (len(shingle_sets[i]) + len(shingle_sets[j]) - shared)
        if similarity >= threshold:
            pairs[(i, j)] = similarity
    return pairs


def run_find_duplicates(path: Path, options: DedupOptions) -> tuple[dict[int, int], float]:
    """Run `FindDuplicates` on one file; return {removed line: kept line} and seconds taken."""
    bands, rows = lsh_parameters(options) if options.method == "minhash" else (0, 0)
    output = path.parent / f"removed-{options.method}"
    started = time.perf_counter()
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            pipeline
            | beam.Create([str(path)])
            | FindDuplicates(ReadOptions(), options, bands, rows)
            | beam.MapTuple(lambda _, removed: json.dumps([removed[0], removed[1].input_line]))
            | beam.io.WriteToText(str(output), shard_name_template="")
        )
    seconds = time.perf_counter() - started
    lines = output.read_text().splitlines()
    return dict(json.loads(line) for line in lines), seconds


def clusters_from_removed(removed: dict[int, int], count: int) -> list[int]:
    """Return every document's cluster id, the index of its kept document (lines are 1-based)."""
    cluster = list(range(count))
    for line, kept_line in removed.items():
        cluster[line - 1] = kept_line - 1
    return cluster


def true_clusters(pairs: dict[tuple[int, int], float], count: int) -> list[int]:
    clusters = DuplicateClusters()
    for i, j in pairs:
        clusters.union(i, j)
    return [clusters.find(index) for index in range(count)]


def same_cluster_pairs(cluster: list[int]) -> set[tuple[int, int]]:
    members: dict[int, list[int]] = defaultdict(list)
    for index, root in enumerate(cluster):
        members[root].append(index)
    return {pair for group in members.values() for pair in itertools.combinations(group, 2)}


def precision_recall(predicted: set, expected: set) -> tuple[float, float]:
    hits = len(predicted & expected)
    precision = hits / len(predicted) if predicted else 1.0
    recall = hits / len(expected) if expected else 1.0
    return precision, recall


def variant_rows(
    documents: list[GeneratedDocument], predicted: set, options: DedupOptions
) -> list[str]:
    """Format one table row per variant, counting (variant, base) pairs above and below."""
    bases = {d.base: i for i, d in enumerate(documents) if d.variant == "base"}
    shingles = [word_shingles(normalize_text(d.text), options.ngram_size) for d in documents]
    stats: dict[str, Counter] = defaultdict(Counter)
    similarity_sum: Counter[str] = Counter()
    for index, document in enumerate(documents):
        if document.variant in ("base", "boilerplate"):
            continue
        pair = tuple(sorted((index, bases[document.base])))
        first, second = shingles[pair[0]], shingles[pair[1]]
        similarity = len(first & second) / len(first | second)
        side = "above" if similarity >= options.threshold else "below"
        stats[document.variant][f"{side}_pairs"] += 1
        stats[document.variant][f"{side}_found"] += pair in predicted
        similarity_sum[document.variant] += similarity
    rows = []
    for variant in sorted(stats, key=_variant_order):
        counts = stats[variant]
        total = counts["above_pairs"] + counts["below_pairs"]
        rows.append(
            f"| {variant} | {similarity_sum[variant] / total:.3f} | "
            f"{counts['above_pairs']} | {_ratio(counts['above_found'], counts['above_pairs'])} | "
            f"{counts['below_pairs']} | {_ratio(counts['below_found'], counts['below_pairs'])} |"
        )
    return rows


def _variant_order(variant: str) -> tuple[str, float]:
    kind, value = variant.split()
    return kind, float(value)


def _ratio(found: int, total: int) -> str:
    return f"{found / total:.3f}" if total else "-"


def report(documents, pairs, removed, seconds, options, title) -> None:
    count = len(documents)
    predicted_cluster = clusters_from_removed(removed, count)
    predicted = same_cluster_pairs(predicted_cluster)
    precision, recall = precision_recall(predicted, set(pairs))
    expected_clusters = true_clusters(pairs, count)
    cluster_precision, cluster_recall = precision_recall(
        predicted, same_cluster_pairs(expected_clusters)
    )
    ideal_removed = count - len(set(expected_clusters))
    print(f"\n### {title}\n")
    print("| measure | value |\n| --- | --- |")
    print(f"| documents | {count} |")
    print(f"| pairs with exact Jaccard >= {options.threshold} | {len(pairs)} |")
    print(f"| pair precision / recall | {precision:.4f} / {recall:.4f} |")
    print(f"| pair precision / recall, against clusters | {cluster_precision:.4f} / "
          f"{cluster_recall:.4f} |")  # fmt: skip
    print(f"| documents removed (one kept per exact-Jaccard cluster) | {len(removed)} "
          f"({ideal_removed}) |")  # fmt: skip
    print(f"| FindDuplicates wall time | {seconds:.1f} s ({count / seconds:.0f} documents/s) |")
    if options.method == "minhash":
        print("\n| variant | mean Jaccard to base | pairs >= threshold | same cluster | "
              "pairs < threshold | same cluster |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- |")
        print("\n".join(variant_rows(documents, predicted, options)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bases", type=int, default=400, help="number of base documents")
    parser.add_argument("--words", type=int, default=200, help="number of words per base document")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated corpus")
    parser.add_argument("--threshold", type=float, default=DedupOptions.threshold)
    parser.add_argument("--num-perm", type=int, default=DedupOptions.num_perm)
    parser.add_argument("--ngram", type=int, default=DedupOptions.ngram_size)
    args = parser.parse_args()

    documents = generate_corpus(args.bases, args.words, args.seed)
    pairs = exact_similar_pairs(documents, args.ngram, args.threshold)
    minhash = DedupOptions(
        method="minhash", threshold=args.threshold, num_perm=args.num_perm, ngram_size=args.ngram
    )
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, corpus seed {args.seed}, "
          f"LSH bands x rows {lsh_parameters(minhash)}")  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "corpus.jsonl"
        lines = [json.dumps({"id": f"d{i:06d}", "text": d.text}) for i, d in enumerate(documents)]
        path.write_text("\n".join(lines) + "\n")
        for options in (minhash, DedupOptions(method="exact")):
            removed, seconds = run_find_duplicates(path, options)
            report(documents, pairs, removed, seconds, options, f"--dedup {options.method}")


if __name__ == "__main__":
    main()
