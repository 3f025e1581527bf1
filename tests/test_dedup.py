"""Duplicate finding without Beam: normalization, shingles, buckets and clusters."""

import itertools

import numpy as np
import pytest

from pipeline.dedup import (
    SIGNATURE_DTYPE,
    DocumentKey,
    DuplicateClusters,
    MinHashSigner,
    band_keys,
    bucket_edges,
    estimated_jaccard,
    exact_key,
    lsh_parameters,
    normalize_text,
    word_shingles,
)
from schemas.config import DedupOptions


def key(doc_id: str, line: int = 1) -> DocumentKey:
    return DocumentKey(doc_id, "/in.jsonl", line)


def test_normalize_folds_width_case_and_space():
    assert normalize_text("  Ｈｅｌｌｏ\u00a0WORLD\n\t\ufb01ne  ") == "hello world fine"


def test_exact_key_equal_after_normalization():
    assert exact_key(normalize_text("Thanks!")) == exact_key(normalize_text(" THANKS! "))
    assert exact_key(normalize_text("Thanks!")) != exact_key(normalize_text("Thanks"))


def test_word_shingles_ignore_punctuation():
    assert word_shingles("a, b. c", 2) == {b"a b", b"b c"}
    assert word_shingles("a b a b", 2) == {b"a b", b"b a"}


def test_short_text_has_no_shingles():
    assert word_shingles("call me later.", 5) == set()
    assert word_shingles("", 1) == set()


def test_lsh_parameters_default():
    assert lsh_parameters(DedupOptions()) == (16, 8)


def test_lsh_parameters_too_few_bands():
    with pytest.raises(ValueError, match="use more permutations or a lower threshold"):
        lsh_parameters(DedupOptions(threshold=0.99, num_perm=2))


def test_signature_depends_on_seed_only():
    shingles = word_shingles("one two three four five six seven", 3)
    first = MinHashSigner(16, seed=1).signature(shingles)
    again = MinHashSigner(16, seed=1)
    again.signature({b"something else"})
    assert first.dtype == SIGNATURE_DTYPE
    assert np.array_equal(first, again.signature(shingles))
    assert not np.array_equal(first, MinHashSigner(16, seed=2).signature(shingles))


def test_band_keys_split_signature():
    signature = np.arange(12, dtype=SIGNATURE_DTYPE)
    keys = band_keys(signature, bands=3, rows=4)
    other = signature.copy()
    other[5] = 99
    changed = band_keys(other, bands=3, rows=4)
    assert len(set(keys)) == 3
    assert [a == b for a, b in zip(keys, changed, strict=True)] == [True, False, True]


def test_estimated_jaccard_counts_equal_values():
    first = np.array([1, 2, 3, 4], dtype=SIGNATURE_DTYPE)
    second = np.array([1, 0, 3, 0], dtype=SIGNATURE_DTYPE)
    assert estimated_jaccard(first, second) == 0.5


def test_exact_bucket_links_to_smallest():
    members = [(key("c"), b""), (key("a", 9), b""), (key("b"), b"")]
    for order in itertools.permutations(members):
        edges = bucket_edges(order, 0.8)
        assert sorted(edges) == [(key("b"), key("a", 9)), (key("c"), key("a", 9))]


def test_single_member_bucket_has_no_edges():
    assert bucket_edges([(key("a"), b"")], 0.8) == []


def test_band_bucket_checks_similarity():
    base = np.arange(10, dtype=SIGNATURE_DTYPE)
    near = base.copy()
    near[0] = 100  # estimated Jaccard 0.9
    far = base.copy()
    far[:5] = 100  # estimated Jaccard 0.5 with base, 0.6 with near
    members = [
        (key("b"), near.tobytes()),
        (key("a"), base.tobytes()),
        (key("c"), far.tobytes()),
        (key("d"), near.tobytes()),
    ]
    for order in itertools.permutations(members):
        edges = bucket_edges(order, 0.8)
        assert sorted(edges) == [(key("b"), key("a")), (key("d"), key("b"))]


def test_repeated_id_ranks_by_line():
    assert bucket_edges([(key("x", 7), b""), (key("x", 3), b"")], 0.8) == [
        (key("x", 7), key("x", 3))
    ]


def test_clusters_keep_smallest_key():
    edges = [(key("d"), key("c")), (key("b"), key("a")), (key("c"), key("b")), (key("f"), key("e"))]
    expected = {
        key("b"): key("a"),
        key("c"): key("a"),
        key("d"): key("a"),
        key("f"): key("e"),
    }
    for order in itertools.permutations(edges):
        clusters = DuplicateClusters()
        for first, second in order:
            clusters.union(first, second)
        assert dict(clusters.removed()) == expected


def test_merged_partial_clusters_equal_one():
    left, right = DuplicateClusters(), DuplicateClusters()
    left.union(key("d"), key("c"))
    left.union(key("f"), key("e"))
    right.union(key("c"), key("e"))
    right.union(key("b"), key("a"))
    left.merge(right)
    expected = {key("d"): key("c"), key("e"): key("c"), key("f"): key("c"), key("b"): key("a")}
    assert dict(left.removed()) == expected
