"""Measure ``annotate run`` in reduced precision, refinement included, against fp32.

Runs ``python -m pipeline.cli run`` with the toxicity scorer alone on the sample's English
prose documents, once per precision (fp32, then bf16 and int8 with their default refine
margins), in child processes on the in-process DirectRunner. Each run's wall time covers
everything: interpreter start, loading the model (and, for a reduced precision, the fp32
model of the refinement pass), scoring, refinement, thresholds, labels and the run files.

Each variant also runs on the first document alone, which measures its fixed cost: start,
imports, loading the models (int8 exports and quantizes the model at setup), Beam's graph
and the run files. On 556 sentences the fixed cost is a large part of a run, so the
speed-up is given end to end and beyond the fixed cost.

For each reduced precision it reports the manifest's ``refinement`` section and how many
segment labels differ from the fp32 run's. A second run with ``refine_margin=0`` shows how
many labels differ without refinement.

    PYTHONPATH=. python benchmarks/refinement.py --checkpoint-dir /tmp/detoxify-base
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow.parquet as pq

from benchmarks.harness import (
    ENGLISH_PROSE,
    detoxify_checkpoint,
    machine_description,
    markdown_table,
    run_annotate,
    sample_records,
    write_records,
)

SCORER = "toxicity_detoxify_v1"


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    checkpoint, hf_dir = detoxify_checkpoint(args.checkpoint_dir)
    with tempfile.TemporaryDirectory() as work:
        root = Path(work)
        records = sample_records(ENGLISH_PROSE)
        inputs = write_records(records, root / "prose.jsonl")
        first = write_records(records[:1], root / "first.jsonl")
        common = [
            "--scorers", "toxicity", "--toxicity-checkpoint", str(checkpoint),
            "--toxicity-hf-dir", str(hf_dir), "--toxicity-threads", str(args.threads),
            "--toxicity-device", args.device, "--runner", "DirectRunner", "--overwrite",
        ]  # fmt: skip
        runs = {}
        for name, options in _variants(args.precisions):
            out = root / name
            seconds, fixed = [], []
            for _ in range(args.repeat):
                seconds.append(run_annotate([str(inputs), str(out), *common, *options]))
                fixed.append(run_annotate([str(first), str(root / "fixed"), *common, *options]))
            manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
            runs[name] = {
                "seconds": min(seconds),
                "runs": seconds,
                "fixed_seconds": min(fixed),
                "labels": _labels(out),
                "refinement": manifest.get("refinement", {}).get(SCORER),
            }
    print(f"Machine: {machine_description()}; torch threads: {args.threads}")
    print()
    print(format_table(runs))
    if args.json:
        numbers = {
            name: {k: v for k, v in entry.items() if k != "labels"} for name, entry in runs.items()
        }
        Path(args.json).write_text(json.dumps(numbers, indent=2) + "\n", encoding="utf-8")


def _variants(precisions: Sequence[str]) -> list[tuple[str, list[str]]]:
    variants = [("fp32", [])]
    for precision in precisions:
        option = ["--scorer-option", f"toxicity.precision={precision}"]
        variants.append((precision, option))
        no_refinement = ["--scorer-option", "toxicity.refine_margin=0"]
        variants.append((f"{precision}, no refinement", [*option, *no_refinement]))
    return variants


def _labels(out: Path) -> dict[str, list]:
    table = pq.read_table(out / "shards", columns=["id", "labels"])
    return dict(zip(table["id"].to_pylist(), table["labels"].to_pylist(), strict=True))


def changed_labels(first: dict[str, list], second: dict[str, list]) -> tuple[int, int]:
    """Return (segment labels that differ, segment labels), blank segments included."""
    pairs = [(a, b) for key in first for a, b in zip(first[key], second[key], strict=True)]
    return sum(a != b for a, b in pairs), len(pairs)


def format_table(runs: dict[str, dict]) -> str:
    """Format the runs as a Markdown table against the fp32 run."""
    exact = runs["fp32"]
    exact_beyond = exact["seconds"] - exact["fixed_seconds"]
    rows = []
    for name, entry in runs.items():
        changed, total = changed_labels(exact["labels"], entry["labels"])
        refinement = entry["refinement"]
        beyond = entry["seconds"] - entry["fixed_seconds"]
        rows.append(
            [
                name,
                " / ".join(f"{seconds:.1f}" for seconds in entry["runs"]),
                f"{entry['fixed_seconds']:.1f}",
                f"{exact['seconds'] / entry['seconds']:.2f}x",
                f"{exact_beyond / beyond:.2f}x",
                f"{refinement['segments']}" if refinement else "",
                f"{refinement['max_change']:.3g} + {refinement['threshold_move']:.3g} "
                f"<= {refinement['margin']:g}: {refinement['margin_held']}"
                if refinement
                else "",
                f"{changed} of {total}",
            ]
        )
    headers = [
        "run",
        "seconds",
        "fixed cost, s",
        "speed vs fp32",
        "beyond fixed cost",
        "segments refined",
        "largest change + threshold move <= margin",
        "labels changed",
    ]
    return markdown_table(headers, rows)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint-dir",
        help="directory of a base checkpoint from scorers.testing; written there if missing "
        "(438 MB), or in a temporary directory when not given",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--precisions",
        type=lambda text: [p for p in text.split(",") if p],
        default=["bf16", "int8"],
        help="reduced precisions to run, comma-separated",
    )
    parser.add_argument("--device", default="cpu", help="torch device of the scorer")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant")
    parser.add_argument("--json", help="also write the times and refinement sections here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
