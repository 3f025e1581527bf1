"""Build and run the annotation pipeline: score, threshold, label, write run files."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

from pipeline import files
from pipeline.dedup import lsh_parameters
from pipeline.dedup_stage import AttachDuplicates
from pipeline.label_stage import LabelShardFn
from pipeline.locations import check_output_location
from pipeline.read import list_input_files
from pipeline.score_stage import ScoreFileFn
from pipeline.shards import DUPLICATES_DIR, PROGRESS_DIR
from pipeline.thresholds import ComputeThresholds
from schemas.config import RunConfig
from scorers.base import Scorer
from scorers.registry import create_scorers

logger = logging.getLogger(__name__)

THRESHOLDS_FILE = "thresholds.json"
MANIFEST_FILE = "manifest.json"
RUN_FILE = "run.json"

REPORTED_PACKAGES = (
    "feedback-annotate", "apache-beam", "pyarrow", "spacy", "detoxify", "torch",
    "transformers", "presidio-analyzer", "pycodestyle", "alt-profanity-check", "scikit-learn",
    "datasketch",
)  # fmt: skip


class OutputConflictError(Exception):
    """The output directory holds another run's output."""


def build_scorers(config: RunConfig) -> list[Scorer]:
    """Instantiate the configured scorers; raises for unknown names and missing packages."""
    return create_scorers(config.scorers, config.scorer_options)


def percentiles_by_name(config: RunConfig, scorers: Sequence[Scorer]) -> dict[str, float]:
    """P for each scorer, looked up by alias or versioned name."""
    known = {s.alias for s in scorers} | {s.name for s in scorers}
    unknown = set(config.label.percentiles) - known
    if unknown:
        raise ValueError(
            f"--percentile names scorer {sorted(unknown)[0]!r}, which is not enabled; "
            f"enabled scorers: {', '.join(s.alias for s in scorers)}"
        )
    result = {}
    for scorer in scorers:
        given = config.label.percentiles
        result[scorer.name] = given.get(scorer.name, given.get(scorer.alias))
        if result[scorer.name] is None:
            result[scorer.name] = config.label.default_percentile
    return result


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def provenance(config: RunConfig, scorers: Sequence[Scorer]) -> dict[str, Any]:
    """What produced a shard; written into every shard's Parquet metadata."""
    return {
        "scorers": [
            {"name": s.name, "alias": s.alias, "kinds": sorted(s.kinds), "options": s.options}
            for s in scorers
        ],
        "good_token": config.label.good_token,
        "bad_token": config.label.bad_token,
        "packages": package_versions(),
    }


def config_fingerprint(config: RunConfig, scorers: Sequence[Scorer]) -> str:
    """Hash of everything that decides a shard's content; a rerun must match it to resume."""
    data = {"config": config.to_dict(), "scorers": [s.name for s in scorers]}
    data["config"].pop("output_dir")
    encoded = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def claim_output_dir(config: RunConfig, scorers: Sequence[Scorer], overwrite: bool) -> None:
    """Record this run's fingerprint in OUT, refusing a directory that holds another run."""
    run_file = files.join(config.output_dir, PROGRESS_DIR, RUN_FILE)
    fingerprint = config_fingerprint(config, scorers)
    if files.exists(run_file) and not overwrite:
        stored = files.read_json(run_file)
        if stored.get("fingerprint") != fingerprint:
            raise OutputConflictError(
                f"{config.output_dir} holds the output of a run with other inputs or options; "
                "choose another output directory, or pass --overwrite to replace it"
            )
        logger.info("resuming the run in %s; completed shards are skipped", config.output_dir)
    elif overwrite and files.exists(config.output_dir):
        _clear_output(config.output_dir)
    files.write_json(run_file, {"fingerprint": fingerprint, "config": config.to_dict()})


def _clear_output(output_dir: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    names = ("shards", "scored", "rejected", DUPLICATES_DIR, PROGRESS_DIR)
    for name in (*names, THRESHOLDS_FILE, MANIFEST_FILE):
        path = files.join(output_dir, name)
        if FileSystems.exists(path):
            FileSystems.delete([path])


def merge_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for item in counts:
        total.update(item)
    return dict(total)


def build_pipeline(
    pipeline: beam.Pipeline,
    config: RunConfig,
    scorers: Sequence[Scorer],
    input_files: list[str],
    progress_dir: str | None = None,
    config_file: str | None = None,
) -> None:
    """Add the duplicate-removal, score, threshold, label and run-file stages to `pipeline`.

    Args:
        progress_dir: local directory where the scoring DoFns count their progress, or None.
        config_file: the configuration file the options came from, recorded in the manifest.
    """
    names = [s.name for s in scorers]
    percentiles = percentiles_by_name(config, scorers)
    stamp = provenance(config, scorers)
    bands, rows = dedup_bands(config)

    scored = (
        pipeline
        | "InputFiles" >> beam.Create(input_files)
        | "Duplicates" >> AttachDuplicates(config.read, config.dedup, bands, rows)
        | "SpreadFiles" >> beam.Reshuffle()
        | "Score" >> beam.ParDo(ScoreFileFn(config, scorers, stamp, progress_dir))
    )
    thresholds = (
        scored
        | "ScoredPaths" >> beam.Map(lambda shard: shard.path)
        | "Thresholds" >> ComputeThresholds(names, percentiles, config.label.quantile_epsilon)
    )
    labelled = scored | "Label" >> beam.ParDo(
        LabelShardFn(config.output_dir, names, config.label, stamp),
        thresholds=beam.pvalue.AsDict(thresholds),
    )
    score_counts = (
        scored
        | "ScoreCounts" >> beam.Map(lambda shard: shard.counts)
        | "SumScoreCounts" >> beam.CombineGlobally(merge_counts)
    )
    label_counts = labelled | "SumLabelCounts" >> beam.CombineGlobally(merge_counts)
    damaged_inputs = (
        scored
        | "DamagedInputs" >> beam.FlatMap(lambda shard: shard.damaged_inputs)
        | "ListDamagedInputs" >> beam.combiners.ToList()
    )
    summary = {
        "config": config.to_dict(),
        "config_file": config_file,
        "percentiles": percentiles,
        "provenance": stamp,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input_files": len(input_files),
        "dedup_lsh": {"bands": bands, "rows": rows} if config.dedup.method == "minhash" else None,
    }
    _ = (
        pipeline
        | "RunFilesTrigger" >> beam.Create([summary])
        | "WriteRunFiles"
        >> beam.Map(
            write_run_files,
            score_counts=beam.pvalue.AsSingleton(score_counts),
            label_counts=beam.pvalue.AsSingleton(label_counts),
            thresholds=beam.pvalue.AsDict(thresholds),
            damaged_inputs=beam.pvalue.AsSingleton(damaged_inputs),
        )
    )


def dedup_bands(config: RunConfig) -> tuple[int, int]:
    """Return the LSH (bands, rows per band) of a ``minhash`` run, or (0, 0) for other methods.

    Raises:
        ValueError: the threshold and permutations give fewer than 2 bands.
    """
    if config.dedup.method != "minhash":
        return 0, 0
    return lsh_parameters(config.dedup)


def write_run_files(
    summary: dict,
    score_counts: dict,
    label_counts: dict,
    thresholds: dict,
    damaged_inputs: Sequence[dict] = (),
) -> dict:
    """Write thresholds.json and manifest.json; returns the manifest.

    `damaged_inputs` lists the compressed input files found damaged, each with
    input_file, lines_read and error.
    """
    output_dir = summary["config"]["output_dir"]
    table = thresholds_table(summary["percentiles"], thresholds, label_counts)
    files.write_json(files.join(output_dir, THRESHOLDS_FILE), table)
    counts = merge_counts([score_counts, label_counts])
    manifest = {
        "started_at": summary["started_at"],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": summary["config"],
        "config_file": summary["config_file"],
        "scorers": summary["provenance"]["scorers"],
        "packages": summary["provenance"]["packages"],
        "input_files": summary["input_files"],
        "dedup_lsh": summary["dedup_lsh"],
        "counts": accounting(counts),
        "all_counts": dict(sorted(counts.items())),
        "damaged_inputs": sorted(damaged_inputs, key=lambda entry: entry["input_file"]),
    }
    files.write_json(files.join(output_dir, MANIFEST_FILE), manifest)
    return manifest


def thresholds_table(percentiles: dict, thresholds: dict, label_counts: dict) -> dict:
    table = {}
    for name, percentile in percentiles.items():
        scored = label_counts.get(f"scored_{name}", 0)
        good = label_counts.get(f"good_{name}", 0)
        table[name] = {
            "percentile": percentile,
            "threshold": thresholds.get(name),
            "num_segments": scored,
            "fraction_good": good / scored if scored else None,
        }
    return table


def accounting(counts: dict[str, int]) -> dict[str, Any]:
    """Documents in and out; read = written + rejected + removed as duplicates."""
    read = counts.get("documents_read", 0)
    written = counts.get("documents_written", 0)
    rejected = counts.get("documents_rejected", 0)
    duplicates = counts.get("documents_duplicates", 0)
    return {
        "documents_read": read,
        "documents_written": written,
        "documents_rejected": rejected,
        "documents_duplicates": duplicates,
        "balanced": read == written + rejected + duplicates,
        "segments_good": counts.get("segments_good", 0),
        "segments_bad": counts.get("segments_bad", 0),
        "segments_blank": counts.get("segments_blank", 0),
    }


def run(
    config: RunConfig,
    beam_args: Sequence[str] = (),
    runner: Any = None,
    overwrite: bool = False,
    progress_dir: str | None = None,
    config_file: str | None = None,
) -> dict:
    """Run the whole job and return the manifest read back from the output directory.

    `progress_dir` and `config_file` are passed to `build_pipeline`.

    Raises:
        ValueError: an invalid option, or an output directory that overlaps the
            input (OutputLocationError), found before any work starts.
        FileNotFoundError: no input file matches `config.inputs`.
        OutputConflictError: the output directory holds another run's output.
    """
    scorers = build_scorers(config)
    dedup_bands(config)
    percentiles_by_name(config, scorers)
    input_files = list_input_files(config.inputs)
    check_output_location(config.inputs, input_files, config.output_dir)
    claim_output_dir(config, scorers, overwrite)
    options = PipelineOptions(list(beam_args))
    logger.info("annotating %d input file(s) into %s", len(input_files), config.output_dir)
    with beam.Pipeline(runner=runner, options=options) as pipeline:
        build_pipeline(pipeline, config, scorers, input_files, progress_dir, config_file)
    return files.read_json(files.join(config.output_dir, MANIFEST_FILE))
