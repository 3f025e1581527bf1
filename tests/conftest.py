"""Shared test helpers: small corpora written to temporary files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "sample.jsonl"


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


def sample_records(prefixes: tuple[str, ...], per_prefix: int) -> list[dict]:
    """The first `per_prefix` bundled sample documents of each id prefix, in file order."""
    taken: dict[str, int] = {}
    records = []
    for line in SAMPLE.read_text("utf-8").splitlines():
        record = json.loads(line)
        prefix = record["id"].split("-")[0]
        if prefix in prefixes and taken.get(prefix, 0) < per_prefix:
            taken[prefix] = taken.get(prefix, 0) + 1
            records.append(record)
    return records


@pytest.fixture
def local_runner():
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    return FnApiRunner()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A random-weight tiny BERT in Detoxify's format and its Hugging Face directory."""
    from scorers.testing import write_detoxify_checkpoint

    return write_detoxify_checkpoint(tmp_path_factory.mktemp("detoxify"), size="tiny", seed=0)


def make_toxicity_scorer(tiny_checkpoint, **options):
    """A Detoxify scorer on the tiny checkpoint, on the CPU, set up."""
    from scorers.toxicity import DetoxifyToxicityScorer

    checkpoint_path, hf_dir = tiny_checkpoint
    scorer = DetoxifyToxicityScorer(
        checkpoint=str(checkpoint_path), hf_dir=str(hf_dir), device="cpu", **options
    )
    scorer.setup()
    return scorer
