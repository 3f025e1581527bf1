"""Measure ``annotate run`` with 2 local worker processes against 1.

Both runs use Beam's DirectRunner in ``multi_processing`` mode (``--direct_num_workers 1``
and ``2``) and one torch thread per worker (``--toxicity-threads 1``), so that two workers
use two cores. A worker takes whole input files, so the input is cut into 4 files with
about equal prose tokens (of the toxicity model's tokenizer) and equal code characters. By
default the input is the whole sample, scored with toxicity (a random-weight BERT-base), PII
and code style; ``--english`` keeps the English prose and code documents only.

The fixed cost of each setting (interpreter start, imports, model loading in every worker,
Beam's graph) is measured with the same command on a single short document, and the
speed-up is given with and without it.

    PYTHONPATH=. python benchmarks/workers.py --checkpoint-dir /tmp/detoxify-base
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.harness import (
    ENGLISH_PROSE,
    detoxify_checkpoint,
    machine_description,
    markdown_table,
    run_annotate,
    sample_records,
    write_records,
)
from pipeline.segment import document_kind

FILES = 4
SCORERS = ("toxicity", "pii", "code_style")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    checkpoint, hf_dir = detoxify_checkpoint(args.checkpoint_dir)
    workdir = Path(tempfile.mkdtemp(prefix="workers-"))
    prefixes = ENGLISH_PROSE + ("code",) if args.english else None
    records = sample_records(prefixes)
    inputs = workdir / "in"
    for index, part in enumerate(split_evenly(records, FILES, prose_tokens(hf_dir))):
        write_records(part, inputs / f"part-{index}.jsonl")
    shortest = min(records, key=lambda r: len(json.loads(r)["text"]))
    first = write_records([shortest], workdir / "one" / "one.jsonl")

    print(f"Machine: {machine_description()}")
    print(f"Input: {len(records)} documents in {FILES} files; checkpoint {checkpoint}\n")
    rows, times = [], {}
    for workers in (1, 2):
        command = [
            "--scorers", ",".join(SCORERS), "--overwrite",
            "--toxicity-checkpoint", str(checkpoint), "--toxicity-hf-dir", str(hf_dir),
            "--toxicity-threads", "1", "--toxicity-device", "cpu",
            "--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing",
        ]  # fmt: skip
        total = run_annotate([str(inputs), str(workdir / f"out-{workers}"), *command])
        fixed = run_annotate([str(first), str(workdir / f"one-{workers}"), *command])
        times[workers] = (total, fixed)
        rows.append([str(workers), f"{total:.1f}", f"{fixed:.1f}", f"{total - fixed:.1f}"])
    print(markdown_table(["workers", "seconds", "fixed cost, s", "seconds less fixed"], rows))

    (one, one_fixed), (two, two_fixed) = times[1], times[2]
    print(
        f"\nSpeed-up of 2 workers: {one / two:.2f}x end to end, "
        f"{(one - one_fixed) / (two - two_fixed):.2f}x without fixed cost."
    )
    print(f"Machine at the end: {machine_description()}")


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--checkpoint-dir",
        help="directory of a checkpoint from scorers.testing (a base one is written there if "
        "missing), or a temporary directory when not given",
    )
    parser.add_argument(
        "--english",
        action="store_true",
        help="use the sample's English prose and code documents only, not the whole sample",
    )
    return parser.parse_args(argv)


def prose_tokens(hf_dir: Path) -> Callable[[str], int]:
    """Return a function counting the toxicity tokenizer's tokens of a text."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(hf_dir))
    return lambda text: len(tokenizer(text, add_special_tokens=False, verbose=False).input_ids)


def split_evenly(
    records: Sequence[bytes], parts: int, prose_size: Callable[[str], int] = len
) -> list[list[bytes]]:
    """Deal records to ``parts`` lists with about equal work of each kind.

    Prose and code are dealt apart, because a character of prose costs far more (toxicity)
    than a character of code. A prose text weighs ``prose_size(text)``, a code text its
    characters. Within a kind, the heaviest text goes first, to the part with the least
    weight of that kind so far.
    """
    from schemas.config import SegmentOptions

    options = SegmentOptions()
    result: list[list[bytes]] = [[] for _ in range(parts)]
    by_kind: dict[str, list[tuple[int, bytes]]] = {}
    for record in records:
        fields = json.loads(record)
        kind = document_kind({k: v for k, v in fields.items() if k != "text"}, options)
        size = prose_size(fields["text"]) if kind == "prose" else len(fields["text"])
        by_kind.setdefault(kind, []).append((size, record))

    for items in by_kind.values():
        totals = [0] * parts
        for size, record in sorted(items, key=lambda item: -item[0]):
            smallest = totals.index(min(totals))
            result[smallest].append(record)
            totals[smallest] += size
    return result


if __name__ == "__main__":
    main()
