"""Local execution on Beam's FnApiRunner, with its servers on loopback only."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


def local_runner():
    """Return Beam's FnApiRunner, the batch engine behind DirectRunner.

    Beam 2.77's DirectRunner first tries to download and start the Prism
    runner binary, which fails offline and costs seconds online. The
    FnApiRunner needs no download and honours --direct_num_workers and
    --direct_running_mode.
    """
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    bind_grpc_servers_to_loopback()
    return FnApiRunner()


def log_runner(runner: object) -> None:
    """Log that the run is local when `runner` is the FnApiRunner of `local_runner`."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

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
