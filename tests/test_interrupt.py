"""Ctrl-C handling: the one-line exit, Beam's log records, workers and torn-down DoFns.

The end-to-end runs that are interrupted and then resumed are in tests/test_resume.py.
"""

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
import typer

from pipeline.cli.interrupt import (
    INTERRUPTED_EXIT_CODE,
    ExitOnInterrupt,
    Interrupted,
    interrupted_message,
)
from pipeline.local import stop_workers_on_sigint
from tests.conftest import write_jsonl
from tests.test_resume import restore_sigint


@pytest.fixture(autouse=True)
def default_sigint_handler():
    """Give each test Python's own SIGINT handler, which `ExitOnInterrupt` replaces.

    A shell starts a background job with SIGINT ignored, and Python then keeps it ignored.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    handler = signal.signal(signal.SIGINT, previous)
    assert handler is signal.default_int_handler, "ExitOnInterrupt left its handler"


def interrupt_self():
    """Send SIGINT to this process and wait for the handler to raise."""
    os.kill(os.getpid(), signal.SIGINT)
    while True:
        time.sleep(0.01)


def test_sigint_exits_130_with_one_line(capsys):
    with pytest.raises(typer.Exit) as exit_info:
        with ExitOnInterrupt("annotate run", "out/sample"):
            interrupt_self()
    assert exit_info.value.exit_code == INTERRUPTED_EXIT_CODE
    assert capsys.readouterr().err == interrupted_message("annotate run", "out/sample") + "\n"


def test_sigint_message_names_command_and_output():
    message = interrupted_message("annotate label", "out/relabelled")
    assert message.startswith("annotate: interrupted: 'annotate label' stopped before")
    assert "Run the same command again to resume it" in message
    assert "the shards completed in out/relabelled are kept and skipped" in message
    assert "\n" not in message


def test_sigint_wrapped_by_beam_still_exits_130(capsys):
    with pytest.raises(typer.Exit) as exit_info:
        with ExitOnInterrupt("annotate score", "out"):
            try:
                interrupt_self()
            except KeyboardInterrupt as error:
                # What Beam 2.77 raises when a DoFn raises KeyboardInterrupt().
                raise RuntimeError("KeyboardInterrupt [while running 'Score']") from error
    assert exit_info.value.exit_code == INTERRUPTED_EXIT_CODE
    assert "Traceback" not in capsys.readouterr().err


def test_sigint_handler_raises_keyboard_interrupt_subclass():
    with pytest.raises(typer.Exit):
        with ExitOnInterrupt("annotate run", "out"):
            try:
                interrupt_self()
            except KeyboardInterrupt as error:
                raised = error
                raise
    assert type(raised) is Interrupted


def test_verbose_sigint_prints_traceback(capsys):
    with pytest.raises(typer.Exit):
        with ExitOnInterrupt("annotate run", "out", verbose=1):
            interrupt_self()
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert "in interrupt_self" in err
    assert err.endswith(interrupted_message("annotate run", "out") + "\n")


def test_other_errors_pass_through(capsys):
    with pytest.raises(ValueError, match="not an interrupt"):
        with ExitOnInterrupt("annotate run", "out"):
            raise ValueError("not an interrupt")
    assert capsys.readouterr().err == ""


def test_keyboard_interrupt_without_signal_exits_130():
    with pytest.raises(typer.Exit) as exit_info:
        with ExitOnInterrupt("annotate run", "out"):
            raise KeyboardInterrupt
    assert exit_info.value.exit_code == INTERRUPTED_EXIT_CODE


def fail_in_thread() -> None:
    def fail():
        raise RuntimeError("Worker subprocess exited with return code -2")

    thread = threading.Thread(target=fail, name="run_worker")
    thread.start()
    thread.join()


def test_thread_errors_after_sigint_are_hidden(capsys):
    with pytest.raises(typer.Exit):
        with ExitOnInterrupt("annotate run", "out"):
            try:
                interrupt_self()
            finally:
                fail_in_thread()
    assert capsys.readouterr().err == interrupted_message("annotate run", "out") + "\n"


@contextmanager
def default_thread_hook():
    """Python's own threading.excepthook, which prints, in place of pytest's, which warns."""
    saved = threading.excepthook
    threading.excepthook = threading.__excepthook__
    try:
        yield
    finally:
        threading.excepthook = saved


def test_thread_errors_before_sigint_are_shown(capsys):
    with default_thread_hook(), ExitOnInterrupt("annotate run", "out"):
        fail_in_thread()
    err = capsys.readouterr().err
    assert "Exception in thread run_worker" in err
    assert "RuntimeError: Worker subprocess exited with return code -2" in err


def test_verbose_shows_thread_errors_after_sigint(capsys):
    with pytest.raises(typer.Exit), default_thread_hook():
        with ExitOnInterrupt("annotate run", "out", verbose=1):
            try:
                interrupt_self()
            finally:
                fail_in_thread()
    assert "Exception in thread run_worker" in capsys.readouterr().err


def log_record(error: BaseException | None) -> logging.LogRecord:
    exc_info = (type(error), error, None) if error else None
    return logging.LogRecord(
        "apache_beam.runners.common", logging.ERROR, __file__, 1, "failed", (), exc_info
    )


def test_tracebacks_after_sigint_are_not_logged():
    watch = ExitOnInterrupt("annotate run", "out")
    assert watch.filter(log_record(RuntimeError("scorer failed")))
    watch.received.set()
    assert not watch.filter(log_record(Interrupted("interrupted by SIGINT")))
    assert not watch.filter(log_record(RuntimeError("Worker subprocess exited")))
    assert watch.filter(log_record(None))


def test_tracebacks_after_sigint_are_logged_with_verbose():
    watch = ExitOnInterrupt("annotate run", "out", verbose=1)
    watch.received.set()
    assert watch.filter(log_record(RuntimeError("Worker subprocess exited")))


def test_sigint_drops_beam_log_record(capsys):
    beam_logger = logging.getLogger("apache_beam.runners.common")
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    root.addHandler(handler)
    try:
        with pytest.raises(typer.Exit), ExitOnInterrupt("annotate run", "out"):
            try:
                interrupt_self()
            except KeyboardInterrupt as error:
                # As Beam 2.77 logs an exception in a DoFn before it re-raises it.
                beam_logger.error("KeyboardInterrupt [while running 'Score']", exc_info=error)
                raise
        assert handler.filters == []
    finally:
        root.removeHandler(handler)
    assert capsys.readouterr().err == interrupted_message("annotate run", "out") + "\n"


def subprocess_pipeline_proto(command: str):
    import apache_beam as beam
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    pipeline = beam.Pipeline()
    _ = pipeline | beam.Create([1]) | beam.Map(str)
    environment = SubprocessSDKEnvironment.from_command_string(command)
    return pipeline.to_runner_api(default_environment=environment)


def test_worker_command_runs_our_worker_module():
    from apache_beam.portability import python_urns

    beam_command = f"{sys.executable} -m apache_beam.runners.worker.sdk_worker_main"
    proto = subprocess_pipeline_proto(beam_command)
    stop_workers_on_sigint(proto)
    stop_workers_on_sigint(proto)
    commands = [
        environment.payload.decode()
        for environment in proto.components.environments.values()
        if environment.urn == python_urns.SUBPROCESS_SDK
    ]
    assert commands == [f"{sys.executable} -m pipeline.worker_main"]


def test_other_worker_command_is_kept():
    from apache_beam.portability import python_urns

    proto = subprocess_pipeline_proto("my-worker --port 5")
    stop_workers_on_sigint(proto)
    [environment] = [
        environment
        for environment in proto.components.environments.values()
        if environment.urn == python_urns.SUBPROCESS_SDK
    ]
    assert environment.payload == b"my-worker --port 5"


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")
def test_worker_module_dies_of_sigint():
    # Beam's worker needs a runner to connect to, so a stand-in replaces it: it
    # reports the SIGINT action and sends itself SIGINT, which must end the process.
    probe = (
        "import os, runpy, signal, sys, time\n"
        "run_worker_main = runpy.run_module\n"
        "def beam_worker(name, run_name, alter_sys):\n"
        "    print(name, signal.getsignal(signal.SIGINT) == signal.SIG_DFL, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(60)\n"
        "    print('still running', flush=True)\n"
        "runpy.run_module = beam_worker\n"
        "run_worker_main('pipeline.worker_main', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, preexec_fn=restore_sigint
    )
    assert result.returncode == -signal.SIGINT
    assert result.stdout.decode() == "apache_beam.runners.worker.sdk_worker_main True\n"
    assert result.stderr.decode() == ""


def test_torn_down_scoring_leaves_no_shard(tmp_path):
    from pipeline.run import build_scorers, provenance
    from pipeline.score_stage import ScoreFileFn, WorkerShutdownError
    from schemas.config import RunConfig

    records = [{"id": str(n), "text": f"x = {n}\n", "lang": "python"} for n in range(5)]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out"
    config = RunConfig(str(source), str(out), ("code_style",), batch_documents=2)
    scorers = build_scorers(config)
    score_fn = ScoreFileFn(config, scorers, provenance(config, scorers))
    score_fn.setup()
    score_batch = score_fn._scorer.score
    batches = []

    def score_then_tear_down(documents):
        batches.append(len(documents))
        scored = score_batch(documents)
        if len(batches) == 2:
            # As Beam's worker does at shutdown, from another thread, during a bundle.
            score_fn.teardown()
        return scored

    score_fn._scorer.score = score_then_tear_down
    with pytest.raises(WorkerShutdownError, match="torn down while shard"):
        list(score_fn.process((str(source), {})))
    assert batches == [2, 2]
    assert [path.name for path in out.rglob("*") if path.is_file()] == []
