"""Find duplicate documents: exact copies by a hash of the normalized text, near
copies by MinHash signatures of word n-grams, banded for locality-sensitive
hashing (LSH).

The functions here are plain Python; `pipeline.dedup_stage` runs them in Beam.

Normalization, for both methods: Unicode NFKC, case folding, and every run of
whitespace collapsed to one space, with none at either end. Near copies are
compared on the set of word n-grams (shingles) of the normalized text. A word is
a run of letters, digits or underscores (the regex ``\\w+``), so edits that only
change punctuation do not change the shingles.

Every document goes into one bucket per key: its exact key, and in ``minhash``
mode one key per LSH band of its signature. Documents that share a bucket are
candidates. `bucket_edges` confirms them, and `DuplicateClusters` joins the
confirmed pairs into clusters whose smallest `DocumentKey` is kept.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
from datasketch import MinHash, MinHashLSH

from schemas.config import DedupOptions

WORD = re.compile(r"\w+")
EXACT_PREFIX = b"x"
BAND_PREFIX = b"b"
DIGEST_BYTES = 16
# Little-endian, so signature bytes and band keys are the same on every machine.
SIGNATURE_DTYPE = np.dtype("<u4")
# Weights of the false positive and false negative probabilities when choosing
# the LSH banding. `bucket_edges` checks every candidate against the threshold,
# so a false positive costs only a comparison and the banding favours recall.
# At 0.8 and 128 permutations these weights give 16 bands of 8 rows, which make
# a pair of similarity 0.8 a candidate with probability 0.95. datasketch's
# default equal weights give 9 bands of 13 rows and a probability of 0.40.
LSH_WEIGHTS = (0.05, 0.95)


class DocumentKey(NamedTuple):
    """A document's identity and rank: each cluster keeps its smallest key.

    Keys compare by id (string order), then input file and line, which makes the
    kept document independent of input order and unique even when ids repeat.
    """

    id: str
    input_file: str
    input_line: int


def normalize_text(text: str) -> str:
    """Apply NFKC, case folding and whitespace collapsing."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def exact_key(normalized: str) -> bytes:
    """Bucket key shared by documents whose normalized text is equal."""
    data = normalized.encode("utf-8", "surrogatepass")
    return EXACT_PREFIX + hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


def word_shingles(normalized: str, size: int) -> set[bytes]:
    """Distinct word n-grams of `size` words; empty when the text has fewer words."""
    words = WORD.findall(normalized)
    return {" ".join(words[i : i + size]).encode() for i in range(len(words) - size + 1)}


def lsh_parameters(options: DedupOptions) -> tuple[int, int]:
    """Return (bands, rows per band) for the options' threshold and permutations.

    datasketch's `MinHashLSH` chooses them by minimising the `LSH_WEIGHTS`
    weighted sum of the false positive and false negative probabilities around
    the threshold.

    Raises:
        ValueError: the options give fewer than 2 bands, naming the options.
    """
    try:
        lsh = MinHashLSH(options.threshold, options.num_perm, weights=LSH_WEIGHTS)
    except ValueError as error:
        raise ValueError(
            f"invalid MinHash options (threshold {options.threshold}, {options.num_perm} "
            f"permutations): {error}; use more permutations or a lower threshold"
        ) from None
    return lsh.b, lsh.r


class MinHashSigner:
    """Computes MinHash signatures with one fixed set of permutations."""

    def __init__(self, num_perm: int, seed: int) -> None:
        self._minhash = MinHash(num_perm=num_perm, seed=seed)

    def signature(self, shingles: Iterable[bytes]) -> np.ndarray:
        self._minhash.clear()
        self._minhash.update_batch(list(shingles))
        # datasketch 2 stores uint32; older versions store uint64 values masked to
        # 32 bits, so the conversion loses nothing in either.
        return self._minhash.hashvalues.astype(SIGNATURE_DTYPE)


def band_keys(signature: np.ndarray, bands: int, rows: int) -> list[bytes]:
    """Hash each band of `rows` signature values into a bucket key that starts with its number."""
    keys = []
    for band in range(bands):
        values = signature[band * rows : (band + 1) * rows].tobytes()
        digest = hashlib.blake2b(values, digest_size=DIGEST_BYTES).digest()
        keys.append(BAND_PREFIX + band.to_bytes(2, "big") + digest)
    return keys


def estimated_jaccard(first: np.ndarray, second: np.ndarray) -> float:
    """Estimate Jaccard similarity as the fraction of equal MinHash values (unbiased)."""
    return float(np.count_nonzero(first == second)) / len(first)


def bucket_edges(
    members: Iterable[tuple[DocumentKey, bytes]], threshold: float
) -> list[tuple[DocumentKey, DocumentKey]]:
    """Link each member of one bucket to a member it duplicates, as (member, other).

    Members are (key, signature bytes); exact-key buckets carry empty signatures.
    Members with equal signatures link to the smallest of them. Distinct
    signatures, taken in order of their smallest key, link to the first earlier
    representative whose estimated Jaccard similarity reaches `threshold`, or
    become a representative. Sharing an LSH band only makes two documents
    candidates, and this check drops most false positives.

    The result depends only on the set of members, never on their order. All
    members of the bucket are held in memory.
    """
    by_signature: dict[bytes, list[DocumentKey]] = {}
    for key, signature in members:
        by_signature.setdefault(signature, []).append(key)
    if len(by_signature) == 1 and len(next(iter(by_signature.values()))) == 1:
        return []

    edges = []
    representatives: list[tuple[DocumentKey, np.ndarray]] = []
    for smallest, signature, keys in sorted((min(k), s, k) for s, k in by_signature.items()):
        edges.extend((key, smallest) for key in keys if key != smallest)
        values = np.frombuffer(signature, SIGNATURE_DTYPE)
        match = _first_similar(values, representatives, threshold)
        if match is None:
            representatives.append((smallest, values))
        else:
            edges.append((smallest, match))
    return edges


def _first_similar(
    values: np.ndarray, representatives: list[tuple[DocumentKey, np.ndarray]], threshold: float
) -> DocumentKey | None:
    for key, other in representatives:
        if estimated_jaccard(values, other) >= threshold:
            return key
    return None


class DuplicateClusters:
    """Union-find over document keys; a cluster's root is always its smallest key.

    Because the root is the minimum, the clusters and their kept documents do not
    depend on the order in which edges and partial results are merged.
    """

    def __init__(self) -> None:
        self.parent: dict[DocumentKey, DocumentKey] = {}

    def find(self, key: DocumentKey) -> DocumentKey:
        root = key
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        while key != root:
            self.parent[key], key = root, self.parent.get(key, root)
        return root

    def union(self, first: DocumentKey, second: DocumentKey) -> None:
        first_root, second_root = self.find(first), self.find(second)
        if first_root == second_root:
            self.parent.setdefault(first_root, first_root)
            return
        low, high = sorted((first_root, second_root))
        self.parent[high] = low
        self.parent.setdefault(low, low)

    def merge(self, other: DuplicateClusters) -> None:
        for key, parent in other.parent.items():
            self.union(key, parent)

    def removed(self) -> Iterator[tuple[DocumentKey, DocumentKey]]:
        """Yield (removed document, kept document) for every non-root key."""
        for key in list(self.parent):
            root = self.find(key)
            if key != root:
                yield key, root
