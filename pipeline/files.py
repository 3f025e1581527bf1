"""Atomic writes and completion markers, through Beam's FileSystems.

A shard is written under a temporary name, renamed when complete, and only
then marked complete; a rerun skips shards whose marker exists. A crash can
leave a hidden temporary file behind but never a partial shard under its
final name.
"""

from __future__ import annotations

import json
import posixpath
import re
import uuid
from collections.abc import Callable
from typing import IO, Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

# Name of an `AtomicFile`'s temporary file: ".NAME.<uuid4 hex>.tmp".
TEMPORARY_NAME = re.compile(r"\..+\.[0-9a-f]{32}\.tmp")


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


class AtomicFile:
    """A file written under a temporary name and renamed to `path` by `commit`."""

    def __init__(self, path: str) -> None:
        directory, name = FileSystems.split(path)
        ensure_dir(directory)
        self.path = path
        # A leading dot hides the temporary file from globs and from Arrow's
        # dataset discovery, which skips names starting with "." or "_".
        self.temp_path = join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
        self.stream = FileSystems.create(
            self.temp_path, compression_type=CompressionTypes.UNCOMPRESSED
        )

    def commit(self) -> None:
        self.stream.close()
        if FileSystems.exists(self.path):
            FileSystems.delete([self.path])
        FileSystems.rename([self.temp_path], [self.path])

    def abort(self) -> None:
        self.stream.close()
        FileSystems.delete([self.temp_path])


def write_atomically(path: str, write: Callable[[IO[bytes]], None]) -> None:
    """Call `write` on a temporary file beside `path`, then rename it to `path`."""
    atomic = AtomicFile(path)
    try:
        write(atomic.stream)
    except BaseException:
        atomic.abort()
        raise
    atomic.commit()


def write_json(path: str, value: Any) -> None:
    data = (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
    write_atomically(path, lambda f: f.write(data))


def read_json(path: str) -> Any:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return json.loads(f.read().decode())


def exists(path: str) -> bool:
    return FileSystems.exists(path)


def ensure_dir(path: str) -> None:
    """Create a directory unless it exists; safe when workers race to create it."""
    if FileSystems.exists(path):
        return
    try:
        FileSystems.mkdirs(path)
    except OSError:
        if not FileSystems.exists(path):
            raise


def match(pattern: str) -> list[str]:
    """Sorted paths matching a glob; empty when nothing matches."""
    results = FileSystems.match([pattern])
    return sorted(m.path for m in results[0].metadata_list)


def remove(path: str) -> None:
    """Delete a file or a directory with its content; nothing happens if it does not exist."""
    if FileSystems.exists(path):
        FileSystems.delete([path])


def remove_temporary_files(directory: str) -> int:
    """Delete the temporary files that `AtomicFile` left in `directory`; returns how many.

    Only names of `AtomicFile`'s form, ``.NAME.<32 hex digits>.tmp``, are deleted.
    """
    paths = [
        path
        for path in match(join(directory, ".*.tmp"))
        if TEMPORARY_NAME.fullmatch(posixpath.basename(path))
    ]
    if paths:
        FileSystems.delete(paths)
    return len(paths)


def open_read(path: str) -> IO[bytes]:
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
