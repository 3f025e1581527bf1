"""The scoring pass on its own: what `annotate score IN SCORED` runs.

It writes SCORED/scored/*.parquet (segments, offsets and raw scores, no
labels), a completion marker per shard under SCORED/_progress/score/, rejected
records under SCORED/rejected/, and SCORED/manifest.json with the counts of
the pass. `annotate label SCORED OUT` then computes thresholds and writes the
final shards from these scored shards, without scoring again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import apache_beam as beam

from pipeline import files
from pipeline.duplicate_ids import (
    DUPLICATE_IDS,
    FindDuplicateIds,
    log_duplicate_ids,
    no_duplicate_ids,
)
from pipeline.run import (
    MANIFEST_FILE,
    accounting,
    build_score_stages,
    duplicate_id_counts,
    merge_counts,
    provenance,
    run_pipeline,
    run_summary,
    sum_score_counts,
)
from schemas.config import RunConfig
from scorers.base import Scorer

SCORE_COMMAND = "score"


def build_score_pipeline(
    pipeline: beam.Pipeline,
    config: RunConfig,
    scorers: Sequence[Scorer],
    input_files: list[str],
    progress_dir: str | None = None,
) -> None:
    """Add duplicate removal, the scoring pass and the writing of its manifest to `pipeline`."""
    stamp = provenance(config, scorers)
    scored = build_score_stages(pipeline, config, scorers, input_files, stamp, progress_dir)
    counts = sum_score_counts(scored)
    damaged_inputs = (
        scored
        | "DamagedInputs" >> beam.FlatMap(lambda shard: shard.damaged_inputs)
        | "ListDamagedInputs" >> beam.combiners.ToList()
    )
    duplicate_ids = (
        scored
        | "ScoredPaths" >> beam.Map(lambda shard: shard.path)
        | "DuplicateIds" >> FindDuplicateIds()
    )
    summary = run_summary(config, None, stamp, input_files)
    _ = (
        pipeline
        | "ManifestTrigger" >> beam.Create([summary])
        | "WriteManifest"
        >> beam.Map(
            write_score_manifest,
            counts=beam.pvalue.AsSingleton(counts),
            damaged_inputs=beam.pvalue.AsSingleton(damaged_inputs),
            duplicate_ids=beam.pvalue.AsSingleton(duplicate_ids),
        )
    )


def write_score_manifest(
    summary: dict,
    counts: dict[str, int],
    damaged_inputs: Sequence[dict] = (),
    duplicate_ids: dict | None = None,
) -> dict:
    """Write manifest.json of the scoring pass; returns the manifest.

    It has the fields that `annotate label` reads from a run's manifest, with
    empty `label_counts`, so the scored shards can be labelled later.
    """
    counts = merge_counts([counts, duplicate_id_counts(duplicate_ids)])
    manifest = {
        "command": SCORE_COMMAND,
        "started_at": summary["started_at"],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": summary["config"],
        "scorers": summary["provenance"]["scorers"],
        "packages": summary["provenance"]["packages"],
        "input_files": summary["input_files"],
        "dedup_lsh": summary.get("dedup_lsh"),
        "counts": accounting(counts, "documents_scored", ("segments_prose", "segments_code")),
        "all_counts": dict(sorted(counts.items())),
        "damaged_inputs": sorted(damaged_inputs, key=lambda entry: entry["input_file"]),
        DUPLICATE_IDS: duplicate_ids or no_duplicate_ids(),
        "label_counts": {},
    }
    output_dir = summary["config"]["output_dir"]
    files.write_json(files.join(output_dir, MANIFEST_FILE), manifest)
    return manifest


def score(
    config: RunConfig,
    beam_args: Sequence[str] = (),
    runner: Any = None,
    overwrite: bool = False,
    progress_dir: str | None = None,
) -> dict:
    """Run the scoring pass and return its manifest read back from the output directory.

    Raises:
        ValueError, FileNotFoundError, OutputConflictError: as `run_pipeline`.
    """

    def build(pipeline, config, scorers, input_files):
        build_score_pipeline(pipeline, config, scorers, input_files, progress_dir)

    run_pipeline(config, build, beam_args, runner, overwrite, SCORE_COMMAND)
    manifest = files.read_json(files.join(config.output_dir, MANIFEST_FILE))
    log_duplicate_ids(manifest)
    return manifest
