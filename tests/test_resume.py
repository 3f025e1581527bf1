"""A run killed with SIGKILL or interrupted with Ctrl-C (SIGINT) and run again gives the
output of an uninterrupted run."""

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


def command(inputs: Path, out: Path, *options: str, quiet: bool = True) -> list[str]:
    """`annotate run` on the corpus, with `options` added to those of the run."""
    return [
        sys.executable, "-m", "pipeline.cli", *(["-q"] if quiet else []), "run",
        str(inputs), str(out), "--scorers", SCORERS, "--docs-per-shard", "2",
        "--percentile", "code_style=50", *options,
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


def run_and_interrupt_when(args: list[str], ready, log: Path) -> tuple[int, str]:
    """Start `args`, poll until `ready()` returns True, then press Ctrl-C.

    The process runs in a process group of its own, and SIGINT goes to the whole
    group, as a terminal sends it. Returns the exit code and stderr (a file, so
    that worker output cannot fill a pipe while the test polls). Asserts that no
    process of the group is left once the command has exited.
    """
    with log.open("w") as stderr:
        process = subprocess.Popen(
            args, env=environment(), stdout=subprocess.DEVNULL, stderr=stderr,
            start_new_session=True, preexec_fn=restore_sigint,
        )  # fmt: skip
        try:
            while process.poll() is None and not ready():
                time.sleep(0.002)
            finished_first = process.poll() is not None
            if not finished_first:
                os.killpg(process.pid, signal.SIGINT)
            process.wait()
            left = group_members(process.pid)
        finally:
            kill_group(process)
    assert not finished_first, "the run ended before the interrupt point was reached"
    assert left == [], f"processes left after the interrupt: {left}"
    return process.returncode, log.read_text()


def restore_sigint() -> None:
    """Undo a SIGINT that is ignored because the tests run as a background job of a shell."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def group_members(group: int) -> list[str]:
    """Command lines of the live processes in a process group, from /proc (Linux)."""
    members = []
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:  # the process ended while it was read
            continue
        # Fields after the command name: state, parent, process group.
        if int(fields[2]) == group and fields[0] != "Z":
            members.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return members


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL whatever is left of the process group that the test started."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


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


def shard_rows(directory: Path) -> dict[str, list[dict]]:
    return {path.name: pq.read_table(path).to_pylist() for path in directory.glob("*")}


def output_content(out: Path) -> dict:
    """Everything that must match between runs: rows, thresholds, counts, rejections."""
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "shards": shard_rows(out / "shards"),
        "scored": shard_rows(out / "scored"),
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


LINUX_PROC = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="lists processes from Linux /proc"
)


def assert_one_line_interrupt(code: int, stderr: str, command_name: str, out: Path) -> None:
    from pipeline.cli.interrupt import INTERRUPTED_EXIT_CODE, interrupted_message

    assert code == INTERRUPTED_EXIT_CODE, stderr
    assert stderr.splitlines()[-1] == interrupted_message(command_name, str(out))
    assert stderr.count("annotate: interrupted:") == 1
    assert "Traceback" not in stderr
    assert "KeyboardInterrupt" not in stderr


@LINUX_PROC
def test_interrupted_run_resumes_to_same_output(corpus, tmp_path):
    inputs, reference = corpus
    out = tmp_path / "out"
    # Without -q, as a user runs it: Beam's own error log of the interrupt is at stake.
    args = command(inputs, out, quiet=False)

    code, stderr = run_and_interrupt_when(
        args, lambda: len(marker_names(out, "score")) >= 1, tmp_path / "stderr.txt"
    )
    assert_one_line_interrupt(code, stderr, "annotate run", out)
    assert not (out / "manifest.json").exists()

    result = subprocess.run(args, env=environment(), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    assert temporary_files(out) == []
    assert output_content(out) == output_content(reference)


@LINUX_PROC
def test_interrupted_worker_processes_exit(corpus, tmp_path):
    inputs, reference = corpus
    out = tmp_path / "out"
    args = command(
        inputs, out, "--direct_num_workers", "2", "--direct_running_mode", "multi_processing"
    )

    code, stderr = run_and_interrupt_when(
        args, lambda: len(marker_names(out, "score")) >= 1, tmp_path / "stderr.txt"
    )
    assert_one_line_interrupt(code, stderr, "annotate run", out)

    result = subprocess.run(args, env=environment(), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    assert output_content(out) == output_content(reference)


@LINUX_PROC
def test_interrupted_score_resumes(corpus, tmp_path):
    inputs, reference = corpus
    out = tmp_path / "scored"
    args = command(inputs, out)
    args[args.index("run")] = "score"
    args = args[: args.index("--percentile")]

    code, stderr = run_and_interrupt_when(
        args, lambda: len(marker_names(out, "score")) >= 1, tmp_path / "stderr.txt"
    )
    assert_one_line_interrupt(code, stderr, "annotate score", out)

    result = subprocess.run(args, env=environment(), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    expected = output_content(reference)
    assert shard_rows(out / "scored") == expected["scored"]
    rejected = {path.name: path.read_text() for path in (out / "rejected").glob("*")}
    assert rejected == expected["rejected"]
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    assert counts["documents_scored"] == expected["counts"]["documents_written"]
    assert counts["documents_read"] == expected["counts"]["documents_read"]
    assert counts["balanced"] is True


@LINUX_PROC
def test_interrupted_label_resumes(corpus, tmp_path):
    _, reference = corpus
    out = tmp_path / "labelled"
    args = [
        sys.executable, "-m", "pipeline.cli", "-q", "label", str(reference), str(out),
        "--percentile", "code_style=50", "--no-report",
    ]  # fmt: skip

    code, stderr = run_and_interrupt_when(
        args, lambda: len(marker_names(out, "label")) >= 1, tmp_path / "stderr.txt"
    )
    assert_one_line_interrupt(code, stderr, "annotate label", out)

    result = subprocess.run(args, env=environment(), capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    labelled = json.loads((out / "manifest.json").read_text())
    expected = output_content(reference)
    assert shard_rows(out / "shards") == expected["shards"]
    assert json.loads((out / "thresholds.json").read_text()) == expected["thresholds"]
    assert labelled["counts"] == expected["counts"]
    # annotate label leaves out the counters that are 0, as manifest.json allows.
    expected_counts = {name: count for name, count in expected["all_counts"].items() if count}
    assert labelled["all_counts"] == expected_counts
