"""Shard names derived from input file names."""

import hashlib

import pytest

from pipeline.shards import shard_name, shard_stem


def digest(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()[:8]


@pytest.mark.parametrize(
    ("path", "base"),
    [
        ("/data/.hidden.jsonl", "hidden"),
        ("/data/_part.jsonl", "part"),
        ("/data/__._x.jsonl.gz", "x"),
        ("/data/...jsonl", "input"),
        ("/data/web text.jsonl.bz2", "web_text"),
        ("/data/part-1.ndjson.xz", "part-1"),
        ("/data/part-2.json.deflate", "part-2"),
        ("/data/part-3.jsonl.lzma", "part-3"),
        ("/data/a.b.parquet", "a.b"),
    ],
)
def test_shard_stem_is_base_name_and_hash(path, base):
    assert shard_stem(path) == f"{base}-{digest(path)}"


def test_shard_name_never_looks_hidden():
    name = shard_name("/data/.hidden.jsonl", 3)
    assert name == f"hidden-{digest('/data/.hidden.jsonl')}-00003"
    assert not name.startswith((".", "_"))
