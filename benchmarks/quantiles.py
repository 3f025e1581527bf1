"""Rank error and time of the global percentiles on generated scores.

Writes N generated segment scores into Parquet shards and runs the pipeline's
ComputeQuantiles transform on them with Beam's FnApiRunner. For each P it
compares the chosen threshold with the exact nearest-rank percentile, as a
fraction of N (or of all characters, weighted).

    python benchmarks/quantiles.py --scores 1000000 --epsilon 0.001

Prints a Markdown table; docs/benchmarks.md keeps the results.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import apache_beam as beam  # noqa: E402
from apache_beam.runners.portability.fn_api_runner import FnApiRunner  # noqa: E402

from pipeline.thresholds import ComputeQuantiles, percentile_index, rank_error  # noqa: E402

PERCENTILES = [0.1, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9]
SEGMENTS_PER_DOCUMENT = 20


def generated_scores(kind: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """Scores shaped like the built-in scorers' scores."""
    if kind == "uniform":
        return rng.random(count)
    if kind == "toxicity-like":
        return rng.beta(0.3, 8, count)
    # PII and code style: mostly exactly 0, the rest findings per character.
    return np.where(rng.random(count) < 0.9, 0.0, np.round(rng.random(count) / 50, 4))


def write_shards(
    directory: Path, scores: np.ndarray, lengths: np.ndarray, shards: int
) -> list[str]:
    """Parquet shards with a ``score_bench`` list column and segments of the given lengths."""
    paths = []
    for index, (part, part_lengths) in enumerate(
        zip(np.array_split(scores, shards), np.array_split(lengths, shards), strict=True)
    ):
        documents = len(part) // SEGMENTS_PER_DOCUMENT
        offsets = pa.array(np.arange(documents + 1) * SEGMENTS_PER_DOCUMENT, pa.int32())
        used = documents * SEGMENTS_PER_DOCUMENT
        segments = pa.array(["x" * int(n) for n in part_lengths[:used]], pa.string())
        table = pa.table(
            {
                "score_bench": pa.ListArray.from_arrays(offsets, pa.array(part[:used])),
                "segments": pa.ListArray.from_arrays(offsets, segments),
            }
        )
        path = directory / f"shard-{index:03d}.parquet"
        pq.write_table(table, path)
        paths.append(str(path))
    return paths


def run_quantiles(paths: list[str], weighted: bool, epsilon: float) -> tuple[list[float], float]:
    """Quantiles from the pipeline's transform, and the seconds the pipeline took."""
    # The runner pickles every function, so the result comes back through a file.
    output = Path(paths[0]).with_name("quantiles.json")
    start = time.perf_counter()
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            pipeline
            | beam.Create(paths)
            | ComputeQuantiles(["bench"], weighted, epsilon)
            | beam.Map(lambda item: output.write_text(json.dumps(item[1])))
        )
    return json.loads(output.read_text()), time.perf_counter() - start


def measure(kind: str, count: int, weighted: bool, epsilon: float, shards: int) -> dict:
    rng = np.random.default_rng(2023)
    count -= count % (shards * SEGMENTS_PER_DOCUMENT)
    scores = generated_scores(kind, count, rng)
    lengths = rng.integers(1, 400, count)
    with tempfile.TemporaryDirectory() as directory:
        paths = write_shards(Path(directory), scores, lengths, shards)
        quantiles, seconds = run_quantiles(paths, weighted, epsilon)
    order = np.argsort(scores, kind="stable")
    ordered = scores[order].tolist()
    cumulative = np.cumsum(lengths[order]).tolist() if weighted else None
    errors = [
        rank_error(ordered, quantiles[percentile_index(p)], p, cumulative) for p in PERCENTILES
    ]
    worst = int(np.argmax(errors))
    return {
        "kind": kind,
        "weighted": weighted,
        "count": count,
        "max_error": errors[worst],
        "worst_percentile": PERCENTILES[worst],
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", type=int, default=1_000_000)
    parser.add_argument("--epsilon", type=float, default=0.001)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    print(f"{args.scores} scores, epsilon {args.epsilon}, {args.shards} shards, ", end="")
    print(f"Python {platform.python_version()}, beam {beam.__version__}")
    print("| scores | weighted | max rank error | at P | pipeline seconds |")
    print("| --- | --- | --- | --- | --- |")
    for kind in ("uniform", "toxicity-like", "pii-like"):
        for weighted in (False, True):
            row = measure(kind, args.scores, weighted, args.epsilon, args.shards)
            print(
                f"| {kind} | {'characters' if weighted else 'no'} | "
                f"{row['max_error']:.4%} | {row['worst_percentile']:g} | {row['seconds']:.1f} |"
            )


if __name__ == "__main__":
    main()
