"""`relabel` and the phf layout on a real run: thresholds, tokens, counts, schema."""

import json
import logging
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.label import restore_text
from pipeline.relabel import SourceRunError, relabel
from pipeline.run import run
from pipeline.shards import ParquetShardWriter
from pipeline.thresholds import rank_error
from schemas.config import LabelOptions, RunConfig
from schemas.output import score_column, scored_schema
from tests.conftest import sample_records, write_jsonl

SCORERS = ("toxicity_profanity", "code_style")
TOXICITY = "toxicity_profanity_v1"
CODE_STYLE = "code_style_pycodestyle_v1"
TOKENS = ["<|good|>", "<|bad|>"]
ESCAPE_TEST = (
    "Our tagger writes <|good|> before clean text. Some scraped pages contain <|bad|> too."
)
EXTRA_RECORDS = [
    {"id": "escape-1", "text": ESCAPE_TEST, "lang": "en"},
    {"id": "empty-1", "text": "", "lang": "en"},
    {"id": "blank-1", "text": "  \n\t ", "lang": "en"},
    {
        "id": "meta-1",
        "text": "\n\nA plain sentence.\n\nAnother one.  ",
        "lang": "en",
        "stars": 3,
        "ratio": 0.5,
        "flag": True,
        "tags": ["a", "b"],
        "mixed": 1,
    },
    {
        "id": "meta-2",
        "text": "One more line.",
        "lang": "en",
        "stars": 4,
        "ratio": 1,
        "flag": False,
        "mixed": "x",
        "unset": None,
    },
]


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    root = tmp_path_factory.mktemp("source")
    records = sample_records(("benign", "code", "offensive", "prose_pii"), 2) + EXTRA_RECORDS
    source = write_jsonl(root / "in.jsonl", records)
    config = RunConfig(inputs=str(source), output_dir=str(root / "out"), scorers=SCORERS)
    manifest = run(config, runner=FnApiRunner())
    return records, manifest, root / "out"


def relabelled(source_dir, out, **options):
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    manifest = relabel(str(source_dir), str(out), LabelOptions(**options), runner=FnApiRunner())
    return manifest, pq.read_table(out / "shards")


def read_json(path):
    return json.loads(path.read_text("utf-8"))


def stored_scores(run_dir, name):
    """Every non-null score of a scorer in a run's scored shards, with its segment length."""
    table = pq.read_table(run_dir / "scored")
    pairs = []
    for segments, scores in zip(
        table.column("segments").to_pylist(),
        table.column(score_column(name)).to_pylist(),
        strict=True,
    ):
        for segment, score in zip(segments, scores or [None] * len(segments), strict=True):
            if score is not None:
                pairs.append((score, len(segment)))
    return pairs


def test_relabel_recomputes_thresholds(source_run, tmp_path):
    _, _, source_dir = source_run
    relabelled(source_dir, tmp_path / "out", percentiles={"toxicity_profanity": 10})
    entry = read_json(tmp_path / "out" / "thresholds.json")[TOXICITY]
    scores = sorted(score for score, _ in stored_scores(source_dir, TOXICITY))
    good = sum(1 for score in scores if score <= entry["threshold"])
    assert entry["percentile"] == 10.0
    assert entry["num_segments"] == len(scores)
    assert rank_error(scores, entry["threshold"], 10) == 0.0
    assert entry["num_good"] == good
    assert entry["fraction_good"] == good / len(scores)
    source_entry = read_json(source_dir / "thresholds.json")[TOXICITY]
    assert source_entry["percentile"] == 5.0
    assert source_entry["threshold"] < entry["threshold"]


def test_relabel_conflict_names_changed_options(source_run, tmp_path):
    from pipeline.run import OutputConflictError
    from pipeline.run_record import format_value

    _, _, source_dir = source_run
    out = tmp_path / "out"
    relabelled(source_dir, out, percentiles={"toxicity_profanity": 10.0})
    with pytest.raises(OutputConflictError) as error:
        relabelled(source_dir, out, percentiles={"toxicity_profanity": 20.0}, token_mode="scorer")
    message = str(error.value)
    assert '--percentile: was {"toxicity_profanity": 10.0}, now {"toxicity_profanity": 20.0}' in (
        message
    )
    assert '--token-mode: was "label", now "scorer"' in message
    assert "pass --overwrite" in message

    other_source = tmp_path / "copy"
    shutil.copytree(source_dir, other_source)
    with pytest.raises(OutputConflictError) as error:
        relabelled(other_source, out, percentiles={"toxicity_profanity": 10.0})
    moved = f"RUN_DIR: was {format_value(str(source_dir))}, now {format_value(str(other_source))}"
    assert moved in str(error.value)


def test_relabel_carries_document_counts(source_run, tmp_path):
    records, source_manifest, source_dir = source_run
    manifest, table = relabelled(source_dir, tmp_path / "out", default_percentile=20)
    assert manifest["counts"]["documents_read"] == len(records)
    assert manifest["counts"]["documents_written"] == len(records)
    assert manifest["counts"]["documents_rejected"] == 0
    assert manifest["counts"]["balanced"] is True
    assert manifest["relabelled_from"] == str(source_dir)
    assert (
        manifest["all_counts"]["segments_prose"] == source_manifest["all_counts"]["segments_prose"]
    )
    labels = [label for row in table.column("labels").to_pylist() for label in row]
    assert manifest["counts"]["segments_good"] == labels.count("good")
    assert manifest["counts"]["segments_bad"] == labels.count("bad")


def test_relabel_loads_no_model(source_run, tmp_path, monkeypatch):
    import scorers.base
    import scorers.registry

    def fail(*args, **kwargs):
        raise AssertionError("relabelling loaded a scorer")

    monkeypatch.setattr(scorers.base.Scorer, "setup", fail)
    monkeypatch.setattr(scorers.registry, "get_scorer_class", fail)
    manifest, _ = relabelled(source_run[2], tmp_path / "out", percentiles={TOXICITY: 50})
    assert manifest["counts"]["balanced"] is True


def test_relabel_from_final_shards(source_run, tmp_path):
    _, _, source_dir = source_run
    copy = tmp_path / "copy"
    shutil.copytree(source_dir, copy)
    shutil.rmtree(copy / "scored")
    _, from_shards = relabelled(copy, tmp_path / "a", default_percentile=30)
    _, from_scored = relabelled(source_dir, tmp_path / "b", default_percentile=30)
    assert from_shards.column("text").to_pylist() == from_scored.column("text").to_pylist()
    chained, _ = relabelled(tmp_path / "a", tmp_path / "c", default_percentile=30)
    assert chained["counts"]["documents_read"] == from_shards.num_rows
    assert chained["counts"]["balanced"] is True


def test_relabel_rejects_bad_sources(source_run, tmp_path):
    _, _, source_dir = source_run
    with pytest.raises(SourceRunError, match="must differ"):
        relabelled(source_dir, source_dir)
    with pytest.raises(SourceRunError, match="has no scored/"):
        relabelled(tmp_path / "missing", tmp_path / "out")
    phf = tmp_path / "phf"
    relabelled(source_dir, phf, layout="phf", layout_scorer="toxicity_profanity")
    with pytest.raises(SourceRunError, match="phf-layout shard"):
        relabelled(phf, tmp_path / "again")


def test_escaped_input_has_only_inserted_tokens(source_run):
    _, _, source_dir = source_run
    table = pq.read_table(source_dir / "shards").to_pylist()
    row = next(row for row in table if row["id"] == "escape-1")
    assert row["num_segments"] == 2
    assert row["text"].count("<|good|>") + row["text"].count("<|bad|>") == 2
    assert row["text"].startswith(("<|good|>Our tagger", "<|bad|>Our tagger"))
    assert restore_text(row["text"], TOKENS) == ESCAPE_TEST
    assert read_json(source_dir / "special_tokens.json") == {
        "additional_special_tokens": TOKENS,
        "good_token": "<|good|>",
        "bad_token": "<|bad|>",
        "document_token": None,
        "token_mode": "label",
        "escape_character": "\u2060",
    }


def test_phf_layout_schema_and_values(source_run, tmp_path):
    records, _, source_dir = source_run
    manifest, table = relabelled(
        source_dir, tmp_path / "out", layout="phf", layout_scorer="toxicity_profanity"
    )
    meta = pa.struct(
        [
            pa.field("id", pa.string()),
            pa.field("flag", pa.bool_()),
            pa.field("lang", pa.string()),
            pa.field("license", pa.string()),
            pa.field("mixed", pa.string()),
            pa.field("ratio", pa.float64()),
            pa.field("source", pa.string()),
            pa.field("stars", pa.int64()),
            pa.field("tags", pa.string()),
            pa.field("unset", pa.string()),
        ]
    )
    expected = [
        pa.field("texts", pa.list_(pa.string()), nullable=False),
        pa.field("meta", meta, nullable=False),
        pa.field("scores", pa.list_(pa.float64())),
        pa.field("avg_score", pa.float64()),
        pa.field("num_sents", pa.int64(), nullable=False),
    ]
    schema = table.schema
    assert schema.names == ["texts", "meta", "scores", "avg_score", "num_sents"]
    for field in expected:
        assert schema.field(field.name) == field, field.name
    assert manifest["layout"]["scorer"] == TOXICITY
    assert manifest["layout"]["meta_fields"]["mixed"] == "json"

    rows = {row["meta"]["id"]: row for row in table.to_pylist()}
    assert len(rows) == len(records)
    meta_1 = rows["meta-1"]
    assert meta_1["texts"] == ["\n\nA plain sentence.\n\n", "Another one.  "]
    assert meta_1["num_sents"] == 2
    assert meta_1["avg_score"] == pytest.approx(sum(meta_1["scores"]) / 2)
    assert meta_1["meta"]["tags"] == '["a", "b"]'
    assert meta_1["meta"]["mixed"] == "1"
    assert meta_1["meta"]["flag"] is True
    assert rows["meta-2"]["meta"]["ratio"] == 1.0
    assert rows["meta-2"]["meta"]["mixed"] == '"x"'
    assert rows["meta-2"]["meta"]["tags"] is None
    assert rows["blank-1"]["texts"] == []
    assert rows["blank-1"]["avg_score"] is None
    for record in records:
        row = rows[record["id"]]
        if record["text"].strip():
            assert "".join(row["texts"]) == record["text"], record["id"]
        assert row["num_sents"] == len(row["texts"])
        if record["id"].startswith("code"):
            assert row["scores"] is None
        else:
            assert len(row["scores"]) == len(row["texts"]), record["id"]


def test_phf_layout_needs_one_scorer(source_run, tmp_path):
    with pytest.raises(ValueError, match="pass --scorer"):
        relabelled(source_run[2], tmp_path / "out", layout="phf")
    with pytest.raises(ValueError, match="--scorer 'pii' is not in this run"):
        relabelled(source_run[2], tmp_path / "out", layout="phf", layout_scorer="pii")


def test_character_weighted_percentile(source_run, tmp_path):
    _, _, source_dir = source_run
    relabelled(
        source_dir,
        tmp_path / "out",
        percentiles={TOXICITY: 30},
        percentile_weight="characters",
    )
    entry = read_json(tmp_path / "out" / "thresholds.json")[TOXICITY]
    pairs = sorted(stored_scores(source_dir, TOXICITY))
    scores = [score for score, _ in pairs]
    cumulative = np.cumsum([length for _, length in pairs]).tolist()
    assert entry["percentile_weight"] == "characters"
    assert entry["num_characters"] == cumulative[-1]
    assert rank_error(scores, entry["threshold"], 30, cumulative) == 0.0
    good_characters = sum(length for score, length in pairs if score <= entry["threshold"])
    assert entry["fraction_good_characters"] == good_characters / cumulative[-1]


def test_drop_fraction_reruns_identically(source_run, tmp_path):
    _, _, source_dir = source_run
    options = {"drop_token_fraction": 0.3, "drop_token_seed": 11}
    manifest, first = relabelled(source_dir, tmp_path / "a", **options)
    _, second = relabelled(source_dir, tmp_path / "b", **options)
    assert first.column("text").to_pylist() == second.column("text").to_pylist()
    texts = first.column("text").to_pylist()
    written = sum(text.count("<|good|>") + text.count("<|bad|>") for text in texts)
    counts = manifest["counts"]
    labelled = counts["segments_good"] + counts["segments_bad"]
    assert written == labelled - manifest["all_counts"]["segments_token_dropped"]
    assert 0.2 < manifest["all_counts"]["segments_token_dropped"] / labelled < 0.4


def test_bucket_tokens_and_document_token(source_run, tmp_path):
    _, _, source_dir = source_run
    relabelled(
        source_dir, tmp_path / "out", token_mode="bucket", buckets=4, document_token="<|endoftext|>"
    )
    tokens = read_json(tmp_path / "out" / "special_tokens.json")["additional_special_tokens"]
    assert tokens[0] == "<|endoftext|>"
    assert tokens[1:5] == [f"<|toxicity_profanity:{b}|>" for b in range(4)]
    assert tokens[5:] == [f"<|code_style:{b}|>" for b in range(4)]
    edges = read_json(tmp_path / "out" / "thresholds.json")[TOXICITY]["bucket_edges"]
    scores = sorted(score for score, _ in stored_scores(source_dir, TOXICITY))
    assert [rank_error(scores, edge, p) for edge, p in zip(edges, (25, 50, 75), strict=True)] == [
        0.0,
        0.0,
        0.0,
    ]
    rows = {row["id"]: row for row in pq.read_table(tmp_path / "out" / "shards").to_pylist()}
    assert rows["meta-2"]["text"].startswith("<|endoftext|><|toxicity_profanity:")
    assert rows["empty-1"]["text"] == ""
    assert rows["blank-1"]["text"] == "  \n\t "
    for row in rows.values():
        assert restore_text(row["text"], tokens) == "".join(row["segments"]), row["id"]


def fabricated_run(root, *shards):
    """A finished run directory with scored shards of Detoxify, PII and code-style scores.

    Each shard is a list of rows (segments, toxicity, pii, code style scores).
    """
    names = ["toxicity_detoxify_v1", "pii_presidio_v1", CODE_STYLE]
    aliases = ["toxicity", "pii", "code_style"]
    provenance = {
        "scorers": [
            {"name": n, "alias": a, "kinds": [], "options": {}}
            for n, a in zip(names, aliases, strict=True)
        ]
    }
    documents = 0
    for shard_index, rows in enumerate(shards):
        columns = {name: [] for name in scored_schema(names).names}
        for segments, toxicity, pii, style in rows:
            documents += 1
            values = {
                "id": f"doc-{documents}",
                "text": "".join(segments),
                "kind": "prose" if style is None else "code",
                "segments": segments,
                "segment_starts": [0] * len(segments),
                "segment_ends": [0] * len(segments),
                "num_segments": len(segments),
                score_column(names[0]): toxicity,
                score_column(names[1]): pii,
                score_column(names[2]): style,
                "metadata": "{}",
                "input_file": "in.jsonl",
                "input_line": documents,
            }
            for key, value in values.items():
                columns[key].append(value)

        path = root / "scored" / f"in-{shard_index:05d}.parquet"
        writer = ParquetShardWriter(str(path), scored_schema(names), provenance)
        writer.write(columns)
        writer.close()

    counts = {"documents_read": documents, "documents_scored": documents, "segments_good": 1}
    manifest = {
        "config": RunConfig(
            inputs="in.jsonl", output_dir=str(root), scorers=tuple(aliases)
        ).to_dict(),
        "input_files": 1,
        "all_counts": dict(counts, documents_written=documents),
        "label_counts": {"segments_good": 1, "documents_written": documents},
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_percentiles_span_all_shards(tmp_path):
    low = [([f"L{i}. "], [i / 100], [0.0], None) for i in range(1, 31)]
    high = [([f"H{i}. "], [0.5 + i / 100], [0.0], None) for i in range(1, 11)]
    source = fabricated_run(tmp_path / "run", low, high)
    relabelled(source, tmp_path / "out", percentiles={"toxicity": 75}, default_percentile=0)
    entry = read_json(tmp_path / "out" / "thresholds.json")["toxicity_detoxify_v1"]
    assert entry["threshold"] == 0.3
    assert entry["num_segments"] == 40
    assert entry["fraction_good"] == 0.75


def test_preset_phf_labels_detoxify_scores(tmp_path):
    rows = [
        (["Fine. ", "Rude. "], [0.00056, 0.0006], [0.0, 0.0], None),
        (["Mail me at a@b.c."], [0.0001], [0.05], None),
        (["x = 1\n", "y=2\n"], None, None, [0.0, 0.25]),
    ]
    source = fabricated_run(tmp_path / "run", rows)
    manifest, table = relabelled(source, tmp_path / "out", preset="phf")
    thresholds = read_json(tmp_path / "out" / "thresholds.json")
    assert {name: entry["threshold"] for name, entry in thresholds.items()} == {
        "toxicity_detoxify_v1": 0.00056,
        "pii_presidio_v1": 0.0,
        CODE_STYLE: 0.0,
    }
    assert all(entry["preset"] == "phf" for entry in thresholds.values())
    assert all(entry["percentile"] is None for entry in thresholds.values())
    assert table.column("labels").to_pylist() == [["good", "bad"], ["bad"], ["good", "bad"]]
    assert table.column("text").to_pylist()[0] == "<|good|>Fine. <|bad|>Rude. "
    assert manifest["counts"]["documents_read"] == 3
    assert manifest["counts"]["balanced"] is True


def test_empty_corpus_records_null_thresholds(tmp_path):
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    inputs = tmp_path / "in"
    inputs.mkdir()
    write_jsonl(inputs / "a.jsonl", [{"id": "e", "text": ""}, {"id": "b", "text": "  \n"}])
    write_jsonl(inputs / "b.jsonl", [])
    out = tmp_path / "out"
    config = RunConfig(inputs=str(inputs), output_dir=str(out), scorers=SCORERS)
    manifest = run(config, runner=FnApiRunner())
    thresholds = read_json(out / "thresholds.json")
    for name in (TOXICITY, CODE_STYLE):
        assert thresholds[name]["threshold"] is None
        assert thresholds[name]["fraction_good"] is None
        assert thresholds[name]["num_segments"] == 0
    assert manifest["counts"]["documents_written"] == 2
    assert manifest["counts"]["balanced"] is True
    shards = sorted((out / "shards").glob("*.parquet"))
    assert [pq.read_metadata(path).num_rows for path in shards] == [2, 0]
    from schemas.output import labelled_schema

    for path in shards:
        assert pq.read_schema(path).remove_metadata() == labelled_schema([TOXICITY, CODE_STYLE])
    phf_manifest, phf = relabelled(out, tmp_path / "phf", layout="phf", layout_scorer="code_style")
    assert phf.num_rows == 2
    assert phf_manifest["layout"]["meta_fields"] == {"id": "string"}


def test_tie_warning_names_scorer(source_run, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.run"):
        relabelled(source_run[2], tmp_path / "out", default_percentile=5)
    entry = read_json(tmp_path / "out" / "thresholds.json")[CODE_STYLE]
    assert entry["threshold"] == 0.0
    assert entry["fraction_good"] > 0.06
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(m.startswith(f"{CODE_STYLE}: ") and "(ties)" in m for m in warnings), warnings
