"""Build and run the annotation pipeline: score, threshold, label, write run files."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, WorkerOptions
from apache_beam.runners.runner import PipelineResult

from pipeline import files
from pipeline.dedup import lsh_parameters
from pipeline.dedup_stage import AttachDuplicates
from pipeline.duplicate_ids import (
    DUPLICATE_IDS,
    FindDuplicateIds,
    log_duplicate_ids,
    no_duplicate_ids,
)
from pipeline.label import ESCAPE_CHARACTER, check_control_tokens, control_tokens
from pipeline.label_stage import LABEL_STAGE, LABELLED_SHARDS_SKIPPED, LabelJob, LabelShardFn
from pipeline.local import log_runner
from pipeline.locations import check_output_location
from pipeline.phf_layout import MergeFieldKinds, meta_fields, shard_field_kinds
from pipeline.read import list_input_files
from pipeline.refine import (
    REFINE_STAGE,
    REFINED_SHARDS_SKIPPED,
    RefineShardFn,
    merge_refine_stats,
    refine_plan,
    refinement_lines,
    refinement_summary,
    refinement_warnings,
)
from pipeline.run_record import describe_differences
from pipeline.score_stage import (
    METRICS_NAMESPACE,
    SCORE_STAGE,
    SCORED_SHARDS_SKIPPED,
    SCORER_SETUPS,
    ScoreFileFn,
)
from pipeline.shards import (
    DUPLICATES_DIR,
    PROGRESS_DIR,
    REFINED_DIR,
    REJECTED_DIR,
    SCORED_DIR,
    SHARDS_DIR,
)
from pipeline.thresholds import (
    ComputeQuantiles,
    bucket_edges,
    choose_threshold,
    fraction_warning,
    threshold_rules,
)
from schemas.config import LabelOptions, RunConfig
from scorers.base import Refinement, Scorer
from scorers.registry import create_scorers

logger = logging.getLogger(__name__)

THRESHOLDS_FILE = "thresholds.json"
MANIFEST_FILE = "manifest.json"
SPECIAL_TOKENS_FILE = "special_tokens.json"
RUN_FILE = "run.json"
# The input paths of a run, as a JSON list, read by the pipeline's first stage.
INPUT_FILES_FILE = "input_files.json"
SUMMARIES_DIR = "summaries"
REPORT_FILE = "report.html"

# Directories and files this tool writes into an output directory.
OUTPUT_DIRS = (SHARDS_DIR, SCORED_DIR, REFINED_DIR, REJECTED_DIR, DUPLICATES_DIR, PROGRESS_DIR)
OUTPUT_NAMES = (*OUTPUT_DIRS, THRESHOLDS_FILE, MANIFEST_FILE, SPECIAL_TOKENS_FILE)
PROGRESS_STAGES = (SCORE_STAGE, REFINE_STAGE, LABEL_STAGE)

REPORTED_PACKAGES = (
    "feedback-annotate", "apache-beam", "pyarrow", "spacy", "detoxify", "torch",
    "transformers", "presidio-analyzer", "pycodestyle", "alt-profanity-check", "scikit-learn",
    "datasketch",
)  # fmt: skip


class OutputConflictError(Exception):
    """The output directory contains the output of another run."""


def build_scorers(config: RunConfig) -> list[Scorer]:
    """Instantiate the configured scorers; raises for unknown names and missing packages."""
    return create_scorers(config.scorers, config.scorer_options)


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
    config: RunConfig,
    scorers: Sequence[Scorer],
    overwrite: bool,
    command: str = "run",
    input_files: Sequence[str] = (),
) -> None:
    """Record this run's fingerprint and input files in OUT, refusing another run's output."""
    record = {
        "fingerprint": config_fingerprint(config, scorers, command),
        "command": command,
        "config": config.to_dict(),
        "scorer_names": [scorer.name for scorer in scorers],
        "input_files": input_file_states(input_files),
    }
    claim_directory(config.output_dir, record, overwrite)


def input_file_states(paths: Sequence[str]) -> dict[str, dict[str, float]]:
    """Map each input file to its size in bytes and modification time, from the filesystem."""
    from apache_beam.io.filesystems import FileSystems

    states = {}
    for result in FileSystems.match(list(paths)):
        for metadata in result.metadata_list:
            states[metadata.path] = {
                "size": metadata.size_in_bytes,
                "modified": metadata.last_updated_in_seconds,
            }
    return states


def changed_inputs(stored: dict | None, current: dict | None) -> str | None:
    """Describe how the input files differ between two `input_file_states`, or None."""
    if stored is None or current is None or stored == current:
        return None
    groups = {
        "changed": [path for path in current if path in stored and current[path] != stored[path]],
        "added": [path for path in current if path not in stored],
        "removed": [path for path in stored if path not in current],
    }
    parts = []
    for kind, paths in groups.items():
        if paths:
            more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            parts.append(f"{kind}: {', '.join(paths[:3])}{more}")
    return "; ".join(parts)


def claim_directory(output_dir: str, record: dict, overwrite: bool) -> None:
    """Write `record` (with its "fingerprint") to OUT/_progress/run.json.

    A resumed run first deletes the temporary files that a killed attempt left.

    A run is not resumed when its input files changed since it began (a size or
    modification time differs, or a file was added or removed): duplicates and
    thresholds span all shards, so redoing the changed files' shards alone would
    leave the other shards wrong.

    Raises:
        OutputConflictError: OUT contains a run with another fingerprint or other
            input files, or output without a run record, and `overwrite` is False.
    """
    run_file = files.join(output_dir, PROGRESS_DIR, RUN_FILE)
    if overwrite:
        if files.exists(output_dir):
            _clear_output(output_dir)
    elif files.exists(run_file):
        stored = files.read_json(run_file)
        if stored.get("fingerprint") != record["fingerprint"]:
            raise OutputConflictError(other_run_message(output_dir, stored, record))
        changes = changed_inputs(stored.get("input_files"), record.get("input_files"))
        if changes:
            raise OutputConflictError(
                f"{output_dir} contains a run whose input files changed since it began "
                f"({changes}); pass --overwrite to start it again, "
                "or choose another output directory"
            )
        logger.info("resuming the run in %s; completed shards are skipped", output_dir)
        _remove_temporary_files(output_dir)
    elif _existing_output(output_dir):
        # Shards without a run record cannot be distinguished from this run's.
        raise OutputConflictError(
            f"{output_dir} contains {_existing_output(output_dir)} but no record of the run "
            "that wrote it; choose another output directory, or pass --overwrite to replace it"
        )
    files.write_json(run_file, record)


def other_run_message(output_dir: str, stored: dict, record: dict) -> str:
    """Name each recorded option or input that differs between `stored` and `record`."""
    differences = describe_differences(stored, record)
    found = f": {'; '.join(differences)}" if differences else ""
    return (
        f"{output_dir} contains the output of a run with other inputs or options{found}; "
        "choose another output directory, or pass --overwrite to replace it"
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

    for name in (*OUTPUT_NAMES, REPORT_FILE):
        path = files.join(output_dir, name)
        if FileSystems.exists(path):
            FileSystems.delete([path])
    files.remove_temporary_files(output_dir)


def merge_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for item in counts:
        total.update(item)
    return dict(total)


def prepare_label_job(
    output_dir: str, options: LabelOptions, stamp: dict, id_field: str
) -> LabelJob:
    """Check the label options against the run's scorers and bundle what labelling needs.

    Raises:
        ValueError: an option names a scorer that is not in the run, the
            layout's scorer is missing or ambiguous, or the control tokens are
            ambiguous.
    """
    aliases = {scorer["name"]: scorer["alias"] for scorer in stamp["scorers"]}
    threshold_rules(options, aliases)
    check_control_tokens(control_tokens(options, aliases))
    layout_scorer = None
    if options.layout == "phf":
        layout_scorer = _layout_scorer(options.layout_scorer, aliases)
    stamp = dict(
        stamp,
        good_token=options.good_token,
        bad_token=options.bad_token,
        layout_scorer=layout_scorer,
        special_tokens=list_special_tokens(options, aliases),
    )
    return LabelJob(output_dir, options, aliases, stamp, layout_scorer, id_field)


def _layout_scorer(requested: str | None, aliases: dict[str, str]) -> str:
    if requested is None and len(aliases) == 1:
        return next(iter(aliases))
    if requested is None:
        raise ValueError(
            "--layout phf writes one scorer; pass --scorer with one of "
            f"{', '.join(aliases.values())}"
        )
    for name, alias in aliases.items():
        if requested in (name, alias):
            return name
    raise ValueError(
        f"--scorer {requested!r} is not in this run; scorers in the run: "
        f"{', '.join(aliases.values())}"
    )


def list_special_tokens(options: LabelOptions, aliases: dict[str, str]) -> dict[str, Any]:
    """Describe for special_tokens.json every control token and how the text was escaped."""
    return {
        "additional_special_tokens": control_tokens(options, aliases),
        "good_token": options.good_token,
        "bad_token": options.bad_token,
        "document_token": options.document_token,
        "token_mode": options.token_mode,
        "escape_character": ESCAPE_CHARACTER,
    }


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
    stamp = provenance(config, scorers)
    job = prepare_label_job(config.output_dir, config.label, stamp, config.read.id_field)
    scored = build_score_stages(pipeline, config, scorers, input_files, stamp, progress_dir)
    score_counts = sum_score_counts(scored)
    damaged_inputs = (
        scored
        | "DamagedInputs" >> beam.FlatMap(lambda shard: shard.damaged_inputs)
        | "ListDamagedInputs" >> beam.combiners.ToList()
    )
    summary = run_summary(config, config_file, job.provenance, input_files)
    build_label_stages(
        pipeline, scored, score_counts, job, summary, damaged_inputs, scorer_refinements(scorers)
    )


def scorer_refinements(scorers: Sequence[Scorer]) -> dict[str, Refinement]:
    """Return {scorer name: refinement} for the scorers whose scores are not exact."""
    refinements = {scorer.name: scorer.refinement() for scorer in scorers}
    return {name: refinement for name, refinement in refinements.items() if refinement}


def build_score_stages(
    pipeline: beam.Pipeline,
    config: RunConfig,
    scorers: Sequence[Scorer],
    input_files: list[str],
    stamp: dict[str, Any],
    progress_dir: str | None = None,
) -> beam.PCollection:
    """Add duplicate removal and scoring; returns the ShardResult of every scored shard.

    The input paths travel in a file under OUT/_progress/, not in the job graph,
    whose size runners limit. Dataflow's request quotas page sets 10 MB, which a
    million paths would exceed.
    """
    bands, rows = dedup_bands(config)
    listing = files.join(config.output_dir, PROGRESS_DIR, INPUT_FILES_FILE)
    files.write_json(listing, list(input_files))
    return (
        pipeline
        | "InputListing" >> beam.Create([listing])
        | "InputFiles" >> beam.FlatMap(files.read_json)
        | "SpreadInputFiles" >> beam.Reshuffle()
        | "Duplicates" >> AttachDuplicates(config.read, config.dedup, bands, rows)
        | "SpreadFiles" >> beam.Reshuffle()
        | "Score" >> beam.ParDo(ScoreFileFn(config, scorers, stamp, progress_dir))
    )


def sum_score_counts(scored: beam.PCollection) -> beam.PCollection:
    """Sum the counts of all scored shards into one dict."""
    return (
        scored
        | "ScoreCounts" >> beam.Map(lambda shard: shard.counts)
        | "SumScoreCounts" >> beam.CombineGlobally(merge_counts)
    )


def run_summary(
    config: RunConfig, config_file: str | None, stamp: dict[str, Any], input_files: list[str]
) -> dict[str, Any]:
    """Collect the config, provenance, start time and input file count for the manifest."""
    bands, rows = dedup_bands(config)
    return {
        "config": config.to_dict(),
        "config_file": config_file,
        "provenance": stamp,
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "input_files": len(input_files),
        "dedup_lsh": {"bands": bands, "rows": rows} if config.dedup.method == "minhash" else None,
    }


def dedup_bands(config: RunConfig) -> tuple[int, int]:
    """Return the LSH (bands, rows per band) of a ``minhash`` run, or (0, 0) for other methods.

    Raises:
        ValueError: the threshold and permutations give fewer than 2 bands.
    """
    if config.dedup.method != "minhash":
        return 0, 0
    return lsh_parameters(config.dedup)


def build_label_stages(
    pipeline: beam.Pipeline,
    scored: beam.PCollection,
    upstream_counts: beam.PCollection,
    job: LabelJob,
    summary: dict,
    damaged_inputs: beam.PCollection | None = None,
    refinements: Mapping[str, Refinement] | None = None,
) -> None:
    """Add the threshold, refinement, label and run-file stages for the scored shards.

    Args:
        pipeline: the pipeline being built.
        scored: ShardResult of every scored shard of the run.
        upstream_counts: one dict of the counts of the stages before labelling
            (documents read, rejected, removed as duplicates).
        job: output directory, options and scorers.
        summary: config, provenance, start time and number of input files,
            for the manifest.
        damaged_inputs: one list of the damaged input files found upstream, or None.
        refinements: scorer name -> refinement, for the scorers run in reduced
            precision (`pipeline.refine`); None or empty for none.
    """
    rules = threshold_rules(job.options, job.scorer_aliases)
    refined = None
    if refinements:
        scored, refined = build_refine_stages(pipeline, scored, rules, job, refinements)
    paths = scored | "ScoredPaths" >> beam.Map(lambda shard: shard.path)
    quantiles = paths | "Thresholds" >> ComputeQuantiles(
        job.scorer_names,
        job.options.percentile_weight == "characters",
        job.options.quantile_epsilon,
        summaries_dir(job.output_dir),
    )
    side_inputs = {"quantiles": beam.pvalue.AsDict(quantiles)}
    if job.options.layout == "phf":
        kinds = (
            paths
            | "MetaFieldKinds" >> beam.FlatMap(shard_field_kinds)
            | "MergeMetaFieldKinds" >> beam.CombineGlobally(MergeFieldKinds())
        )
        side_inputs["field_kinds"] = beam.pvalue.AsSingleton(kinds)
    duplicate_ids = paths | "DuplicateIds" >> FindDuplicateIds()
    plan = (
        pipeline
        | "PlanTrigger" >> beam.Create([None])
        | "LabelPlan" >> beam.Map(plan_labels, rules, job, **side_inputs)
    )
    labelled = scored | "Label" >> beam.ParDo(LabelShardFn(job), plan=beam.pvalue.AsSingleton(plan))
    label_counts = labelled | "SumLabelCounts" >> beam.CombineGlobally(merge_counts)
    summary = dict(summary, threshold_rules=rules)
    if damaged_inputs is None:
        damaged_inputs = pipeline | "NoDamagedInputs" >> beam.Create([[]])
    if refined is None:
        refined = pipeline | "NoRefinement" >> beam.Create([None])
    _ = (
        pipeline
        | "RunFilesTrigger" >> beam.Create([summary])
        | "WriteRunFiles"
        >> beam.Map(
            write_run_files,
            upstream_counts=beam.pvalue.AsSingleton(upstream_counts),
            label_counts=beam.pvalue.AsSingleton(label_counts),
            plan=beam.pvalue.AsSingleton(plan),
            damaged_inputs=beam.pvalue.AsSingleton(damaged_inputs),
            duplicate_ids=beam.pvalue.AsSingleton(duplicate_ids),
            refined=beam.pvalue.AsSingleton(refined),
        )
    )


def build_refine_stages(
    pipeline: beam.Pipeline,
    scored: beam.PCollection,
    rules: dict,
    job: LabelJob,
    refinements: Mapping[str, Refinement],
) -> tuple[beam.PCollection, beam.PCollection]:
    """Add the thresholds of the unrefined scores and the refinement pass.

    Returns the ShardResult of every shard after refinement, and one dict with
    the refine plan and the merged RefineStats, for the manifest.
    """
    quantiles = (
        scored
        | "UnrefinedPaths" >> beam.Map(lambda shard: shard.path)
        | "UnrefinedThresholds"
        >> ComputeQuantiles(
            list(refinements),
            job.options.percentile_weight == "characters",
            job.options.quantile_epsilon,
            files.join(summaries_dir(job.output_dir), "unrefined"),
        )
    )
    unrefined = {name: rules[name] for name in refinements}
    # The thresholds and, in bucket mode, the bucket edges of the unrefined scores.
    cuts = (
        pipeline
        | "RefineTrigger" >> beam.Create([None])
        | "RefineThresholds"
        >> beam.Map(plan_labels, unrefined, job, quantiles=beam.pvalue.AsDict(quantiles))
    )
    thresholds = cuts | "RefineCutThresholds" >> beam.Map(lambda plan: plan["thresholds"])
    edges = cuts | "RefineCutEdges" >> beam.Map(_refined_bucket_edges, job.options.token_mode)
    refined = scored | "Refine" >> beam.ParDo(
        RefineShardFn(job.output_dir, refinements),
        thresholds=beam.pvalue.AsSingleton(thresholds),
        bucket_edges=beam.pvalue.AsSingleton(edges),
    )
    stats = (
        refined
        | "RefineStats" >> beam.Map(lambda shard: shard.stats)
        | "MergeRefineStats" >> beam.CombineGlobally(merge_refine_stats)
        | "RefinePlan"
        >> beam.Map(
            lambda merged, thresholds, edges: {
                "plan": refine_plan(refinements, thresholds, edges),
                "stats": merged,
            },
            thresholds=beam.pvalue.AsSingleton(thresholds),
            edges=beam.pvalue.AsSingleton(edges),
        )
    )
    return refined | "RefinedShards" >> beam.Map(lambda shard: shard.shard), stats


def _refined_bucket_edges(plan: dict, token_mode: str) -> dict[str, list[float]] | None:
    """Return the plan's bucket edges in bucket mode, where tokens depend on them; else None."""
    return plan["bucket_edges"] if token_mode == "bucket" else None


def plan_labels(
    _: None, rules: dict, job: LabelJob, quantiles: dict, field_kinds: dict | None = None
) -> dict:
    """Derive the thresholds, bucket edges and phf meta struct from the run's quantiles."""
    thresholds = {
        name: choose_threshold(rule, quantiles.get(name, [])) for name, rule in rules.items()
    }
    edges = {}
    if job.options.token_mode == "bucket":
        edges = {name: bucket_edges(quantiles.get(name, []), job.options.buckets) for name in rules}
    fields = None if field_kinds is None else meta_fields(field_kinds, job.id_field)
    return {"thresholds": thresholds, "bucket_edges": edges, "meta_fields": fields}


def write_run_files(
    summary: dict,
    upstream_counts: dict,
    label_counts: dict,
    plan: dict,
    damaged_inputs: Sequence[dict] = (),
    duplicate_ids: dict | None = None,
    refined: dict | None = None,
) -> dict:
    """Write thresholds.json, special_tokens.json and manifest.json; returns the manifest.

    `damaged_inputs` lists the compressed input files found damaged, each with
    input_file, lines_read and error. `duplicate_ids` describes the ids that
    more than one document has (`pipeline.duplicate_ids.summarize`). `refined`
    holds the refine plan and stats of a run with refinement (`build_refine_stages`).
    """
    output_dir = summary["config"]["output_dir"]
    options = summary["config"]["label"]
    table = thresholds_table(
        summary["threshold_rules"], plan, label_counts, options["percentile_weight"]
    )
    files.write_json(files.join(output_dir, THRESHOLDS_FILE), table)
    tokens = summary["provenance"]["special_tokens"]
    files.write_json(files.join(output_dir, SPECIAL_TOKENS_FILE), tokens)

    counts = merge_counts([upstream_counts, label_counts, duplicate_id_counts(duplicate_ids)])
    manifest = {
        "started_at": summary["started_at"],
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "config": summary["config"],
        "config_file": summary.get("config_file"),
        "scorers": summary["provenance"]["scorers"],
        "packages": summary["provenance"]["packages"],
        "input_files": summary["input_files"],
        "dedup_lsh": summary.get("dedup_lsh"),
        "counts": accounting(counts),
        "all_counts": dict(sorted(counts.items())),
        "damaged_inputs": sorted(damaged_inputs, key=lambda entry: entry["input_file"]),
        DUPLICATE_IDS: duplicate_ids or no_duplicate_ids(),
        "label_counts": dict(sorted(label_counts.items())),
        "layout": {
            "name": options["layout"],
            "scorer": summary["provenance"]["layout_scorer"],
            "meta_fields": plan["meta_fields"],
        },
    }
    if refined is not None:
        aliases = {scorer["name"]: scorer["alias"] for scorer in manifest["scorers"]}
        manifest["refinement"] = refinement_summary(
            refined["plan"], refined["stats"], plan["thresholds"], aliases, plan["bucket_edges"]
        )
    if "relabelled_from" in summary:
        manifest["relabelled_from"] = summary["relabelled_from"]

    files.write_json(files.join(output_dir, MANIFEST_FILE), manifest)
    files.remove(summaries_dir(output_dir))
    return manifest


def duplicate_id_counts(duplicate_ids: dict | None) -> dict[str, int]:
    """Return {"duplicate_ids": N}, or {} when no id repeats, as counters that never fired."""
    if not duplicate_ids or not duplicate_ids["documents"]:
        return {}
    return {DUPLICATE_IDS: duplicate_ids["documents"]}


def summaries_dir(output_dir: str) -> str:
    """Directory of the percentile summaries, which are deleted once the run files exist."""
    return files.join(output_dir, PROGRESS_DIR, SUMMARIES_DIR)


def thresholds_table(rules: dict, plan: dict, label_counts: dict, weight: str) -> dict:
    """Tabulate per scorer the rule, the threshold found, and how many segments it labels good."""
    table = {}
    for name, rule in rules.items():
        scored = label_counts.get(f"scored_{name}", 0)
        characters = label_counts.get(f"scored_characters_{name}", 0)
        good = label_counts.get(f"good_{name}", 0)
        good_characters = label_counts.get(f"good_characters_{name}", 0)
        table[name] = {
            "percentile": rule["percentile"],
            "preset": rule["preset"],
            "percentile_weight": weight,
            "threshold": plan["thresholds"].get(name),
            "num_segments": scored,
            "num_characters": characters,
            "num_good": good,
            "fraction_good": good / scored if scored else None,
            "fraction_good_characters": good_characters / characters if characters else None,
        }
        if plan["bucket_edges"]:
            table[name]["bucket_edges"] = plan["bucket_edges"][name]
    return table


def log_refinement(manifest: dict) -> None:
    """Log what refinement did per scorer, and warn where the margin was too narrow."""
    summary = manifest.get("refinement", {})
    for line in refinement_lines(summary):
        logger.info("%s", line)
    for message in refinement_warnings(summary):
        logger.warning("%s", message)


def log_fraction_warnings(output_dir: str) -> None:
    """Warn for each scorer whose fraction labelled good is more than 1 point from its P."""
    table = files.read_json(files.join(output_dir, THRESHOLDS_FILE))
    for name, entry in table.items():
        message = fraction_warning(name, entry)
        if message:
            logger.warning("%s", message)


def accounting(
    counts: dict[str, int],
    output: str = "documents_written",
    segment_counts: Sequence[str] = ("segments_good", "segments_bad", "segments_blank"),
) -> dict[str, Any]:
    """Documents in and out; read = `output` + rejected + removed as duplicates.

    Args:
        counts: all counts of the run.
        output: the count of documents that reached the output of the pass.
        segment_counts: segment counts copied into the result.
    """
    read = counts.get("documents_read", 0)
    written = counts.get(output, 0)
    rejected = counts.get("documents_rejected", 0)
    duplicates = counts.get("documents_duplicates", 0)
    result = {
        "documents_read": read,
        output: written,
        "documents_rejected": rejected,
        "documents_duplicates": duplicates,
        "balanced": read == written + rejected + duplicates,
    }
    return result | {name: counts.get(name, 0) for name in segment_counts}


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
        OutputConflictError: the output directory contains the output of another run.
    """
    scorers = build_scorers(config)
    prepare_label_job(
        config.output_dir, config.label, provenance(config, scorers), config.read.id_field
    )

    def build(pipeline, config, scorers, input_files):
        build_pipeline(pipeline, config, scorers, input_files, progress_dir, config_file)

    run_pipeline(config, build, beam_args, runner, overwrite)
    log_fraction_warnings(config.output_dir)
    manifest = files.read_json(files.join(config.output_dir, MANIFEST_FILE))
    log_duplicate_ids(manifest)
    log_refinement(manifest)
    return manifest


def run_pipeline(
    config: RunConfig,
    build: Callable[[beam.Pipeline, RunConfig, Sequence[Scorer], list[str]], None],
    beam_args: Sequence[str] = (),
    runner: Any = None,
    overwrite: bool = False,
    command: str = "run",
) -> PipelineResult:
    """Check the inputs, claim the output directory, build the pipeline with `build` and run it.

    Returns Beam's result, whose counters count the loads of the scorer models
    and the completed shards that were skipped.

    Raises:
        ValueError: an invalid option, or an output directory that overlaps the
            input (OutputLocationError), found before any work starts.
        FileNotFoundError: no input file matches `config.inputs`.
        OutputConflictError: the output directory contains the output of another run.
    """
    scorers = build_scorers(config)
    dedup_bands(config)
    input_files = list_input_files(config.inputs)
    check_output_location(config.inputs, input_files, config.output_dir)
    claim_output_dir(config, scorers, overwrite, command, input_files)
    log_runner(runner)
    options = PipelineOptions(list(beam_args))
    logger.info("annotating %d input file(s) into %s", len(input_files), config.output_dir)
    message = idle_workers_warning(options, len(input_files))
    if message:
        logger.warning("%s", message)
    with beam.Pipeline(runner=runner, options=options) as pipeline:
        build(pipeline, config, scorers, input_files)
    # Leaving the block runs the pipeline to the end and stores its result.
    log_work_done(pipeline.result)
    return pipeline.result


def idle_workers_warning(options: PipelineOptions, input_files: int) -> str | None:
    """Return a warning when fewer input files than requested workers leave workers idle."""
    direct = options.view_as(DirectOptions).direct_num_workers
    worker_options = options.view_as(WorkerOptions)
    workers = max(
        direct if direct > 0 else (os.cpu_count() or 1),
        worker_options.num_workers or 0,
        worker_options.max_num_workers or 0,
    )
    if input_files >= workers:
        return None
    return (
        f"{input_files} input file(s) for {workers} workers: one worker reads and scores "
        f"each input file, so {workers - input_files} worker(s) will have nothing to do. "
        f"Split the input into at least {workers} files (for example with split -n l/{workers}) "
        "to use every worker."
    )


def log_work_done(result: PipelineResult) -> None:
    """Log how often scorer models were loaded and how many completed shards were skipped.

    The loads include those of the full-precision scorers of the refinement pass.
    """
    counters = work_counters(result)
    logger.info(
        "scorer models were loaded %d time(s); %d scored, %d refined and %d labelled "
        "shard(s) were complete already and were skipped",
        counters.get(SCORER_SETUPS, 0),
        counters.get(SCORED_SHARDS_SKIPPED, 0),
        counters.get(REFINED_SHARDS_SKIPPED, 0),
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
