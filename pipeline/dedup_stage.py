"""The duplicate-removal pass in Beam: input files in, removed documents per file out.

Documents travel only as keys and signatures: each input file is read once here
and once more by the scoring pass, which skips the removed lines.

    input files -> (bucket key, (document key, signature)) per document and bucket
                -> GroupByKey -> confirmed edges per bucket (`bucket_edges`)
                -> one union-find over all edges (`DuplicateClusters`)
                -> (input file, (line, kept document key)) per removed document

Limits (docs/dedup.md gives numbers): one worker keeps all members of a bucket
in memory, so the largest cluster of copies must fit there. The union-find is
one global combine. Partial results merge per bundle, and the final merge keeps
every document that has a duplicate in memory. The shuffle carries each
document once per band with its signature (4 bytes per permutation).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

import apache_beam as beam

from pipeline.dedup import (
    DocumentKey,
    DuplicateClusters,
    MinHashSigner,
    band_keys,
    bucket_edges,
    exact_key,
    normalize_text,
    word_shingles,
)
from pipeline.read import Document, InputDamagedError, parse_record, read_lines
from schemas.config import DedupOptions, ReadOptions

logger = logging.getLogger(__name__)

Removed = tuple[str, tuple[int, DocumentKey]]


class FingerprintFileFn(beam.DoFn):
    """Reads one input file and emits (bucket key, (document key, signature bytes)).

    Every document gets its exact key with an empty signature. In ``minhash``
    mode, a document with at least `ngram_size` words also gets one key per LSH
    band, each carrying its signature.
    """

    def __init__(self, read: ReadOptions, options: DedupOptions, bands: int, rows: int) -> None:
        self.read = read
        self.options = options
        self.bands = bands
        self.rows = rows
        self._signer: MinHashSigner | None = None

    def setup(self) -> None:
        if self.options.method == "minhash":
            self._signer = MinHashSigner(self.options.num_perm, self.options.seed)

    def process(self, input_file: str) -> Iterator[tuple[bytes, tuple[DocumentKey, bytes]]]:
        for document in _documents(input_file, self.read):
            key = DocumentKey(document.id, document.input_file, document.input_line)
            normalized = normalize_text(document.text)
            yield exact_key(normalized), (key, b"")
            if self._signer is None:
                continue
            shingles = word_shingles(normalized, self.options.ngram_size)
            if not shingles:
                continue
            signature = self._signer.signature(shingles)
            data = signature.tobytes()
            for band in band_keys(signature, self.bands, self.rows):
                yield band, (key, data)


def _documents(input_file: str, read: ReadOptions) -> Iterator[Document]:
    """Yield a file's documents, skipping lines that the scoring pass will reject."""
    try:
        for line_number, raw in read_lines(input_file):
            record = parse_record(raw, input_file, line_number, read)
            if isinstance(record, Document):
                yield record
    except InputDamagedError as error:
        logger.warning("duplicate removal skipped the rest of a damaged file: %s", error)


class ClusterCombineFn(beam.CombineFn):
    """Combines (document, duplicated document) edges into one `DuplicateClusters`."""

    def create_accumulator(self) -> DuplicateClusters:
        return DuplicateClusters()

    def add_input(
        self, clusters: DuplicateClusters, edge: tuple[DocumentKey, DocumentKey]
    ) -> DuplicateClusters:
        clusters.union(*edge)
        return clusters

    def merge_accumulators(self, accumulators: Iterable[DuplicateClusters]) -> DuplicateClusters:
        accumulators = iter(accumulators)
        merged = next(accumulators)
        for clusters in accumulators:
            merged.merge(clusters)
        return merged

    def extract_output(self, clusters: DuplicateClusters) -> DuplicateClusters:
        return clusters


def removed_documents(clusters: DuplicateClusters) -> Iterator[Removed]:
    """Yield (input file, (line, kept document key)) for every removed document."""
    for key, kept_key in clusters.removed():
        yield key.input_file, (key.input_line, kept_key)


class FindDuplicates(beam.PTransform):
    """Input file paths in; (input file, (line, kept document key)) per removed document.

    Args:
        read: how records are read, as in the scoring pass.
        options: the duplicate-removal options; `method` must be exact or minhash.
        bands, rows: LSH banding from `pipeline.dedup.lsh_parameters`; unused in
            exact mode.
    """

    def __init__(self, read: ReadOptions, options: DedupOptions, bands: int, rows: int) -> None:
        super().__init__()
        self.read = read
        self.options = options
        self.bands = bands
        self.rows = rows

    def expand(self, input_files):
        threshold = self.options.threshold
        return (
            input_files
            | "SpreadFiles" >> beam.Reshuffle()
            | "Fingerprint"
            >> beam.ParDo(FingerprintFileFn(self.read, self.options, self.bands, self.rows))
            | "GroupBuckets" >> beam.GroupByKey()
            | "BucketEdges" >> beam.FlatMap(lambda bucket: bucket_edges(bucket[1], threshold))
            | "Clusters" >> beam.CombineGlobally(ClusterCombineFn())
            | "RemovedDocuments" >> beam.FlatMap(removed_documents)
        )


class AttachDuplicates(beam.PTransform):
    """Input file paths in; (input file, {line: kept document key}) per input file out.

    With method ``none`` every file gets an empty mapping and no pass runs.
    Removed documents are joined to their files by key, so the worker that
    scores a file keeps only that file's removed lines in memory.
    """

    def __init__(self, read: ReadOptions, options: DedupOptions, bands: int, rows: int) -> None:
        super().__init__()
        self.find = FindDuplicates(read, options, bands, rows)
        self.enabled = options.method != "none"

    def expand(self, input_files):
        if not self.enabled:
            return input_files | "NoDuplicates" >> beam.Map(lambda path: (path, {}))
        removed = input_files | "FindDuplicates" >> self.find
        keyed = input_files | "KeyFiles" >> beam.Map(lambda path: (path, None))
        return (
            {"file": keyed, "removed": removed}
            | "JoinRemoved" >> beam.CoGroupByKey()
            | "RemovedByLine" >> beam.MapTuple(lambda path, joined: (path, dict(joined["removed"])))
        )
