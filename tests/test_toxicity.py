"""Tests of the Detoxify toxicity scorer on a random-weight tiny BERT, fully offline."""

from __future__ import annotations

import itertools
import random
import shutil

import pytest

pytest.importorskip("detoxify")
torch = pytest.importorskip("torch")

from detoxify import Detoxify  # noqa: E402

from scorers import onnx_int8, toxicity  # noqa: E402
from scorers.base import MissingDependencyError, ScorerConfigError  # noqa: E402
from scorers.testing import write_detoxify_checkpoint  # noqa: E402
from scorers.toxicity import (  # noqa: E402
    MODEL_WINDOW,
    DetoxifyToxicityScorer,
    ModelDownloadError,
    plan_batches,
)
from tests.conftest import make_toxicity_scorer as make_scorer  # noqa: E402

RUN_ON = " ".join(["word", "and", "another", "then"] * 150)  # 600 words, no punctuation

MIXED = [
    "You are a wonderful person.",
    "The baker opens the shop before the sun is up, and the first people in line are "
    "usually the workers going to the station. " * 6,
    "idiot",
    "You are a wonderful person.",
    "Ünïcödé text: café, naïve, Zürich, 東京, emoji 🙂.",
    "a",
    "The librarian knows most of them by name.",
    "idiot",
    "Some of them read quietly, others write long reports for school.",
    "You are a wonderful person.",
]


@pytest.fixture(scope="module")
def reference(tiny_checkpoint, tmp_path_factory):
    """Load stock Detoxify from a copy of the checkpoint whose model_type is the local directory.

    Detoxify's own loader is independent of the scorer's, so equal scores show that the
    scorer built the same model and tokenizer.
    """
    checkpoint_path, hf_dir = tiny_checkpoint
    loaded = torch.load(checkpoint_path, weights_only=True)
    loaded["config"]["arch"]["args"]["model_type"] = str(hf_dir)
    local_copy = tmp_path_factory.mktemp("reference") / "local.ckpt"
    torch.save(loaded, local_copy)
    return Detoxify(checkpoint=str(local_copy), huggingface_config_path=str(hf_dir))


def count_model_rows(scorer):
    """Record the shape of every batch the scorer's model receives.

    The hook sits on the embedding layer, which both the packed and the model's own forward
    call once per batch with the padded input ids.
    """
    shapes = []

    def record(_module, _args, kwargs):
        shapes.append(tuple(kwargs["input_ids"].shape))

    scorer.detoxify.model.base_model.embeddings.register_forward_pre_hook(record, with_kwargs=True)
    return shapes


def test_checkpoint_stores_hub_model_type(tiny_checkpoint):
    checkpoint_path, hf_dir = tiny_checkpoint
    loaded = torch.load(checkpoint_path, weights_only=True)
    assert loaded["config"]["arch"]["args"]["model_type"] == "bert-base-uncased"
    assert loaded["config"]["arch"]["args"]["num_classes"] == 6
    assert (hf_dir / "vocab.txt").is_file()
    assert (hf_dir / "config.json").is_file()


def test_checkpoint_generator_is_seeded(tiny_checkpoint, tmp_path):
    again_path, again_hf_dir = write_detoxify_checkpoint(tmp_path, size="tiny", seed=0)
    first = torch.load(tiny_checkpoint[0], weights_only=True)["state_dict"]
    second = torch.load(again_path, weights_only=True)["state_dict"]
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key
    vocab = (tiny_checkpoint[1] / "vocab.txt").read_text(encoding="utf-8")
    assert (again_hf_dir / "vocab.txt").read_text(encoding="utf-8") == vocab


def test_offline_load_matches_stock_detoxify(tiny_checkpoint, reference):
    scorer = make_scorer(tiny_checkpoint)
    text = "The librarian knows most of them by name."
    expected = reference.predict(text)["toxicity"]
    assert scorer.detoxify.class_names[0] == "toxicity"
    assert scorer.score_segments([text])[0] == pytest.approx(expected, abs=1e-6)


def test_batched_scores_match_predict(tiny_checkpoint, reference):
    scorer = make_scorer(tiny_checkpoint, batch_size=3, max_tokens=40)
    scores = scorer.score_segments(MIXED)
    assert len(scores) == len(MIXED)
    for segment, score in zip(MIXED, scores, strict=True):
        assert isinstance(score, float)
        assert score == pytest.approx(reference.predict(segment)["toxicity"], abs=1e-6), segment


def test_scores_distinct_and_in_order(tiny_checkpoint, reference):
    # Scores of different segments differ by far more than 1e-6, so a mixed-up order fails
    # the comparison with predict above; check that premise here.
    distinct = list(dict.fromkeys(MIXED))
    expected = [reference.predict(segment)["toxicity"] for segment in distinct]
    gaps = [abs(a - b) for i, a in enumerate(expected) for b in expected[i + 1 :]]
    assert min(gaps) > 1e-4

    scorer = make_scorer(tiny_checkpoint, batch_size=2, max_tokens=16)
    reversed_scores = scorer.score_segments(distinct[::-1])
    assert reversed_scores == pytest.approx(expected[::-1], abs=1e-6)


def test_duplicates_scored_once(tiny_checkpoint):
    scorer = make_scorer(tiny_checkpoint, batch_size=3, max_tokens=40)
    shapes = count_model_rows(scorer)
    scores = scorer.score_segments(MIXED)
    assert sum(rows for rows, _ in shapes) == len(set(MIXED))
    assert scorer.stats()["duplicate_segments"] == len(MIXED) - len(set(MIXED))
    assert scores[0] == scores[3] == scores[9]
    assert scores[2] == scores[7]


def test_batches_within_limits(tiny_checkpoint):
    scorer = make_scorer(tiny_checkpoint, batch_size=3, max_tokens=40)
    shapes = count_model_rows(scorer)
    scorer.score_segments(MIXED)
    assert len(shapes) > 1
    for rows, width in shapes:
        assert rows <= 3
        assert rows == 1 or rows * width <= 40


def test_run_on_sentence_truncated(tiny_checkpoint, reference):
    scorer = make_scorer(tiny_checkpoint)
    assert len(RUN_ON.split()) == 600
    assert len(scorer.detoxify.tokenizer(RUN_ON)["input_ids"]) > MODEL_WINDOW
    shapes = count_model_rows(scorer)

    scores = scorer.score_segments(["Short one.", RUN_ON, RUN_ON])
    assert scorer.stats()["truncated_segments"] == 2
    assert max(width for _, width in shapes) == MODEL_WINDOW
    assert scores[1] == pytest.approx(reference.predict(RUN_ON)["toxicity"], abs=1e-6)


def test_blank_segments_score_none(tiny_checkpoint):
    scorer = make_scorer(tiny_checkpoint)
    scores = scorer.score_segments(["", "  \n", "Hello there."])
    assert scores[0] is None
    assert scores[1] is None
    assert isinstance(scores[2], float)
    assert scorer.score_segments(["\t"]) == [None]


def test_stats_reset_by_setup(tiny_checkpoint):
    scorer = make_scorer(tiny_checkpoint)
    scorer.score_segments([RUN_ON, "a", "a"])
    assert scorer.stats() == {"truncated_segments": 1, "duplicate_segments": 1}
    scorer.setup()
    assert scorer.stats() == {"truncated_segments": 0, "duplicate_segments": 0}


def test_cache_scores_repeats_across_calls(tiny_checkpoint):
    scorer = make_scorer(tiny_checkpoint)
    shapes = count_model_rows(scorer)
    first = scorer.score_segments(["You are a wonderful person.", "idiot"])

    again = scorer.score_segments(["idiot", "The librarian knows most of them by name."])

    assert again[0] == first[1]
    assert [rows for rows, _ in shapes] == [2, 1]
    assert scorer.stats()["duplicate_segments"] == 1


def test_cache_counts_truncated_repeats(tiny_checkpoint):
    scorer = make_scorer(tiny_checkpoint)
    shapes = count_model_rows(scorer)
    scorer.score_segments([RUN_ON])

    scorer.score_segments([RUN_ON])

    assert len(shapes) == 1
    assert scorer.stats() == {"truncated_segments": 2, "duplicate_segments": 1}


def test_cache_drops_least_recent(tiny_checkpoint):
    scorer = make_scorer(tiny_checkpoint, cache_size=1)
    shapes = count_model_rows(scorer)

    for segments in (["one"], ["two"], ["two"], ["one"]):
        scorer.score_segments(segments)

    assert len(shapes) == 3
    assert scorer.stats()["duplicate_segments"] == 1


def test_cache_off(tiny_checkpoint):
    scorer = make_scorer(tiny_checkpoint, cache_size=0)
    shapes = count_model_rows(scorer)

    scorer.score_segments(["one", "one"])
    scorer.score_segments(["one"])

    assert [rows for rows, _ in shapes] == [1, 1]
    assert scorer.stats()["duplicate_segments"] == 1


def test_fp16_rejected_on_cpu(tiny_checkpoint):
    checkpoint_path, hf_dir = tiny_checkpoint
    scorer = DetoxifyToxicityScorer(
        checkpoint=str(checkpoint_path), hf_dir=str(hf_dir), device="cpu", fp16=True
    )

    with pytest.raises(ScorerConfigError, match="fp16 runs on CUDA devices only"):
        scorer.setup()


def test_fp16_autocast_close_to_float32(tiny_checkpoint, monkeypatch):
    # CUDA is not available in the tests, so the float16 path runs on the CPU here.
    monkeypatch.setattr(toxicity, "_check_fp16_device", lambda fp16, device: None)
    full = make_scorer(tiny_checkpoint).score_segments(MIXED)
    half = make_scorer(tiny_checkpoint, fp16=True).score_segments(MIXED)

    differences = [abs(a - b) for a, b in zip(full, half, strict=True)]
    assert all(isinstance(score, float) for score in half)
    assert max(differences) < 5e-3
    assert max(differences) > 1e-6


_payload_calls = []


def _record_payload_call():
    _payload_calls.append("unpickled")


class _Payload:
    """An object whose unpickling runs a function, as a malicious checkpoint would."""

    def __reduce__(self):
        return (_record_payload_call, ())


def test_pickled_object_rejected(tiny_checkpoint, tmp_path):
    checkpoint_path, hf_dir = tiny_checkpoint
    loaded = torch.load(checkpoint_path, weights_only=True)
    loaded["config"]["payload"] = _Payload()
    unsafe_path = tmp_path / "unsafe.ckpt"
    torch.save(loaded, unsafe_path)
    _payload_calls.clear()

    scorer = DetoxifyToxicityScorer(checkpoint=str(unsafe_path), hf_dir=str(hf_dir))
    with pytest.raises(ScorerConfigError, match="weights_only=True") as raised:
        scorer.setup()
    assert str(unsafe_path) in str(raised.value)
    assert "_record_payload_call" in str(raised.value)
    assert _payload_calls == []


def test_missing_checkpoint_named(tiny_checkpoint, tmp_path):
    missing = tmp_path / "no_such.ckpt"
    scorer = DetoxifyToxicityScorer(checkpoint=str(missing), hf_dir=str(tiny_checkpoint[1]))
    with pytest.raises(ScorerConfigError, match="could not be read") as raised:
        scorer.setup()
    assert str(missing) in str(raised.value)


def test_missing_hf_dir_named(tiny_checkpoint, tmp_path):
    missing = tmp_path / "no_such_dir"
    scorer = DetoxifyToxicityScorer(checkpoint=str(tiny_checkpoint[0]), hf_dir=str(missing))
    with pytest.raises(ScorerConfigError, match="is not a directory") as raised:
        scorer.setup()
    assert str(missing) in str(raised.value)


def test_failed_download_explains_offline_use(tiny_checkpoint, monkeypatch):
    # The download function is replaced, so nothing touches the network.
    calls = []

    def fail_download(url, **kwargs):
        calls.append((url, kwargs))
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail_download)
    scorer = DetoxifyToxicityScorer(model="unbiased", hf_dir=str(tiny_checkpoint[1]))
    with pytest.raises(ModelDownloadError) as raised:
        scorer.setup()
    message = str(raised.value)
    assert "could not be downloaded" in message
    assert "--toxicity-checkpoint and --toxicity-hf-dir" in message
    assert "--scorers toxicity_profanity" in message
    assert calls[0][0].endswith("/toxic_debiased-c7548aa0.ckpt")
    assert calls[0][1]["check_hash"] is True


def test_wrong_format_checkpoint_rejected(tiny_checkpoint, tmp_path):
    path = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(2)}, path)
    scorer = DetoxifyToxicityScorer(checkpoint=str(path), hf_dir=str(tiny_checkpoint[1]))
    with pytest.raises(ScorerConfigError, match="not in Detoxify's format"):
        scorer.setup()


def test_path_objects_accepted(tiny_checkpoint, tmp_path, reference):
    # Path objects work as well as strings, and hf_dir need not sit beside the checkpoint.
    checkpoint_path, hf_dir = tiny_checkpoint
    moved_hf_dir = shutil.copytree(hf_dir, tmp_path / "elsewhere")
    scorer = DetoxifyToxicityScorer(checkpoint=checkpoint_path, hf_dir=moved_hf_dir)
    scorer.setup()
    text = "a"
    assert scorer.score_segments([text])[0] == pytest.approx(
        reference.predict(text)["toxicity"], abs=1e-6
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "toxic-bert"}, "invalid toxicity model 'toxic-bert'"),
        ({"batch_size": 0}, "invalid toxicity batch_size 0"),
        ({"max_tokens": "8192"}, "invalid toxicity max_tokens '8192'"),
        ({"threads": -1}, "invalid toxicity threads -1"),
        ({"precision": "fp16"}, "invalid toxicity precision 'fp16'"),
        ({"batch_cost": 0}, "invalid toxicity batch_cost 0"),
        ({"window": 3}, "has no option 'window'"),
        ({"fp16": "yes"}, "invalid toxicity fp16 'yes'"),
        ({"cache_size": -1}, "invalid toxicity cache_size -1"),
    ],
)
def test_invalid_options_rejected(options, message):
    with pytest.raises(ScorerConfigError, match=message):
        DetoxifyToxicityScorer(**options)


def test_valid_model_names_accepted():
    for model in ("original", "unbiased", "multilingual", "original-small", "unbiased-small"):
        assert DetoxifyToxicityScorer(model=model).model_name == model


def test_score_before_setup_raises():
    with pytest.raises(RuntimeError, match="call setup"):
        DetoxifyToxicityScorer().score_segments(["text"])


@pytest.mark.parametrize(
    ("lengths", "batch_size", "max_tokens", "expected"),
    [
        ([5, 9, 7, 3], 2, 100, [[1, 2], [0, 3]]),
        ([5, 9, 7, 3], 10, 17, [[1], [2, 0], [3]]),
        ([4, 4, 4, 4, 4], 10, 12, [[0, 1, 2], [3, 4]]),
        ([50, 2], 4, 10, [[0], [1]]),
        ([], 4, 10, []),
    ],
)
def test_plan_batches(lengths, batch_size, max_tokens, expected):
    assert plan_batches(lengths, batch_size, max_tokens) == expected


@pytest.mark.parametrize("command", ["run", "score"])
def test_weights_unavailable_is_one_line_exit_1(tmp_path, monkeypatch, command):
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.conftest import write_jsonl

    def offline(model_name):
        raise toxicity.ModelDownloadError(f"Detoxify {model_name!r} weights are offline. Hint.")

    monkeypatch.setattr(toxicity, "_download_checkpoint", offline)
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "Hello there."}])
    args = [command, str(source), str(tmp_path / "out"), "--scorers", "toxicity"]
    result = CliRunner().invoke(app, [*args, "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.splitlines()[-1] == (
        "annotate: error: Detoxify 'original' weights are offline. Hint."
    )


@pytest.mark.parametrize(
    ("lengths", "batch_cost", "expected"),
    [
        # Padding the two short rows to 10 costs 16 tokens: more than a batch at cost 15,
        # less than a batch at cost 17. At cost 0, batches of one row carry no padding.
        ([10, 2, 10, 2], 0, [[0], [2], [1], [3]]),
        ([10, 2, 10, 2], 100, [[0, 2, 1, 3]]),
        ([10, 2, 10, 2], 15, [[0, 2], [1, 3]]),
        ([10, 2, 10, 2], 17, [[0, 2, 1, 3]]),
    ],
)
def test_plan_batches_weighs_padding(lengths, batch_cost, expected):
    assert plan_batches(lengths, 4, 100, batch_cost) == expected


def _set_partitions(items):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _set_partitions(rest):
        yield [[first], *partition]
        for index in range(len(partition)):
            yield [*partition[:index], [first, *partition[index]], *partition[index + 1 :]]


def _plan_cost(lengths, batches, batch_cost):
    return sum(len(b) * max(lengths[i] for i in b) + batch_cost for b in batches)


def test_plan_batches_minimal_cost():
    # Exhaustive search over every partition, not only runs of sorted rows, on seeded inputs.
    rng = random.Random(7)
    for _ in range(40):
        lengths = [rng.randint(1, 40) for _ in range(rng.randint(1, 7))]
        batch_size, max_tokens, batch_cost = rng.randint(1, 4), rng.randint(20, 120), 10
        allowed = [
            p
            for p in _set_partitions(list(range(len(lengths))))
            if all(
                len(b) <= batch_size
                and (len(b) == 1 or len(b) * max(lengths[i] for i in b) <= max_tokens)
                for b in p
            )
        ]
        best = min(_plan_cost(lengths, p, batch_cost) for p in allowed)
        plan = plan_batches(lengths, batch_size, max_tokens, batch_cost)
        assert sorted(itertools.chain.from_iterable(plan)) == list(range(len(lengths)))
        normalized = sorted(sorted(b) for b in plan)
        assert normalized in [sorted(sorted(b) for b in p) for p in allowed], lengths
        assert _plan_cost(lengths, plan, batch_cost) == best, (lengths, batch_size, max_tokens)


def test_batch_cost_option_splits_batches(tiny_checkpoint):
    # 32, 12, 3 and 3 tokens: at cost 1 every padded token costs more than a batch.
    texts = ["word " * 30, "word " * 10, "a", "b"]
    for batch_cost, expected in ((1, [(1, 32), (1, 12), (2, 3)]), (1000, [(4, 32)])):
        scorer = make_scorer(tiny_checkpoint, batch_cost=batch_cost)
        shapes = count_model_rows(scorer)
        scorer.score_segments(texts)
        assert shapes == expected, batch_cost


def test_fp32_precision_is_default(tiny_checkpoint):
    default = make_scorer(tiny_checkpoint).score_segments(MIXED)
    exact = make_scorer(tiny_checkpoint, precision="fp32").score_segments(MIXED)
    assert exact == default


def test_bf16_scores_close_to_fp32(tiny_checkpoint):
    # bfloat16 keeps 8 significant bits; on the tiny model scores moved by at most 8e-4.
    exact = make_scorer(tiny_checkpoint).score_segments(MIXED)
    reduced = make_scorer(tiny_checkpoint, precision="bf16").score_segments(MIXED)
    differences = [abs(a - b) for a, b in zip(exact, reduced, strict=True)]
    assert max(differences) <= 5e-3
    assert max(differences) > 1e-6, "bf16 gave the fp32 scores, so autocast did not apply"


def test_int8_scores_close_to_fp32(tiny_checkpoint):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    # On the tiny model int8 moved scores by at most 7e-3.
    exact = make_scorer(tiny_checkpoint).score_segments(MIXED + [RUN_ON])
    scorer = make_scorer(tiny_checkpoint, precision="int8", batch_size=3, max_tokens=40)
    reduced = scorer.score_segments(MIXED + [RUN_ON])
    differences = [abs(a - b) for a, b in zip(exact, reduced, strict=True)]
    assert max(differences) <= 0.03
    assert max(differences) > 1e-6, "int8 gave the fp32 scores, so the ONNX model did not run"
    assert scorer.stats()["truncated_segments"] == 1


def test_int8_without_onnxruntime_names_extra(tiny_checkpoint, monkeypatch):
    real_find_spec = onnx_int8.importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "onnxruntime" else real_find_spec(name, *args)

    monkeypatch.setattr(onnx_int8.importlib.util, "find_spec", find_spec)
    scorer = DetoxifyToxicityScorer(
        checkpoint=str(tiny_checkpoint[0]), hf_dir=str(tiny_checkpoint[1]), precision="int8"
    )
    with pytest.raises(MissingDependencyError, match="onnxruntime") as raised:
        scorer.setup()
    assert 'pip install "feedback-annotate[toxicity,onnx]"' in str(raised.value)


def test_int8_on_gpu_device_rejected(tiny_checkpoint):
    scorer = DetoxifyToxicityScorer(
        checkpoint=str(tiny_checkpoint[0]),
        hf_dir=str(tiny_checkpoint[1]),
        precision="int8",
        device="cuda",
    )
    with pytest.raises(ScorerConfigError, match="runs on the CPU only, but the device is 'cuda'"):
        scorer.setup()
