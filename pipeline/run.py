"""Build and run the annotation pipeline: score, threshold, label, write run files."""

from __future__ import annotations

import hashlib
import json
import logging
import platform
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineResult

from pipeline import files
from pipeline.label_stage import LABEL_STAGE, LABELLED_SHARDS_SKIPPED, LabelShardFn
from pipeline.read import list_input_files
from pipeline.score_stage import (
    METRICS_NAMESPACE,
    SCORE_STAGE,
    SCORED_SHARDS_SKIPPED,
    SCORER_SETUPS,
    ScoreFileFn,
)
from pipeline.shards import PROGRESS_DIR, REJECTED_DIR, SCORED_DIR, SHARDS_DIR
from pipeline.thresholds import ComputeThresholds
from schemas.config import RunConfig
from scorers.base import Scorer
from scorers.registry import get_scorer_class

logger = logging.getLogger(__name__)

THRESHOLDS_FILE = "thresholds.json"
MANIFEST_FILE = "manifest.json"
RUN_FILE = "run.json"
SUMMARIES_DIR = "summaries"

# Directories and files this tool writes into an output directory.
OUTPUT_DIRS = (SHARDS_DIR, SCORED_DIR, REJECTED_DIR, PROGRESS_DIR)
OUTPUT_NAMES = (*OUTPUT_DIRS, THRESHOLDS_FILE, MANIFEST_FILE)
PROGRESS_STAGES = (SCORE_STAGE, LABEL_STAGE)

REPORTED_PACKAGES = (
    "feedback-annotate", "apache-beam", "pyarrow", "spacy", "detoxify", "torch",
    "transformers", "presidio-analyzer", "pycodestyle", "alt-profanity-check", "scikit-learn",
    "datasketch",
)  # fmt: skip


class OutputConflictError(Exception):
    """The output directory holds another run's output."""


def build_scorers(config: RunConfig) -> list[Scorer]:
    """Instantiate the configured scorers; raises for unknown names and missing packages."""
    scorers = []
    for alias in config.scorers:
        cls = get_scorer_class(alias)
        cls.check_dependencies()
        options = config.scorer_options.get(cls.alias, {}) | config.scorer_options.get(cls.name, {})
        scorers.append(cls(**options))
    names = [s.name for s in scorers]
    if len(set(names)) != len(names):
        raise ValueError(f"a scorer is listed twice in {', '.join(config.scorers)}")
    return scorers


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


def config_fingerprint(config: RunConfig, scorers: Sequence[Scorer], command: str = "run") -> str:
    """Hash of everything that decides a shard's content; a rerun must match it to resume.

    `command` keeps the output of `annotate score` and `annotate run` apart, because
    they write different files into their output directories.
    """
    data = {"config": config.to_dict(), "scorers": [s.name for s in scorers]}
    data["config"].pop("output_dir")
    data["command"] = command
    encoded = json.dumps(data, sort_keys=True, default=str).encode()
    return hashlib.sha256(encoded).hexdigest()[:16]


def claim_output_dir(
    config: RunConfig, scorers: Sequence[Scorer], overwrite: bool, command: str = "run"
) -> None:
    """Record this run's fingerprint in OUT, refusing a directory that holds another run.

    A directory with output files but no fingerprint is refused too, because its
    shards cannot be told apart from this run's.
    """
    run_file = files.join(config.output_dir, PROGRESS_DIR, RUN_FILE)
    fingerprint = config_fingerprint(config, scorers, command)
    if overwrite:
        if files.exists(config.output_dir):
            _clear_output(config.output_dir)
    elif files.exists(run_file):
        stored = files.read_json(run_file)
        if stored.get("fingerprint") != fingerprint:
            raise OutputConflictError(
                f"{config.output_dir} holds the output of a run with other inputs or options; "
                "choose another output directory, or pass --overwrite to replace it"
            )
        logger.info("resuming the run in %s; completed shards are skipped", config.output_dir)
        _remove_temporary_files(config.output_dir)
    elif _existing_output(config.output_dir):
        raise OutputConflictError(
            f"{config.output_dir} contains {_existing_output(config.output_dir)} but no record of "
            "the run that wrote it; choose another output directory, or pass --overwrite to "
            "replace it"
        )
    files.write_json(
        run_file, {"fingerprint": fingerprint, "command": command, "config": config.to_dict()}
    )


def _existing_output(output_dir: str) -> str | None:
    """Name of the first output file or directory of this tool found in `output_dir`."""
    for name in OUTPUT_NAMES:
        if files.exists(files.join(output_dir, name)):
            return name
    return None


def _remove_temporary_files(output_dir: str) -> None:
    """Delete the temporary files of shards and markers that a killed attempt left behind."""
    directories = [output_dir, *(files.join(output_dir, name) for name in OUTPUT_DIRS)]
    directories += [files.join(output_dir, PROGRESS_DIR, stage) for stage in PROGRESS_STAGES]
    removed = sum(files.remove_temporary_files(directory) for directory in directories)
    if removed:
        logger.info("removed %d temporary file(s) of an interrupted attempt", removed)


def _clear_output(output_dir: str) -> None:
    from apache_beam.io.filesystems import FileSystems

    for name in OUTPUT_NAMES:
        path = files.join(output_dir, name)
        if FileSystems.exists(path):
            FileSystems.delete([path])
    files.remove_temporary_files(output_dir)


def merge_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for item in counts:
        total.update(item)
    return dict(total)


def build_pipeline(
    pipeline: beam.Pipeline, config: RunConfig, scorers: Sequence[Scorer], input_files: list[str]
) -> None:
    """Add the score, threshold, label and run-file stages to `pipeline`."""
    stamp = provenance(config, scorers)
    scored = build_score_stages(pipeline, config, scorers, input_files, stamp)
    build_label_stages(pipeline, scored, config, scorers, stamp, len(input_files))


def build_score_stages(
    pipeline: beam.Pipeline,
    config: RunConfig,
    scorers: Sequence[Scorer],
    input_files: list[str],
    stamp: dict[str, Any],
) -> beam.PCollection:
    """Add the scoring pass; returns the PCollection of `ShardResult`, one per scored shard."""
    return (
        pipeline
        | "InputFiles" >> beam.Create(input_files)
        | "SpreadFiles" >> beam.Reshuffle()
        | "Score" >> beam.ParDo(ScoreFileFn(config, scorers, stamp))
    )


def build_label_stages(
    pipeline: beam.Pipeline,
    scored: beam.PCollection,
    config: RunConfig,
    scorers: Sequence[Scorer],
    stamp: dict[str, Any],
    input_files: int,
) -> None:
    """Add thresholds, labelling and the run files, given the scored shards."""
    names = [s.name for s in scorers]
    percentiles = percentiles_by_name(config, scorers)
    thresholds = (
        scored
        | "ScoredPaths" >> beam.Map(lambda shard: shard.path)
        | "Thresholds"
        >> ComputeThresholds(
            names, percentiles, config.label.quantile_epsilon, summaries_dir(config.output_dir)
        )
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
    summary = {
        "config": config.to_dict(),
        "percentiles": percentiles,
        "provenance": stamp,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input_files": input_files,
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
        )
    )


def write_run_files(
    summary: dict, score_counts: dict, label_counts: dict, thresholds: dict
) -> dict:
    """Write thresholds.json and manifest.json; returns the manifest."""
    output_dir = summary["config"]["output_dir"]
    table = thresholds_table(summary["percentiles"], thresholds, label_counts)
    files.write_json(files.join(output_dir, THRESHOLDS_FILE), table)
    counts = merge_counts([score_counts, label_counts])
    manifest = {
        "started_at": summary["started_at"],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": summary["config"],
        "scorers": summary["provenance"]["scorers"],
        "packages": summary["provenance"]["packages"],
        "input_files": summary["input_files"],
        "counts": accounting(counts),
        "all_counts": dict(sorted(counts.items())),
    }
    files.write_json(files.join(output_dir, MANIFEST_FILE), manifest)
    files.remove(summaries_dir(output_dir))
    return manifest


def summaries_dir(output_dir: str) -> str:
    """Directory of the percentile summaries, which are deleted once the run files exist."""
    return files.join(output_dir, PROGRESS_DIR, SUMMARIES_DIR)


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
) -> dict:
    """Run the whole job and return the manifest read back from the output directory."""
    run_pipeline(config, build_pipeline, beam_args, runner, overwrite)
    return files.read_json(files.join(config.output_dir, MANIFEST_FILE))


def run_pipeline(
    config: RunConfig,
    build: Callable[[beam.Pipeline, RunConfig, Sequence[Scorer], list[str]], None],
    beam_args: Sequence[str] = (),
    runner: Any = None,
    overwrite: bool = False,
    command: str = "run",
) -> PipelineResult:
    """Claim the output directory, build the pipeline with `build`, run it to the end.

    Returns Beam's result, whose metrics count the shards done and skipped.
    """
    scorers = build_scorers(config)
    input_files = list_input_files(config.inputs)
    claim_output_dir(config, scorers, overwrite, command)
    options = PipelineOptions(list(beam_args))
    logger.info("annotating %d input file(s) into %s", len(input_files), config.output_dir)
    pipeline = beam.Pipeline(runner=runner, options=options)
    build(pipeline, config, scorers, input_files)
    result = pipeline.run()
    result.wait_until_finish()
    log_work_done(result)
    return result


def log_work_done(result: PipelineResult) -> None:
    """Log how often scorer models were loaded and how many completed shards were skipped."""
    counters = work_counters(result)
    logger.info(
        "scorer models were loaded %d time(s); %d scored and %d labelled shard(s) were "
        "complete already and were skipped",
        counters.get(SCORER_SETUPS, 0),
        counters.get(SCORED_SHARDS_SKIPPED, 0),
        counters.get(LABELLED_SHARDS_SKIPPED, 0),
    )


def work_counters(result: PipelineResult) -> dict[str, int]:
    """This tool's Beam counters from a finished pipeline, by name, summed over steps."""
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    totals: Counter[str] = Counter()
    for counter in query["counters"]:
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[counter.key.metric.name] += value or 0
    return dict(totals)
