"""Measure the Detoxify scorer against Detoxify's own predict and the fp32 matmul peak.

All measurements run in one process, on the same sentences, device and torch threads:

1. fp32 matrix-multiply peak: the best rate of ``A @ B`` on 2048 x 2048 float32 matrices,
   before and after the other steps.
2. Our scorer (``DetoxifyToxicityScorer.score_segments`` on all sentences at once), in fp32,
   and the same scorer with ``packed`` off, which runs the model's own forward on padded
   batches.
3. The reference approach: ``Detoxify.predict`` on consecutive batches of 512 sentences in
   input order, each padded to its longest sentence. It runs under ``torch.inference_mode``,
   because ``predict`` itself keeps the autograd graph. By an estimate from the activation
   sizes, the saved activations of a batch of 512 rows of 512 tokens need over 100 GB.
4. Our scorer with ``precision`` ``bf16`` and ``int8`` (int8 only on the CPU, with onnx
   and onnxruntime installed), compared with step 2, then the refinement pass a run in that
   precision adds (`pipeline.refine.refine_scores`, with the scorer's default margin): the
   sentences near the 5th-percentile threshold scored again by the fp32 scorer of step 2.

It also prints how many padded tokens four ways of batching would run, as tables.

The model is a full-size BERT-base checkpoint in Detoxify's format with random weights,
written by ``scorers.testing.write_detoxify_checkpoint``: only cost is measured. The
sentences are the non-blank prose segments of data/sample.jsonl, cut by the pipeline's
segmenter. By default only the English prose documents are used.

The effective rate counts 2 x non-embedding parameters x real (unpadded) tokens of the
distinct sentences, the work that cannot be avoided, and divides by wall time.

    PYTHONPATH=. python benchmarks/toxicity.py --threads 2 --checkpoint-dir /tmp/detoxify-base

Prints Markdown; ``--json FILE`` also writes the numbers. docs/benchmarks.md records a run.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    ENGLISH_PROSE,
    LICENCE_TEXT,
    best_of,
    detoxify_checkpoint,
    machine_description,
    markdown_table,
    sample_segments,
    timed,
)

REFERENCE_BATCH_SIZE = 512
# Rows per batch when sentences are sorted by characters: the scorer's batch size before it
# planned batches by tokens.
CHARACTER_BATCH_SIZE = 64
MATMUL_SIZE = 2048
# Percentile P of the default threshold rule: segments at or below it are labelled good.
LABEL_PERCENTILE = 5.0
# Sentences not in the sample, so that warm-up leaves no cached score behind.
WARM_UP = [f"Warm-up sentence number {i} for the kernels." for i in range(32)]


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    checkpoint, hf_dir = detoxify_checkpoint(args.checkpoint_dir)
    prefixes = None if args.all_prose else ENGLISH_PROSE
    sentences = sample_segments("prose", prefixes)
    report: dict[str, Any] = {
        "machine": machine_description(),
        "threads": args.threads,
        "device": args.device,
    }

    exact = _load_scorer(checkpoint, hf_dir, args, "fp32")
    report["padding"] = {
        "sample prose": padding_table(exact, sentences),
        "licence text": padding_table(exact, sample_segments("prose", LICENCE_TEXT)),
    }
    if args.padding_only:
        print("\n".join(_padding_lines(report["padding"])))
        return

    peak_before = matmul_peak(args.threads, args.device)
    report["corpus"] = _token_counts(exact, sentences)
    report["ours"] = _time_scorer(exact, sentences, args.repeat)
    exact_scores = report["ours"].pop("scores")
    report["exact_scores"] = exact_scores
    if not args.skip_padded:
        padded = _load_scorer(checkpoint, hf_dir, args, "fp32", packed=False)
        report["ours_padded"] = _time_scorer(padded, sentences, args.repeat)
        padded_scores = report["ours_padded"].pop("scores")
        report["ours_padded"]["max_abs_difference"] = max(
            abs(a - b) for a, b in zip(padded_scores, exact_scores, strict=True)
        )
        del padded

    if not args.skip_reference:
        report["reference"] = _time_reference(
            checkpoint, hf_dir, args.device, sentences, exact_scores
        )
    report["reduced_precision"] = [
        _time_reduced(checkpoint, hf_dir, args, precision, sentences, exact, exact_scores)
        for precision in args.precisions
    ]
    peak_after = matmul_peak(args.threads, args.device)
    report["peak"] = {key: max(peak_before[key], peak_after[key]) for key in ("flops", "cpu_flops")}
    report["peak_runs"] = [peak_before, peak_after]
    report["machine_after"] = machine_description()
    _add_rates(report, exact)

    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--device", default="cpu", help="torch device of the model and the peak (cpu, cuda)"
    )
    parser.add_argument(
        "--checkpoint-dir",
        help="directory of a base checkpoint from scorers.testing; written there if missing "
        "(438 MB), or in a temporary directory when not given",
    )
    parser.add_argument("--batch-size", type=int, default=None, help="scorer batch_size")
    parser.add_argument("--max-tokens", type=int, default=None, help="scorer max_tokens")
    parser.add_argument("--batch-cost", type=int, default=None, help="scorer batch_cost")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of our scorer")
    parser.add_argument(
        "--precisions",
        default="bf16,int8",
        type=lambda value: [p for p in value.split(",") if p],
        help="reduced precisions to compare with fp32, comma-separated; empty for none",
    )
    parser.add_argument("--skip-reference", action="store_true", help="skip Detoxify.predict")
    parser.add_argument(
        "--skip-padded", action="store_true", help="skip our scorer with packed off"
    )
    parser.add_argument(
        "--padding-only", action="store_true", help="print only the padding tables, without timing"
    )
    parser.add_argument(
        "--all-prose",
        action="store_true",
        help="use every prose document of the sample, not only the English ones "
        "(about 8 times as many sentences)",
    )
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    return parser.parse_args(argv)


def matmul_peak(
    threads: int, device: str = "cpu", size: int = MATMUL_SIZE, rounds: int = 5
) -> dict[str, float]:
    """Return the best float32 matrix-multiply rates of ``rounds`` rounds, in FLOP/s.

    ``flops`` divides by wall time. ``cpu_flops`` divides by process CPU time per thread,
    which other processes on the machine disturb less; it means nothing on a GPU.
    """
    import torch

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(device)
    b = torch.randn(size, size, generator=generator).to(device)
    calls = 4 if device == "cpu" else 100

    def multiply() -> None:
        for _ in range(calls):
            a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    multiply()  # The first calls allocate and pick kernels.
    work = calls * 2 * size**3
    rates = {"flops": 0.0, "cpu_flops": 0.0}
    for _ in range(rounds):
        timing = timed(multiply)
        rates["flops"] = max(rates["flops"], work / timing.seconds)
        rates["cpu_flops"] = max(rates["cpu_flops"], work * threads / timing.cpu_seconds)
    return rates


def _scorer_options(args: argparse.Namespace, precision: str, packed: bool) -> dict[str, Any]:
    from scorers.toxicity import DetoxifyToxicityScorer

    options: dict[str, Any] = {"device": args.device, "threads": args.threads}
    if not packed:
        options["packed"] = False
    if precision != "fp32":
        options["precision"] = precision
    if args.batch_size is not None:
        options["batch_size"] = args.batch_size
    if args.max_tokens is not None:
        options["max_tokens"] = args.max_tokens
    if args.batch_cost is not None:
        options["batch_cost"] = args.batch_cost
    # A score cache across calls would make every timed run after the first free.
    if "cache_size" in DetoxifyToxicityScorer.option_names():
        options["cache_size"] = 0
    return options


def _load_scorer(
    checkpoint: Path, hf_dir: Path, args: argparse.Namespace, precision: str, packed: bool = True
):
    from scorers.toxicity import DetoxifyToxicityScorer

    options = _scorer_options(args, precision, packed)
    scorer = DetoxifyToxicityScorer(checkpoint=str(checkpoint), hf_dir=str(hf_dir), **options)
    scorer.setup()
    scorer.score_segments(WARM_UP)
    return scorer


def _token_counts(scorer, sentences: list[str]) -> dict[str, int]:
    distinct = list(dict.fromkeys(sentences))
    lengths = dict(zip(distinct, token_lengths(scorer, distinct), strict=True))
    return {
        "sentences": len(sentences),
        "distinct_sentences": len(distinct),
        "tokens": sum(lengths[s] for s in sentences),
        "distinct_tokens": sum(lengths.values()),
        "max_tokens": max(lengths.values()),
    }


def token_lengths(scorer, texts: Sequence[str]) -> list[int]:
    """Return each text's token count, [CLS] and [SEP] included, truncated to 512."""
    encoded = scorer.detoxify.tokenizer(list(texts), truncation=True, max_length=512)
    return [len(ids) for ids in encoded["input_ids"]]


def _time_scorer(scorer, sentences: list[str], repeat: int) -> dict[str, Any]:
    best, runs = best_of(lambda: scorer.score_segments(sentences), repeat)
    return {
        "seconds": best.seconds,
        "cpu_seconds": best.cpu_seconds,
        "runs": runs,
        "scores": best.result,
    }


def _time_reference(checkpoint, hf_dir, device, sentences, exact_scores) -> dict[str, Any]:
    import torch

    detoxify = load_reference(checkpoint, hf_dir, device)
    with torch.inference_mode():
        detoxify.predict(WARM_UP)
    timing = timed(lambda: reference_scores(detoxify, sentences))
    differences = [abs(a - b) for a, b in zip(timing.result, exact_scores, strict=True)]
    return {
        "seconds": timing.seconds,
        "cpu_seconds": timing.cpu_seconds,
        "max_abs_difference": max(differences),
    }


def load_reference(checkpoint: Path, hf_dir: Path, device: str = "cpu"):
    """Load stock ``Detoxify`` from a copy of the checkpoint whose model_type is ``hf_dir``."""
    import torch
    from detoxify import Detoxify

    loaded = torch.load(checkpoint, weights_only=True)
    loaded["config"]["arch"]["args"]["model_type"] = str(hf_dir)
    local = Path(tempfile.mkdtemp(prefix="detoxify-reference-")) / "local.ckpt"
    torch.save(loaded, local)
    detoxify = Detoxify(checkpoint=str(local), huggingface_config_path=str(hf_dir), device=device)
    local.unlink()
    return detoxify


def reference_scores(detoxify, sentences: Sequence[str]) -> list[float]:
    """Score with ``Detoxify.predict`` on batches of 512 sentences in input order."""
    import torch

    scores: list[float] = []
    with torch.inference_mode():
        for start in range(0, len(sentences), REFERENCE_BATCH_SIZE):
            batch = list(sentences[start : start + REFERENCE_BATCH_SIZE])
            result = detoxify.predict(batch)["toxicity"]
            scores.extend(result if isinstance(result, list) else [result])
    return scores


def padding_table(scorer, sentences: list[str]) -> list[dict]:
    """Return the real and padded tokens of four ways to batch the sentences."""
    from scorers.toxicity import plan_batches

    distinct = list(dict.fromkeys(sentences))
    lengths = token_lengths(scorer, distinct)
    batch_size, max_tokens, batch_cost = scorer.batch_size, scorer.max_tokens, scorer.batch_cost
    by_characters = sorted(range(len(distinct)), key=lambda i: -len(distinct[i]))
    input_order = list(range(len(sentences)))
    all_lengths = token_lengths(scorer, sentences)
    plans = {
        f"input order, {REFERENCE_BATCH_SIZE} per batch (reference)": (
            all_lengths,
            _chunks(input_order, REFERENCE_BATCH_SIZE),
        ),
        f"sorted by characters, {CHARACTER_BATCH_SIZE} per batch": (
            lengths,
            _chunks(by_characters, CHARACTER_BATCH_SIZE),
        ),
        f"sorted by tokens, filled to {CHARACTER_BATCH_SIZE} rows and {max_tokens} tokens": (
            lengths,
            greedy_batches(lengths, CHARACTER_BATCH_SIZE, max_tokens),
        ),
        f"planned by tokens, at most {batch_size} rows and {max_tokens} tokens (ours)": (
            lengths,
            plan_batches(lengths, batch_size, max_tokens, batch_cost),
        ),
    }
    rows = []
    for name, (row_lengths, batches) in plans.items():
        real = sum(row_lengths[i] for batch in batches for i in batch)
        padded = sum(len(batch) * max(row_lengths[i] for i in batch) for batch in batches)
        rows.append({"batching": name, "batches": len(batches), "real": real, "padded": padded})
    return rows


def greedy_batches(lengths: Sequence[int], batch_size: int, max_tokens: int) -> list[list[int]]:
    """Fill batches longest row first, each until a limit is reached (the former plan)."""
    batches: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        current = batches[-1] if batches else []
        if current and len(current) < batch_size:
            if (len(current) + 1) * lengths[current[0]] <= max_tokens:
                current.append(i)
                continue
        batches.append([i])
    return batches


def _chunks(indices: list[int], size: int) -> list[list[int]]:
    return [indices[start : start + size] for start in range(0, len(indices), size)]


def _time_reduced(checkpoint, hf_dir, args, precision, sentences, exact, exact_scores) -> dict:
    from scorers.base import MissingDependencyError, ScorerConfigError

    try:
        scorer = _load_scorer(checkpoint, hf_dir, args, precision)
    except (MissingDependencyError, ScorerConfigError) as error:
        return {"precision": precision, "skipped": str(error)}
    result = _time_scorer(scorer, sentences, args.repeat)
    scores = result.pop("scores")
    differences = [abs(a - b) for a, b in zip(scores, exact_scores, strict=True)]
    result.update(
        precision=precision,
        max_abs_difference=max(differences),
        labels_unchanged_fixed=label_agreement(exact_scores, scores, own_threshold=False),
        labels_unchanged_own=label_agreement(exact_scores, scores, own_threshold=True),
        refined=_time_refinement(scorer, exact, sentences, scores, exact_scores, args.repeat),
    )
    return result


def _time_refinement(scorer, exact, sentences, scores, exact_scores, repeat) -> dict:
    """Time the refinement pass of a run in the scorer's precision, and check its labels.

    The refinement's fp32 scorer has the options of `exact`, which is used in its place
    rather than loaded a second time.
    """
    from pipeline.refine import near_threshold, refine_scores, refinement_summary
    from scorers.base import Refinement

    refinement = Refinement(exact, scorer.refinement().margin)
    threshold = percentile_threshold(scores, LABEL_PERCENTILE)
    best, runs = best_of(lambda: refine_scores(scores, sentences, threshold, refinement), repeat)
    refined, stats = best.result
    plan = {"toxicity": {"threshold": threshold, "margin": refinement.margin}}
    final = {"toxicity": percentile_threshold(refined, LABEL_PERCENTILE)}
    check = refinement_summary(plan, {"toxicity": stats}, final, {})["toxicity"]
    near = {
        sentence
        for sentence, score in zip(sentences, scores, strict=True)
        if near_threshold(score, threshold, refinement.margin)
    }
    return {
        "seconds": best.seconds,
        "cpu_seconds": best.cpu_seconds,
        "runs": runs,
        "segments": stats.segments,
        "distinct_segments": len(near),
        "tokens": sum(token_lengths(exact, sorted(near))) if near else 0,
        "labels_unchanged": label_agreement(exact_scores, refined, own_threshold=True),
        **{key: check[key] for key in ("margin", "max_change", "threshold_move", "margin_held")},
    }


def percentile_threshold(scores: Sequence[float], percentile: float) -> float:
    """Return the score of rank ceil(P/100 * n) in ascending order (the nearest-rank method)."""
    ordered = sorted(scores)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1]


def label_agreement(
    exact: Sequence[float], other: Sequence[float], own_threshold: bool
) -> tuple[int, int]:
    """Return (labels unchanged, labels) at the 5th-percentile threshold.

    With ``own_threshold``, the other scores get the threshold of their own distribution,
    as a run in that precision would. Otherwise both use the exact scores' threshold.
    """
    threshold = percentile_threshold(exact, LABEL_PERCENTILE)
    other_threshold = percentile_threshold(other, LABEL_PERCENTILE) if own_threshold else threshold
    same = sum(
        (a <= threshold) == (b <= other_threshold) for a, b in zip(exact, other, strict=True)
    )
    return same, len(exact)


def non_embedding_parameters(model) -> int:
    """Count the parameters outside the embedding layer, whose rows are read, not multiplied."""
    return sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in name)


def _add_rates(report: dict[str, Any], scorer) -> None:
    parameters = non_embedding_parameters(scorer.detoxify.model)
    report["non_embedding_parameters"] = parameters
    work = 2 * parameters * report["corpus"]["distinct_tokens"]
    report["work_flop"] = work
    entries = [report["ours"], report.get("ours_padded"), report.get("reference")]
    for entry in [*entries, *report["reduced_precision"]]:
        if entry and "seconds" in entry:
            entry["effective_flops"] = work / entry["seconds"]
            entry["cpu_effective_flops"] = work * report["threads"] / entry["cpu_seconds"]
            entry["sentences_per_second"] = report["corpus"]["sentences"] / entry["seconds"]


def format_report(report: dict[str, Any]) -> str:
    """Format the report as Markdown."""
    corpus = report["corpus"]
    peak = report["peak"]
    lines = [
        f"Machine: {report['machine']} (at the end: load average "
        f"{report['machine_after'].rsplit('load average ', 1)[1]}); torch threads: "
        f"{report['threads']}; device: {report['device']}",
        f"Sentences: {corpus['sentences']} ({corpus['distinct_sentences']} distinct), "
        f"{corpus['tokens']} tokens ({corpus['distinct_tokens']} in distinct sentences, "
        f"longest {corpus['max_tokens']})",
        f"fp32 matmul peak: {peak['flops'] / 1e9:.1f} GFLOP/s of wall time, "
        f"{peak['cpu_flops'] / 1e9:.1f} GFLOP/s of CPU time per thread (before and after: "
        + ", ".join(f"{p['flops'] / 1e9:.1f}" for p in report["peak_runs"])
        + f"); non-embedding parameters: {report['non_embedding_parameters']:,}",
        "",
    ]
    rows = [_speed_row("ours, fp32", report["ours"], peak)]
    if "ours_padded" in report:
        rows.append(_speed_row("ours, fp32, packed off", report["ours_padded"], peak))
    if "reference" in report:
        rows.append(_speed_row("reference: predict, 512 per batch", report["reference"], peak))
    for entry in report["reduced_precision"]:
        if "skipped" not in entry:
            rows.append(_speed_row(f"ours, {entry['precision']}", entry, peak))
    headers = [
        "scorer",
        "seconds",
        "CPU seconds",
        "sentences/s",
        "GFLOP/s",
        "of peak",
        "of peak, CPU time",
    ]
    lines.append(markdown_table(headers, rows))
    lines += ["", _comparison(report), ""]
    lines += _padding_lines(report["padding"])
    lines += _reduced_lines(report)
    lines += ["", _threshold_line(report["exact_scores"])]
    return "\n".join(lines)


def _threshold_line(scores: Sequence[float]) -> str:
    """Describe how close the distinct fp32 scores lie to the label threshold."""
    threshold = percentile_threshold(scores, LABEL_PERCENTILE)
    gaps = sorted({abs(score - threshold) for score in set(scores)})
    tied = sum(1 for score in scores if score == threshold)
    nearest = ", ".join(f"{gap:.2g}" for gap in gaps[1:4])
    return (
        f"fp32 threshold {threshold:.6g}: {tied} of the sentences score exactly that, and "
        f"the nearest other scores lie {nearest} away."
    )


def _speed_row(name: str, entry: dict[str, Any], peak: dict[str, float]) -> list[str]:
    return [
        name,
        f"{entry['seconds']:.1f}",
        f"{entry['cpu_seconds']:.1f}",
        f"{entry['sentences_per_second']:.2f}",
        f"{entry['effective_flops'] / 1e9:.1f}",
        f"{entry['effective_flops'] / peak['flops']:.0%}",
        f"{entry['cpu_effective_flops'] / peak['cpu_flops']:.0%}",
    ]


def _comparison(report: dict[str, Any]) -> str:
    ours = report["ours"]
    runs = ", ".join(f"{seconds:.1f}" for seconds in ours["runs"])
    text = f"Our fp32 runs took {runs} s."
    if "reference" in report:
        reference = report["reference"]
        text += (
            f" Speed-up over the reference: {reference['seconds'] / ours['seconds']:.1f}x "
            f"({reference['cpu_seconds'] / ours['cpu_seconds']:.1f}x in CPU time); "
            f"maximum score difference {reference['max_abs_difference']:.2g}."
        )
    if "ours_padded" in report:
        padded = report["ours_padded"]
        text += (
            f" With packed off: {padded['seconds'] / ours['seconds']:.2f}x slower, "
            f"maximum score difference {padded['max_abs_difference']:.2g}."
        )
    return text


def _padding_lines(padding: dict[str, list[dict]]) -> list[str]:
    lines = []
    for corpus, rows in padding.items():
        table_rows = [
            [
                row["batching"],
                row["batches"],
                row["real"],
                row["padded"],
                f"{1 - row['real'] / row['padded']:.0%}",
            ]
            for row in rows
        ]
        headers = ["batching", "batches", "real tokens", "padded tokens", "padding"]
        lines += [f"Padding, {corpus}:", "", markdown_table(headers, table_rows), ""]
    return lines


def _reduced_lines(report: dict[str, Any]) -> list[str]:
    rows = []
    for entry in report["reduced_precision"]:
        if "skipped" in entry:
            rows.append([entry["precision"], "skipped: " + entry["skipped"], "", "", ""])
            continue
        fixed_same, total = entry["labels_unchanged_fixed"]
        own_same, _ = entry["labels_unchanged_own"]
        rows.append(
            [
                entry["precision"],
                f"{report['ours']['seconds'] / entry['seconds']:.2f}x",
                f"{entry['max_abs_difference']:.2g}",
                f"{fixed_same}/{total} ({fixed_same / total:.2%})",
                f"{own_same}/{total} ({own_same / total:.2%})",
            ]
        )
    headers = [
        "precision",
        "speed vs fp32",
        "max score difference",
        "labels unchanged, fp32 threshold",
        "labels unchanged, own threshold",
    ]
    return [
        f"Reduced precision, labels at the {LABEL_PERCENTILE:g}th-percentile threshold:",
        "",
        markdown_table(headers, rows),
        "",
        *_refinement_lines(report),
    ]


def _refinement_lines(report: dict[str, Any]) -> list[str]:
    rows = []
    for entry in report["reduced_precision"]:
        refined = entry.get("refined")
        if not refined:
            continue
        same, total = refined["labels_unchanged"]
        seconds = entry["seconds"] + refined["seconds"]
        rows.append(
            [
                entry["precision"],
                f"{refined['margin']:g}",
                f"{refined['segments']} ({refined['distinct_segments']} distinct, "
                f"{refined['tokens']} tokens)",
                f"{refined['seconds']:.1f}",
                f"{report['ours']['seconds'] / seconds:.2f}x",
                f"{same}/{total} ({same / total:.2%})",
                f"{refined['max_change']:.3g} + {refined['threshold_move']:.3g}"
                + ("" if refined["margin_held"] else " (more than the margin)"),
            ]
        )
    headers = [
        "precision",
        "margin",
        "sentences refined",
        "refine seconds",
        "speed vs fp32, with refinement",
        "labels unchanged",
        "largest change + threshold move",
    ]
    if not rows:
        return []
    return [
        "With refinement (own threshold, sentences near it scored again in fp32; log-odds):",
        "",
        markdown_table(headers, rows),
    ]


if __name__ == "__main__":
    main()
