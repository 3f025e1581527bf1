"""Measure the PII scorer against one Presidio analyze call per sentence.

Both sides use the scorer's own Presidio engine, so the recognizers, minimum scores and
merging of overlapping results are the same:

- per sentence: ``PresidioPiiScorer.score_segments``, one ``AnalyzerEngine.analyze`` call
  per sentence, the way a plain Presidio loop runs;
- ours: ``PresidioPiiScorer.score_documents``, as the pipeline calls it, which analyzes
  each document's sentences joined into one text (in chunks of at most 100,000 characters)
  and counts each finding for the sentence where it starts.

The script reports both rates and every sentence whose finding count differs. The
sentences are the non-blank prose segments of data/sample.jsonl, cut by the pipeline's
segmenter: the English prose documents and then all prose documents.

    PYTHONPATH=. python benchmarks/pii.py [--toxicity-json toxicity.json]

With ``--toxicity-json`` (the output of benchmarks/toxicity.py), it also states PII's time
on the English prose as a share of the toxicity scorer's fp32 time on the same sentences.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from benchmarks.harness import (
    ENGLISH_PROSE,
    best_of,
    document_segments,
    machine_description,
    markdown_table,
    read_documents,
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--toxicity-json", help="JSON report written by benchmarks/toxicity.py")
    args = parser.parse_args(argv)

    from scorers.pii import PresidioPiiScorer

    scorer = PresidioPiiScorer()
    scorer.setup()
    documents = read_documents()
    corpora = {
        "English prose": [d for d in documents if d.id.split("-", 1)[0] in ENGLISH_PROSE],
        "all prose": documents,
    }

    print(f"Machine: {machine_description()}")
    print()
    rows = []
    results = {}
    for name, corpus in corpora.items():
        segments = [
            [s for s in segs if s.strip()] for _, segs in document_segments(corpus, "prose")
        ]
        results[name] = measure(scorer, segments, args.repeat)
        rows.append(_row(name, results[name]))
    headers = [
        "sentences",
        "count",
        "per sentence, s",
        "sentences/s",
        "ours, s",
        "sentences/s",
        "speed-up",
        "sentences with other counts",
    ]
    print(markdown_table(headers, rows))
    print(f"\nMachine at the end: {machine_description()}")
    if args.toxicity_json:
        _print_share(results["English prose"], args.toxicity_json)


def measure(scorer, documents: list[list[str]], repeat: int) -> dict:
    """Time both ways of scoring ``documents`` and compare their finding counts."""
    flat = [segment for segments in documents for segment in segments]
    per_sentence, _ = best_of(lambda: scorer.score_segments(flat), repeat)
    ours, _ = best_of(lambda: scorer.score_documents(documents), repeat)
    ours_flat = [score for scores in ours.result for score in scores]
    counts = [
        (round(a * len(s)), round(b * len(s)))
        for a, b, s in zip(per_sentence.result, ours_flat, flat, strict=True)
    ]
    differing = [(segment, a, b) for (a, b), segment in zip(counts, flat, strict=True) if a != b]
    return {
        "sentences": len(flat),
        "findings": sum(b for _, b in counts),
        "per_sentence_seconds": per_sentence.seconds,
        "ours_seconds": ours.seconds,
        "differing": differing,
    }


def _row(name: str, result: dict) -> list[str]:
    count = result["sentences"]
    return [
        name,
        str(count),
        f"{result['per_sentence_seconds']:.2f}",
        f"{count / result['per_sentence_seconds']:.0f}",
        f"{result['ours_seconds']:.2f}",
        f"{count / result['ours_seconds']:.0f}",
        f"{result['per_sentence_seconds'] / result['ours_seconds']:.1f}x",
        ", ".join(f"{s[:40]!r}: {a} vs {b}" for s, a, b in result["differing"]) or "none",
    ]


def _print_share(result: dict, toxicity_json: str) -> None:
    with open(toxicity_json, encoding="utf-8") as file:
        toxicity = json.load(file)
    if toxicity["corpus"]["sentences"] != result["sentences"]:
        raise SystemExit(
            f"{toxicity_json} measured {toxicity['corpus']['sentences']} sentences, "
            f"not the {result['sentences']} English prose sentences measured here; "
            "run benchmarks/toxicity.py without --all-prose"
        )
    share = result["ours_seconds"] / toxicity["ours"]["seconds"]
    print(
        f"\nPII (ours) took {result['ours_seconds']:.2f} s, "
        f"{share:.1%} of the toxicity scorer's {toxicity['ours']['seconds']:.1f} s (fp32) "
        "on the same sentences."
    )


if __name__ == "__main__":
    main()
