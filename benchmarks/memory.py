"""Peak memory of `annotate run` on corpora of different sizes.

For each size N the script writes a corpus of N documents by repeating
data/sample.jsonl with new ids (``<id>-r<k>``), runs ``annotate run`` on it in
a subprocess, and reports the peak resident set size (RSS) of the largest
process of that run: the child's ``ru_maxrss`` as ``os.wait4`` returns it, which
on Linux includes the child's own waited-for children (Beam's worker processes).

Usage::

    python benchmarks/memory.py --sizes 10000,100000 --workdir /tmp/annotate-memory

Every other argument is passed to ``annotate run`` (for example ``--scorers``,
``--docs-per-shard`` or Beam options).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample.jsonl"
DEFAULT_RUN_ARGS = [
    "--scorers", "toxicity_profanity,pii,code_style", "--docs-per-shard", "1000",
    "--no-report", "--no-progress",
]  # fmt: skip


def write_corpus(path: Path, documents: int) -> None:
    """Write `documents` records, repeating the bundled sample with new ids."""
    sample = [json.loads(line) for line in SAMPLE.read_text("utf-8").splitlines()]
    with path.open("w", encoding="utf-8") as stream:
        for index in range(documents):
            record = dict(sample[index % len(sample)])
            record["id"] = f"{record['id']}-r{index // len(sample)}"
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")


def measure(corpus: Path, out: Path, run_args: list[str]) -> dict:
    """Run `annotate run` on `corpus`; returns peak RSS in MiB, seconds and the manifest counts."""
    command = [sys.executable, "-m", "pipeline.cli", "-q", "run", str(corpus), str(out)]
    command += [*run_args, "--overwrite"]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    started = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.monotonic() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"annotate run failed on {corpus} with status {status}")
    counts = json.loads((out / "manifest.json").read_text())["counts"]
    return {
        "documents": counts["documents_read"],
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "seconds": round(seconds, 1),
        "documents_per_second": round(counts["documents_read"] / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000", help="Comma-separated corpus sizes.")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/annotate-memory"))
    args, run_args = parser.parse_known_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    python = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {python}")
    print(f"annotate run arguments: {' '.join(run_args or DEFAULT_RUN_ARGS)}")
    for size in (int(value) for value in args.sizes.split(",")):
        corpus = args.workdir / f"corpus-{size}.jsonl"
        if not corpus.exists():
            write_corpus(corpus, size)
        result = measure(corpus, args.workdir / f"out-{size}", run_args or DEFAULT_RUN_ARGS)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
