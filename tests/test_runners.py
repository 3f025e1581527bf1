"""The same job on Beam's local runner with one worker, with two worker processes, and
through PortableRunner against a local job service: the output must not change.

Beam 2.77 binds most gRPC servers of multi-process and portable execution to all
interfaces ("[::]:0"). The `loopback_only` fixture rewrites every bind to 127.0.0.1,
so the tests open no port to the network.
"""

import subprocess
import sys

import grpc._server
import pytest
from apache_beam.runners.portability import local_job_service
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline.run import build_pipeline, run_pipeline, work_counters
from schemas.config import LabelOptions, RunConfig
from tests.conftest import sample_records, write_jsonl
from tests.test_resume import environment, output_content

SCORERS = ("toxicity_profanity", "code_style")
INPUT_FILES = 3


@pytest.fixture
def loopback_only(monkeypatch):
    """Bind every gRPC server started during the test to 127.0.0.1; returns the addresses."""
    original = grpc._server._Server.add_insecure_port
    addresses = []

    def add_insecure_port(server, address):
        address = "127.0.0.1:" + address.rpartition(":")[2]
        addresses.append(address)
        return original(server, address)

    monkeypatch.setattr(grpc._server._Server, "add_insecure_port", add_insecure_port)
    return addresses


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("runners")
    records = sample_records(("benign", "code", "offensive"), 3)
    records.append({"id": "broken", "text": 3})
    for index in range(INPUT_FILES):
        write_jsonl(root / f"part-{index}.jsonl", records[index::INPUT_FILES])
    return root


def config(corpus, out) -> RunConfig:
    return RunConfig(
        inputs=str(corpus / "*.jsonl"),
        output_dir=str(out),
        scorers=SCORERS,
        docs_per_shard=2,
        label=LabelOptions(percentiles={"code_style": 50.0}),
    )


@pytest.fixture(scope="module")
def one_worker(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "out"
    result = run_pipeline(config(corpus, out), build_pipeline, runner=FnApiRunner())
    return output_content(out), work_counters(result)


def test_one_worker_loads_models_once(one_worker):
    _, counters = one_worker
    assert counters["scorer_setups"] == 1
    assert counters.get("scored_shards_skipped", 0) == 0


def test_two_worker_processes_same_output(corpus, one_worker, tmp_path, monkeypatch, loopback_only):
    workers = []
    original_init = local_job_service.SubprocessSdkWorker.__init__

    def count_worker(self, *args, **kwargs):
        workers.append(self)
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(local_job_service.SubprocessSdkWorker, "__init__", count_worker)
    beam_args = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
    out = tmp_path / "out"
    result = run_pipeline(config(corpus, out), build_pipeline, beam_args, FnApiRunner())

    assert len(workers) == 2
    counters = work_counters(result)
    # Models load in DoFn.setup, once per worker process that scores, never per file.
    assert 1 <= counters["scorer_setups"] <= 2
    assert output_content(out) == one_worker[0]
    assert loopback_only, "no gRPC server was started: the run did not use worker processes"


def test_portable_runner_same_output(corpus, one_worker, tmp_path, loopback_only):
    job_service = local_job_service.LocalJobServicer()
    port = job_service.start_grpc_server(0)
    try:
        beam_args = [
            "--runner", "PortableRunner", "--job_endpoint", f"127.0.0.1:{port}",
            "--environment_type", "LOOPBACK",
        ]  # fmt: skip
        out = tmp_path / "out"
        result = run_pipeline(config(corpus, out), build_pipeline, beam_args)
    finally:
        job_service.stop()
    assert work_counters(result)["scorer_setups"] == 1
    assert output_content(out) == one_worker[0]


def test_worker_processes_print_no_start_up_lines(corpus, tmp_path):
    # The CLI in a child process (its workers are started through pipeline.local, which
    # binds their servers to 127.0.0.1), so that the workers' stderr can be read.
    command = [
        sys.executable, "-m", "pipeline.cli", "run", str(corpus / "*.jsonl"),
        str(tmp_path / "out"), "--scorers", ",".join(SCORERS),
        "--percentile", "code_style=50", "--no-report",
        "--direct_num_workers", "2", "--direct_running_mode", "multi_processing",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, env=environment())

    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if line.startswith(("INFO:", "WARNING:"))] == []
    assert not [line for line in lines if "semi_persistent_directory" in line]
    assert any("annotating 3 input file(s)" in line for line in lines)


@pytest.mark.parametrize(
    ("beam_args", "input_files", "idle"),
    [
        (["--direct_num_workers", "2"], 1, 1),
        (["--max_num_workers", "8"], 3, 5),
        (["--direct_num_workers", "2"], 2, None),
        ([], 1, None),
    ],
)
def test_idle_workers_warning(beam_args, input_files, idle):
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipeline.run import idle_workers_warning

    message = idle_workers_warning(PipelineOptions(beam_args), input_files)

    if idle is None:
        assert message is None
    else:
        assert f"{idle} worker(s) will have nothing to do" in message
        assert message.startswith(f"{input_files} input file(s) for ")


def test_rerun_of_scored_shards_loads_no_model(corpus, tmp_path):
    out = tmp_path / "out"
    run_pipeline(config(corpus, out), build_pipeline, runner=FnApiRunner())

    result = run_pipeline(config(corpus, out), build_pipeline, runner=FnApiRunner())

    counters = work_counters(result)
    assert counters.get("scorer_setups", 0) == 0
    assert counters["scored_shards_skipped"] >= INPUT_FILES
