"""Atomic writes and the clean-up of their temporary files."""

from pipeline import files


def test_remove_temporary_files_deletes_only_atomic_file_leftovers(tmp_path):
    stale = tmp_path / f".part-1a2b-00000.parquet.{'0' * 31}f.tmp"
    kept = [".notes.tmp", f".x.{'0' * 31}g.tmp", f"x.{'0' * 32}.tmp", "part.parquet"]
    stale.write_bytes(b"")
    for name in kept:
        (tmp_path / name).write_bytes(b"")

    assert files.remove_temporary_files(str(tmp_path)) == 1

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)


def test_atomic_file_temporary_name_matches_the_clean_up_pattern(tmp_path):
    atomic = files.AtomicFile(str(tmp_path / "a.json"))
    name = atomic.temp_path.rsplit("/", 1)[-1]
    atomic.stream.close()
    assert files.TEMPORARY_NAME.fullmatch(name)
