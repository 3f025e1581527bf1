"""Duplicate removal in the real Beam pipeline: kept sets, accounting, workers, resume."""

import gzip
import json
import os
import random

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to

from pipeline.dedup import DocumentKey, normalize_text, word_shingles
from pipeline.dedup_stage import FindDuplicates
from pipeline.local import local_runner
from pipeline.read import InputDamagedError, read_lines
from pipeline.run import run
from schemas.config import DedupOptions, ReadOptions, RunConfig
from tests.conftest import REPO, write_jsonl

SCORERS = ("code_style",)
CLUSTERS = 8
WORDS_PER_DOCUMENT = 100
SHORT_DOCUMENTS = [
    {"id": "s1", "text": "Thanks!"},
    {"id": "s2", "text": "Call me later."},
    {"id": "s3", "text": "See you soon."},
    {"id": "s4", "text": "Thanks!"},
]
SHORT_DOCUMENTS_KEPT = {"s1", "s2", "s3"}


def jaccard(first: str, second: str) -> float:
    a = word_shingles(normalize_text(first), 5)
    b = word_shingles(normalize_text(second), 5)
    return len(a & b) / len(a | b)


def substitute(words: list[str], positions: list[int], rng: random.Random) -> str:
    edited = list(words)
    for position in positions:
        edited[position] = f"edit{rng.randrange(10**6)}"
    return " ".join(edited)


def near_duplicate_corpus() -> tuple[list[dict], set[str]]:
    """Clusters of copies under random ids, in random order, and the ids to keep.

    Each cluster has a base text, a copy with one word replaced (Jaccard
    about 0.9), a copy differing only in case and spacing, and an unrelated
    rewrite with every tenth word replaced (Jaccard below 0.5), which is kept.
    """
    rng = random.Random(7)
    vocabulary = [f"w{index}" for index in range(2000)]
    ids = [f"doc-{number:03d}" for number in rng.sample(range(1000), CLUSTERS * 4)]
    records, expected = [], set(SHORT_DOCUMENTS_KEPT)
    for cluster in range(CLUSTERS):
        words = [rng.choice(vocabulary) for _ in range(WORDS_PER_DOCUMENT)]
        base = " ".join(words)
        texts = [
            base,
            substitute(words, [50], rng),
            "  " + base.upper().replace(" ", "\n", 3),
            substitute(words, list(range(5, WORDS_PER_DOCUMENT, 10)), rng),
        ]
        assert jaccard(base, texts[1]) > 0.85
        assert jaccard(base, texts[3]) < 0.5
        cluster_ids = ids[cluster * 4 : cluster * 4 + 4]
        records += [{"id": i, "text": t} for i, t in zip(cluster_ids, texts, strict=True)]
        expected |= {min(cluster_ids[:3]), cluster_ids[3]}
    records += SHORT_DOCUMENTS
    rng.shuffle(records)
    return records, expected


def kept_ids(output_dir) -> set[str]:
    return set(pq.read_table(output_dir / "shards", columns=["id"]).column("id").to_pylist())


def duplicate_records(output_dir) -> list[dict]:
    lines = []
    for path in sorted((output_dir / "duplicates").glob("*.jsonl")):
        lines += path.read_text("utf-8").splitlines()
    return [json.loads(line) for line in lines]


def minhash_config(source, output_dir, **options) -> RunConfig:
    dedup = DedupOptions(method="minhash", write_duplicates=True)
    return RunConfig(
        inputs=str(source), output_dir=str(output_dir), scorers=SCORERS, dedup=dedup, **options
    )


@pytest.fixture
def worker_path(monkeypatch):
    """Let the worker processes import this tree, installed or not."""
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), path])))


@pytest.fixture(scope="module")
def corpus():
    return near_duplicate_corpus()


@pytest.fixture(scope="module")
def one_worker_run(tmp_path_factory, corpus):
    records, _ = corpus
    root = tmp_path_factory.mktemp("dedup")
    source = write_jsonl(root / "in.jsonl", records)
    manifest = run(minhash_config(source, root / "out"), runner=FnApiRunner())
    return manifest, root / "out"


def test_kept_set_one_worker(corpus, one_worker_run):
    _, expected = corpus
    _, output_dir = one_worker_run
    assert kept_ids(output_dir) == expected


def test_short_documents_not_merged(one_worker_run):
    _, output_dir = one_worker_run
    removed = {r["id"]: r["duplicate_of"]["id"] for r in duplicate_records(output_dir)}
    assert removed["s4"] == "s1"
    assert {"s1", "s2", "s3"}.isdisjoint(removed)


def test_accounting_balances(corpus, one_worker_run):
    records, expected = corpus
    manifest, _ = one_worker_run
    counts = manifest["counts"]
    assert counts["documents_read"] == len(records)
    assert counts["documents_written"] == len(expected)
    assert counts["documents_duplicates"] == len(records) - len(expected)
    assert counts["balanced"] is True


def test_manifest_records_options(one_worker_run):
    manifest, _ = one_worker_run
    assert manifest["config"]["dedup"] == {
        "method": "minhash",
        "threshold": 0.8,
        "num_perm": 128,
        "ngram_size": 5,
        "seed": 1,
        "write_duplicates": True,
    }
    assert manifest["dedup_lsh"] == {"bands": 16, "rows": 8}


def test_duplicates_name_kept_document(corpus, one_worker_run):
    records, expected = corpus
    _, output_dir = one_worker_run
    lines = {r["id"]: index + 1 for index, r in enumerate(records)}
    written = duplicate_records(output_dir)
    assert len(written) == len(records) - len(expected)
    for record in written:
        kept = record["duplicate_of"]
        assert kept["id"] in expected
        assert kept["id"] < record["id"]
        assert kept["input_line"] == lines[kept["id"]]
        assert record["input_line"] == lines[record["id"]]


def test_two_workers_shuffled_copy_same_kept_set(tmp_path, corpus, worker_path):
    records, expected = corpus
    shuffled = list(records)
    random.Random(11).shuffle(shuffled)
    half = len(shuffled) // 2
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_jsonl(inputs / "a.jsonl", shuffled[:half])
    write_jsonl(inputs / "b.jsonl", shuffled[half:])
    beam_args = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]
    config = minhash_config(inputs, tmp_path / "out")
    manifest = run(config, beam_args, runner=local_runner())
    assert kept_ids(tmp_path / "out") == expected
    assert manifest["counts"]["documents_duplicates"] == len(records) - len(expected)
    assert manifest["counts"]["balanced"] is True


@pytest.mark.parametrize("seed", [1, 2])
def test_find_duplicates_ignores_input_order(tmp_path, corpus, seed):
    records, expected = corpus
    shuffled = list(records)
    random.Random(seed).shuffle(shuffled)
    path = str(write_jsonl(tmp_path / "in.jsonl", shuffled))
    removed_ids = sorted({r["id"] for r in records} - expected)
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        removed = (
            pipeline
            | beam.Create([path])
            | FindDuplicates(ReadOptions(), DedupOptions(method="minhash"), 16, 8)
            | beam.MapTuple(lambda _, line_and_kept: shuffled[line_and_kept[0] - 1]["id"])
        )
        assert_that(removed, equal_to(removed_ids))


def test_exact_mode_keeps_near_copies(tmp_path):
    base = " ".join(f"w{index}" for index in range(20))
    records = [
        {"id": "a", "text": base},
        {"id": "b", "text": base.replace("w10", "changed")},
        {"id": "c", "text": "\ufb01 " + base.upper()},
        {"id": "d", "text": "fi  " + base},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    dedup = DedupOptions(method="exact", write_duplicates=True)
    config = RunConfig(str(source), str(tmp_path / "out"), SCORERS, dedup=dedup)
    manifest = run(config, runner=FnApiRunner())
    assert kept_ids(tmp_path / "out") == {"a", "b", "c"}
    assert [(r["id"], r["duplicate_of"]["id"]) for r in duplicate_records(tmp_path / "out")] == [
        ("d", "c")
    ]
    assert manifest["counts"]["documents_duplicates"] == 1
    assert manifest["counts"]["balanced"] is True


def test_rerun_counts_skipped_shards(tmp_path):
    records = SHORT_DOCUMENTS * 3
    source = write_jsonl(tmp_path / "in.jsonl", records)
    config = RunConfig(
        str(source), str(tmp_path / "out"), SCORERS, docs_per_shard=4, dedup=DedupOptions("exact")
    )
    first = run(config, runner=FnApiRunner())
    markers = sorted((tmp_path / "out" / "_progress" / "score").glob("*.json"))
    assert len(markers) == 3
    markers[1].unlink()
    second = run(config, runner=FnApiRunner())
    assert first["counts"]["documents_duplicates"] == 9
    assert second["counts"] == first["counts"]


def test_find_duplicates_exact_short_documents(tmp_path):
    path = str(write_jsonl(tmp_path / "in.jsonl", SHORT_DOCUMENTS))
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        removed = (
            pipeline
            | beam.Create([path])
            | FindDuplicates(ReadOptions(), DedupOptions(method="exact"), 0, 0)
        )
        assert_that(removed, equal_to([(path, (4, DocumentKey("s1", path, 1)))]))


def test_damaged_file_still_balances(tmp_path):
    records = [{"id": str(i), "text": f"Thanks {i}!"} for i in range(5000)] + SHORT_DOCUMENTS
    text = "".join(json.dumps(r) + "\n" for r in records)
    data = bytearray(gzip.compress(text.encode()))
    middle = len(data) // 2
    data[middle : middle + 8] = b"\xff" * 8
    source = tmp_path / "in.jsonl.gz"
    source.write_bytes(bytes(data))
    with pytest.raises(InputDamagedError):
        list(read_lines(str(source)))
    config = RunConfig(str(source), str(tmp_path / "out"), SCORERS, dedup=DedupOptions("exact"))
    manifest = run(config, runner=FnApiRunner())
    counts = manifest["counts"]
    # The damage lies in the first 64 KiB block, so no complete line precedes it.
    assert counts["documents_read"] == 0
    assert counts["documents_duplicates"] == 0
    assert counts["balanced"] is True
    assert [entry["input_file"] for entry in manifest["damaged_inputs"]] == [str(source)]
