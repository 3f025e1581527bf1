"""Local execution on Beam's FnApiRunner, with its servers on loopback only."""

from __future__ import annotations

import logging

from apache_beam.portability import python_urns
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
# The worker module in the command that Beam 2.77 builds for multi-process runs, and ours.
BEAM_WORKER_MODULE = "-m apache_beam.runners.worker.sdk_worker_main"
WORKER_MODULE = "-m pipeline.worker_main"


class LocalRunner(FnApiRunner):
    """Beam's FnApiRunner whose worker processes stop at once on Ctrl-C.

    Ctrl-C on a terminal sends SIGINT to the whole process group, which
    includes the worker processes of ``--direct_running_mode
    multi_processing``. Beam's workers would each print a traceback and tear
    their DoFns down while a bundle still runs. `pipeline.worker_main` starts
    the same worker with SIGINT's default action, so the system ends it.

    NOTE: SIGINT sent to the launcher alone (``kill -INT``) does not reach the
    workers, so Beam shuts them down as described in `ScoreFileFn.teardown`.
    """

    def run_via_runner_api(self, pipeline_proto, options):
        stop_workers_on_sigint(pipeline_proto)
        return super().run_via_runner_api(pipeline_proto, options)


def stop_workers_on_sigint(pipeline_proto) -> None:
    """Start the subprocess workers of `pipeline_proto` through `pipeline.worker_main`.

    A subprocess environment's payload is the worker's command line (UTF-8).
    A command without Beam's worker module is left as it is.
    """
    for environment in pipeline_proto.components.environments.values():
        if environment.urn != python_urns.SUBPROCESS_SDK:
            continue
        command = environment.payload.decode("utf-8")
        if command.endswith(BEAM_WORKER_MODULE):
            command = command.removesuffix(BEAM_WORKER_MODULE) + WORKER_MODULE
            environment.payload = command.encode("utf-8")


def local_runner() -> LocalRunner:
    """Return Beam's FnApiRunner, the batch engine behind DirectRunner.

    Beam 2.77's DirectRunner first tries to download and start the Prism
    runner binary, which fails offline and costs seconds online. The
    FnApiRunner needs no download and honours --direct_num_workers and
    --direct_running_mode.
    """
    bind_grpc_servers_to_loopback()
    return LocalRunner()


def log_runner(runner: object) -> None:
    """Log that the run is local when `runner` is the FnApiRunner of `local_runner`."""
    if isinstance(runner, FnApiRunner):
        logger.info(
            "running locally on Beam's FnApiRunner (DirectRunner's batch engine, no download); "
            "pass --runner PrismRunner to use Prism"
        )


def bind_grpc_servers_to_loopback() -> None:
    """Make gRPC servers created in this process listen on 127.0.0.1 instead of all interfaces.

    In multi-process mode the FnApiRunner (Beam 2.77) starts its control,
    data, state and logging servers on ``[::]``, reachable from the network,
    although its workers connect through ``localhost``.
    """
    import grpc

    if getattr(grpc.server, "loopback_only", False):
        return
    create_server = grpc.server

    def create_loopback_server(*args, **kwargs):
        server = create_server(*args, **kwargs)
        add_port = server.add_insecure_port

        def add_loopback_port(address: str) -> int:
            host, _, port = address.rpartition(":")
            if host in ("[::]", "0.0.0.0", ""):
                address = f"{LOOPBACK}:{port}"
            return add_port(address)

        server.add_insecure_port = add_loopback_port
        return server

    create_loopback_server.loopback_only = True
    grpc.server = create_loopback_server
