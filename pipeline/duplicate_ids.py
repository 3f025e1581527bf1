"""Find document ids that more than one written document has.

Ids are strings in the output: a JSON number id such as 1 becomes "1", and a
missing or invalid id becomes FILE:LINE. So two documents can share an id,
because the input repeats it or because the conversion made two ids equal
(1 and "1"). Both documents are kept, since an id is the user's label and
not a reason to drop text. The run counts them and warns, and `input_file`
and `input_line` still tell them apart.

The ids are read back from the scored shards, so a resumed run and
`annotate label` count the same documents as a run that never stopped.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import apache_beam as beam

from pipeline.shards import iter_shard_batches

logger = logging.getLogger(__name__)

# Counter of the documents written beyond the first one with each id, so that
# documents_written - duplicate_ids is the number of distinct ids.
DUPLICATE_IDS = "duplicate_ids"
# Repeated ids listed in manifest.json, the smallest in string order.
MAX_LISTED_IDS = 10
# Repeated ids named in the warning.
MAX_WARNED_IDS = 5

# (documents beyond the first per id, repeated ids, smallest (id, documents) pairs)
Accumulator = tuple[int, int, list[tuple[str, int]]]


class FindDuplicateIds(beam.PTransform):
    """Scored shard paths in; one `duplicate_ids` summary (see `summarize`) out."""

    def expand(self, shard_paths):
        return (
            shard_paths
            | "ReadIds" >> beam.FlatMap(read_ids)
            | "CountIds" >> beam.combiners.Count.PerElement()
            | "RepeatedIds" >> beam.Filter(lambda item: item[1] > 1)
            | "SummarizeRepeatedIds" >> beam.CombineGlobally(RepeatedIdsFn())
        )


def read_ids(path: str) -> Iterator[str]:
    """Yield the id of every document in a scored shard."""
    for batch in iter_shard_batches(path, columns=["id"]):
        yield from batch.column(0).to_pylist()


class RepeatedIdsFn(beam.CombineFn):
    """Combines (id, number of documents) pairs of repeated ids into one summary."""

    def create_accumulator(self) -> Accumulator:
        return 0, 0, []

    def add_input(self, accumulator: Accumulator, item: tuple[str, int]) -> Accumulator:
        return self.merge_accumulators([accumulator, (item[1] - 1, 1, [item])])

    def merge_accumulators(self, accumulators: Iterable[Accumulator]) -> Accumulator:
        extra, repeated, listed = 0, 0, []
        for more_extra, more_repeated, more_listed in accumulators:
            extra += more_extra
            repeated += more_repeated
            listed.extend(more_listed)
        return extra, repeated, heapq.nsmallest(MAX_LISTED_IDS, listed)

    def extract_output(self, accumulator: Accumulator) -> dict[str, Any]:
        return summarize(accumulator)


def summarize(accumulator: Accumulator) -> dict[str, Any]:
    """Describe repeated ids for manifest.json.

    Returns:
        documents: documents written beyond the first one with each id.
        repeated_ids: ids that more than one document has.
        first_ids: up to MAX_LISTED_IDS of those ids, the smallest in string
            order, each with its number of documents.
    """
    extra, repeated, listed = accumulator
    return {
        "documents": extra,
        "repeated_ids": repeated,
        "first_ids": [{"id": name, "documents": count} for name, count in sorted(listed)],
    }


def no_duplicate_ids() -> dict[str, Any]:
    """Return the summary of a run in which every id is unique."""
    return summarize((0, 0, []))


def log_duplicate_ids(manifest: Mapping[str, Any]) -> None:
    """Warn once when documents of the run share an id, naming the first few ids."""
    found = manifest.get(DUPLICATE_IDS) or {}
    if not found.get("repeated_ids"):
        return
    named = [f"{entry['id']!r} ({entry['documents']} documents)" for entry in found["first_ids"]]
    more = found["repeated_ids"] - min(len(named), MAX_WARNED_IDS)
    listing = ", ".join(named[:MAX_WARNED_IDS]) + (f" and {more} more" if more else "")
    logger.warning(
        "%d id(s) are shared by more than one document written: %s. Ids are compared as "
        "strings, after a JSON number id such as 1 became '1' and a missing or invalid id "
        "became FILE:LINE. Every document is kept, and input_file and input_line tell them "
        "apart. The counter duplicate_ids in manifest.json counts the %d document(s) beyond "
        "the first with each id",
        found["repeated_ids"],
        listing,
        found["documents"],
    )
