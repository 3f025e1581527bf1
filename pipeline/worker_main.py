"""Beam's SDK worker for local multi-process runs, stopped outright by Ctrl-C.

`pipeline.local.LocalRunner` starts its worker processes with ``python -m
pipeline.worker_main`` in place of ``python -m
apache_beam.runners.worker.sdk_worker_main``. Ctrl-C on a terminal sends SIGINT
to the launcher and to every worker. Under Python's own handler each worker
would raise KeyboardInterrupt, print a traceback and shut down while its
bundle still runs. With SIGINT's default action the system ends the worker at
once and silently, like SIGKILL, and the launcher reports the interruption.
"""

import runpy
import signal

if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    runpy.run_module(
        "apache_beam.runners.worker.sdk_worker_main", run_name="__main__", alter_sys=True
    )
