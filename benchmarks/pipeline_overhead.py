"""Measure what ``annotate run`` costs beyond its scorers, on the same documents.

Three measurements on the same input file, by default the sample's English prose and
code documents:

1. bare: segment every document with the pipeline's segmenter, then call each scorer's
   ``score_documents`` on the segments it applies to, in batches of 256 documents as the
   pipeline does. Each step is timed, and model loading is timed apart.
2. end to end: ``python -m pipeline.cli run`` on the input, in a child process, on the
   in-process DirectRunner.
3. fixed cost: the same command on the input's first document only: interpreter start,
   imports, model loading, Beam's graph, and writing thresholds and manifest.

The overhead is end to end minus fixed cost minus bare scorers, relative to bare scorers.
Each measurement is the fastest of ``--repeat`` rounds, which alternate the three.

    PYTHONPATH=. python benchmarks/pipeline_overhead.py --checkpoint-dir /tmp/detoxify-base
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks.harness import (
    ENGLISH_PROSE,
    detoxify_checkpoint,
    machine_description,
    markdown_table,
    read_documents,
    run_annotate,
    sample_records,
    timed,
    write_records,
)

SCORERS = ("toxicity", "pii", "code_style")
CODE = ("code",)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    checkpoint, hf_dir = detoxify_checkpoint(args.checkpoint_dir)
    workdir = Path(tempfile.mkdtemp(prefix="pipeline-overhead-"))
    prefixes = None if args.all_documents else ENGLISH_PROSE + CODE
    records = sample_records(prefixes)
    source = write_records(records, workdir / "in.jsonl")
    first = write_records(records[:1], workdir / "first.jsonl")
    command = [
        "--scorers", ",".join(SCORERS), "--overwrite",
        "--toxicity-checkpoint", str(checkpoint), "--toxicity-hf-dir", str(hf_dir),
        "--toxicity-threads", str(args.threads), "--toxicity-device", "cpu",
    ]  # fmt: skip

    print(f"Machine: {machine_description()}")
    print(f"Input: {len(records)} documents; checkpoint {checkpoint}; threads {args.threads}\n")
    # Rounds alternate the measurements, so that a change of load affects each alike, and the
    # fastest of each is kept.
    rounds = []
    for _ in range(args.repeat):
        bare = bare_scorers(source, checkpoint, hf_dir, args.threads)
        end_to_end = run_annotate([str(source), str(workdir / "out"), *command])
        fixed = run_annotate([str(first), str(workdir / "out-first"), *command])
        rounds.append((bare, end_to_end, fixed))
    bare = {key: min(r[0][key] for r in rounds) for key in rounds[0][0]}
    end_to_end = min(r[1] for r in rounds)
    fixed = min(r[2] for r in rounds)
    print("Rounds, seconds of bare scoring, end to end and fixed cost:")
    for round_bare, round_end_to_end, round_fixed in rounds:
        round_scoring = sum(v for k, v in round_bare.items() if k != "loading scorers")
        print(f"- {round_scoring:.1f}, {round_end_to_end:.1f}, {round_fixed:.1f}")
    print()

    rows = [[f"bare: {name}", f"{seconds:.1f}"] for name, seconds in bare.items()]
    # Each bare step is the fastest over the rounds, so the total is a lower bound.
    scoring = sum(seconds for name, seconds in bare.items() if name != "loading scorers")
    rows += [
        ["bare: segmenting and scoring, total", f"{scoring:.1f}"],
        ["annotate run, end to end", f"{end_to_end:.1f}"],
        ["annotate run on the first document (fixed cost)", f"{fixed:.1f}"],
    ]
    print(markdown_table(["step", "seconds"], rows))
    overhead = (end_to_end - fixed - scoring) / scoring
    print(
        f"\nPipeline overhead beyond fixed cost: {overhead:.1%} of bare segmenting and scoring; "
        f"end to end over bare: {end_to_end / scoring - 1:.1%}."
    )
    print(f"Machine at the end: {machine_description()}")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--checkpoint-dir",
        help="directory of a checkpoint from scorers.testing (a base one is written there if "
        "missing), or a temporary directory when not given",
    )
    parser.add_argument(
        "--all-documents", action="store_true", help="use the whole sample (200 documents)"
    )
    parser.add_argument("--repeat", type=int, default=2, help="rounds of all measurements")
    return parser.parse_args(argv)


def bare_scorers(source: Path, checkpoint: Path, hf_dir: Path, threads: int) -> dict[str, float]:
    """Return seconds of model loading, segmenting, and each scorer on the same segments."""
    from pipeline.run import build_scorers
    from pipeline.score import DocumentScorer
    from schemas.config import RunConfig

    toxicity = {"checkpoint": str(checkpoint), "hf_dir": str(hf_dir), "threads": threads}
    toxicity["device"] = "cpu"
    config = RunConfig(
        inputs=str(source),
        output_dir="unused",
        scorers=SCORERS,
        scorer_options={"toxicity": toxicity},
    )
    scorers = build_scorers(config)
    documents = read_documents(source)
    document_scorer = DocumentScorer(scorers, config.segment, config.fail_fast)
    seconds = {"loading scorers": timed(document_scorer.setup).seconds}

    segmenting = timed(lambda: [document_scorer.segment(d) for d in documents])
    seconds["segmenting"] = segmenting.seconds
    cut = [
        (kind, [document.text[start:end] for start, end in spans])
        for document, (kind, spans) in zip(documents, segmenting.result, strict=True)
    ]
    size = config.batch_documents
    for scorer in scorers:
        applicable = [segments for kind, segments in cut if scorer.applies_to(kind)]
        batches = [applicable[i : i + size] for i in range(0, len(applicable), size)]
        seconds[scorer.alias] = timed(
            lambda s=scorer, b=batches: [s.score_documents(batch) for batch in b]
        ).seconds
    return seconds


if __name__ == "__main__":
    main()
