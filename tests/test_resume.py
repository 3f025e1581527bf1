"""A run killed with SIGKILL at any point and run again gives the output of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO, sample_records, write_jsonl

SCORERS = "toxicity_profanity,code_style"


def command(inputs: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "pipeline.cli", "-q", "run", str(inputs), str(out),
        "--scorers", SCORERS, "--docs-per-shard", "2", "--percentile", "code_style=50",
    ]  # fmt: skip


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_and_kill_when(args: list[str], ready) -> None:
    """Start `args`, poll the output until `ready()` returns True, then SIGKILL the process."""
    process = subprocess.Popen(args, env=environment(), stdout=subprocess.DEVNULL)
    try:
        while process.poll() is None and not ready():
            time.sleep(0.002)
        finished_first = process.poll() is not None
        process.kill()
    finally:
        process.wait()
    assert not finished_first, "the run ended before the kill point was reached"
    assert process.returncode == -signal.SIGKILL


def marker_names(out: Path, stage: str) -> set[str]:
    directory = out / "_progress" / stage
    return {path.name for path in directory.glob("*.json")} if directory.exists() else set()


def temporary_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob(".*.tmp"))


def file_stamps(directory: Path) -> dict[str, tuple[int, int]]:
    """Inode and modification time of each shard, to tell whether a rerun rewrote it."""
    return {
        path.name: (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in directory.glob("*.parquet")
    }


def output_content(out: Path) -> dict:
    """Everything that must match between runs: rows, thresholds, counts, rejections."""
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "shards": {p.name: pq.read_table(p).to_pylist() for p in (out / "shards").glob("*")},
        "scored": {p.name: pq.read_table(p).to_pylist() for p in (out / "scored").glob("*")},
        "rejected": {p.name: p.read_text() for p in (out / "rejected").glob("*")},
        "thresholds": json.loads((out / "thresholds.json").read_text()),
        "counts": manifest["counts"],
        "all_counts": manifest["all_counts"],
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    records = sample_records(("benign", "code", "offensive", "mixed"), 4)
    records.insert(5, {"id": "broken", "text": None})
    # A second document with the first one's id, which the resumed run must count too.
    records.append({"id": records[0]["id"], "text": "Another document with the same id."})
    inputs = root / "in"
    inputs.mkdir()
    for index in range(3):
        write_jsonl(inputs / f"part-{index}.jsonl", records[index::3])
    reference = root / "reference"
    result = subprocess.run(command(inputs, reference), env=environment(), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    return inputs, reference


def test_killed_run_resumes_to_same_output(corpus, tmp_path):
    inputs, reference = corpus
    out = tmp_path / "out"
    args = command(inputs, out)

    run_and_kill_when(args, lambda: (out / "_progress" / "run.json").exists())
    run_and_kill_when(args, lambda: bool(temporary_files(out / "scored")))
    run_and_kill_when(args, lambda: len(marker_names(out, "score")) >= 2)
    scored_before = file_stamps(out / "scored")
    scored_markers = marker_names(out, "score")
    assert scored_markers

    run_and_kill_when(args, lambda: len(marker_names(out, "label")) >= 1)
    assert not (out / "manifest.json").exists()
    scored_after = file_stamps(out / "scored")
    for name in scored_markers:
        shard = name.removesuffix(".json") + ".parquet"
        assert scored_after[shard] == scored_before[shard], f"{shard} was scored twice"
    labelled_before = file_stamps(out / "shards")
    label_markers = marker_names(out, "label")

    result = subprocess.run(args, env=environment(), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    labelled_after = file_stamps(out / "shards")
    for name in label_markers:
        shard = name.removesuffix(".json") + ".parquet"
        assert labelled_after[shard] == labelled_before[shard], f"{shard} was labelled twice"
    assert temporary_files(out) == []
    assert not (out / "_progress" / "summaries").exists()
    assert output_content(reference)["all_counts"]["duplicate_ids"] == 1
    assert output_content(out) == output_content(reference)


def test_rerun_after_an_input_changed_is_refused(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    inputs = tmp_path / "in"
    inputs.mkdir()
    first = write_jsonl(inputs / "a.jsonl", [{"id": "a", "text": "x = 1\n", "lang": "python"}])
    write_jsonl(inputs / "b.jsonl", [{"id": "b", "text": "y = 2\n", "lang": "python"}])
    out = tmp_path / "out"
    args = ["run", str(inputs / "*.jsonl"), str(out), "--scorers", "code_style", "--no-report"]
    runner = CliRunner()
    assert runner.invoke(app, args).exit_code == 0
    with first.open("a") as stream:
        stream.write(json.dumps({"id": "new", "text": "z = 3\n", "lang": "python"}) + "\n")

    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert f"input files changed since it began (changed: {first})" in result.output
    args.append("--overwrite")
    assert runner.invoke(app, args).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["documents_written"] == 3


def test_changed_inputs_names_changed_added_and_removed_files():
    from pipeline.run import changed_inputs

    stored = {"a": {"size": 1, "modified": 5.0}, "b": {"size": 2, "modified": 5.0}}
    current = {"a": {"size": 1, "modified": 6.0}, "c": {"size": 3, "modified": 5.0}}
    assert changed_inputs(stored, current) == "changed: a; added: c; removed: b"
    assert changed_inputs(stored, dict(stored)) is None
    assert changed_inputs(None, current) is None
