"""Relabel an earlier run: new thresholds, tokens or layout from its stored scores.

The scored shards (RUN_DIR/scored/, or RUN_DIR/shards/ when scored/ is gone)
hold every segment and its scores. A scored shard that the run refined is read
from its copy in RUN_DIR/refined/, which contains the scores the run labelled
from. Relabelling reads these shards, computes new thresholds and writes new
shards without loading any scorer or model, with one exception. For a scorer
that the earlier run ran in reduced precision, the segments near its new
threshold are scored again at full precision (`pipeline.refine`), which loads
its model, unless `refine` is off.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import posixpath
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import files
from pipeline.duplicate_ids import DUPLICATE_IDS, log_duplicate_ids
from pipeline.local import log_runner
from pipeline.run import (
    MANIFEST_FILE,
    PROGRESS_DIR,
    RUN_FILE,
    build_label_stages,
    claim_directory,
    log_fraction_warnings,
    log_refinement,
    prepare_label_job,
    scorer_refinements,
)
from pipeline.score_stage import ShardResult
from pipeline.shards import SCORED_DIR, SHARDS_DIR, with_refined_copies
from schemas.config import LabelOptions
from schemas.output import SCHEMA_METADATA_KEY, scorer_names_from_schema
from scorers.base import Refinement
from scorers.registry import UnknownScorerError, get_scorer_class

logger = logging.getLogger(__name__)


class SourceRunError(ValueError):
    """The directory to relabel is not the complete output of an earlier run."""


def find_scored_shards(run_dir: str) -> list[str]:
    """Return the paths of the shards with segments and scores: scored/, else shards/.

    A scored shard that the run refined is replaced by its copy in refined/,
    which contains the scores the run labelled from. Shards in shards/ contain
    those scores already.

    Raises:
        SourceRunError: neither directory contains a Parquet shard.
    """
    for directory in (SCORED_DIR, SHARDS_DIR):
        paths = files.match(files.join(run_dir, directory, "*.parquet"))
        if paths and directory == SCORED_DIR:
            return with_refined_copies(run_dir, paths)
        if paths:
            return paths
    raise SourceRunError(
        f"{run_dir} has no scored/*.parquet or shards/*.parquet; pass the output directory "
        "of an earlier 'annotate run'"
    )


def scored_shard_results(run_dir: str) -> list[ShardResult]:
    """Return a ShardResult for each shard that `find_scored_shards` finds in `run_dir`."""
    paths = find_scored_shards(run_dir)
    return [ShardResult(posixpath.basename(path)[: -len(".parquet")], path) for path in paths]


def shard_provenance(path: str) -> dict[str, Any]:
    """Read the provenance stored in a shard's Parquet metadata, with its scorer names.

    Raises:
        SourceRunError: the shard has no segments column (the phf layout) or no
            score column.
    """
    with files.open_read(path) as stream:
        schema = pq.read_schema(stream)
    if "segments" not in schema.names or not scorer_names_from_schema(schema):
        raise SourceRunError(
            f"{path} has no segments and score columns (a phf-layout shard?); relabel "
            "from a run directory that still has scored/"
        )
    stored = json.loads((schema.metadata or {}).get(SCHEMA_METADATA_KEY, b"{}"))
    # The refine plan of a refined copy describes that copy, not the relabelled shards.
    stored.pop("refined", None)
    known = {scorer["name"]: scorer for scorer in stored.get("scorers", [])}
    scorers = [
        known.get(name, {"name": name, "alias": name, "kinds": [], "options": {}})
        for name in scorer_names_from_schema(schema)
    ]
    return dict(stored, scorers=scorers)


def carried_counts(manifest: dict) -> dict[str, int]:
    """Return the counts of the stages before labelling: all counts minus the label counts.

    Raises:
        SourceRunError: the manifest has no label_counts to subtract.
    """
    if "label_counts" not in manifest:
        raise SourceRunError(
            "the manifest.json of the run to relabel has no label_counts; rerun it with "
            "this version of 'annotate run'"
        )
    counts = dict(manifest["all_counts"])
    for key, value in manifest["label_counts"].items():
        counts[key] = counts.get(key, 0) - value
    # The label stages count repeated ids again from the scored shards.
    counts.pop(DUPLICATE_IDS, None)
    return {key: value for key, value in counts.items() if value}


def relabel(
    run_dir: str,
    output_dir: str,
    options: LabelOptions,
    beam_args: Sequence[str] = (),
    runner: Any = None,
    overwrite: bool = False,
    refine: bool = True,
) -> dict:
    """Write new shards, thresholds.json, special_tokens.json and manifest.json to `output_dir`.

    The manifest keeps the document counts of the earlier run (read, rejected,
    removed as duplicates), so its accounting still balances. With `refine`,
    scorers that the earlier run ran in reduced precision are refined near
    their new thresholds, as `annotate run` does.

    Raises:
        SourceRunError: `run_dir` is not the complete output of an earlier run,
            or is `output_dir` itself.
        ValueError: an option does not fit the earlier run's scorers.
        OutputConflictError: `output_dir` contains another run and `overwrite` is False.
    """
    run_dir, output_dir = run_dir.rstrip("/"), output_dir.rstrip("/")
    if posixpath.normpath(run_dir) == posixpath.normpath(output_dir):
        raise SourceRunError("the output directory must differ from the run directory")
    paths = find_scored_shards(run_dir)
    manifest_path = files.join(run_dir, MANIFEST_FILE)
    if not files.exists(manifest_path):
        raise SourceRunError(f"{manifest_path} is missing; the run to relabel did not finish")
    source = files.read_json(manifest_path)
    carried = carried_counts(source)
    stamp = shard_provenance(paths[0])
    stamp.setdefault("packages", source.get("packages", {}))
    config = dict(source["config"], output_dir=output_dir, label=dataclasses.asdict(options))
    job = prepare_label_job(output_dir, options, stamp, config["read"]["id_field"])
    refinements = source_refinements(stamp) if refine else {}
    claim_directory(output_dir, _claim_record(run_dir, config, sorted(refinements)), overwrite)
    log_runner(runner)

    summary = {
        "config": config,
        "provenance": job.provenance,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input_files": source["input_files"],
        "relabelled_from": run_dir,
    }
    logger.info("relabelling %d shard(s) of %s into %s", len(paths), run_dir, output_dir)
    with beam.Pipeline(runner=runner, options=PipelineOptions(list(beam_args))) as pipeline:
        # The shards are listed again by the pipeline, so that their paths stay out of the
        # job graph, whose size runners limit.
        scored = (
            pipeline
            | "RunDirectory" >> beam.Create([run_dir])
            | "ScoredShards" >> beam.FlatMap(scored_shard_results)
            | "SpreadShards" >> beam.Reshuffle()
        )
        upstream = pipeline | "CarriedCounts" >> beam.Create([carried])
        build_label_stages(pipeline, scored, upstream, job, summary, None, refinements)
    log_fraction_warnings(output_dir)
    manifest = files.read_json(files.join(output_dir, MANIFEST_FILE))
    log_duplicate_ids(manifest)
    log_refinement(manifest)
    return manifest


def source_refinements(stamp: dict[str, Any]) -> dict[str, Refinement]:
    """Return the refinements of the earlier run's scorers, rebuilt from their stored options.

    A scorer whose class is not installed here is left unrefined, with a warning.
    """
    scorers = []
    for entry in stamp["scorers"]:
        try:
            scorer_class = get_scorer_class(entry["name"])
        except UnknownScorerError as error:
            logger.warning("%s; its scores are used as stored, without refinement", error)
            continue
        scorers.append(scorer_class(**entry.get("options", {})))
    return scorer_refinements(scorers)


def _claim_record(run_dir: str, config: dict, refined: list[str]) -> dict:
    run_file = files.join(run_dir, PROGRESS_DIR, RUN_FILE)
    source = files.read_json(run_file).get("fingerprint") if files.exists(run_file) else None
    data = {"source": run_dir, "source_fingerprint": source, "label": config["label"]}
    if refined:
        # Only when some scorer is refined, so that other output directories keep their
        # fingerprint and are resumed as before.
        data["refined_scorers"] = refined
    encoded = json.dumps(data, sort_keys=True, default=str).encode()
    fingerprint = hashlib.sha256(encoded).hexdigest()[:16]
    return {
        "fingerprint": fingerprint,
        "command": "label",
        "config": config,
        "relabelled_from": run_dir,
        "source_fingerprint": source,
        "refined_scorers": refined,
    }
