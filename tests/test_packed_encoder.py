"""Tests of the packed forward: the model's own logits, computed on real tokens only."""

from __future__ import annotations

import logging

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from scorers import toxicity  # noqa: E402
from scorers.packed_encoder import PackedEncoder, unsupported_reason  # noqa: E402
from scorers.toxicity import DetoxifyToxicityScorer  # noqa: E402
from tests.conftest import make_toxicity_scorer as make_scorer  # noqa: E402

TEXTS = [
    "You are a wonderful person.",
    "The baker opens the shop before the sun is up, and the first people in line are "
    "usually the workers going to the station.",
    "idiot",
    "Ünïcödé text: café, naïve, Zürich, 東京, emoji 🙂.",
    "a",
]

TINY = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "intermediate_size": 64,
    "vocab_size": 120,
    "max_position_embeddings": 64,
    "num_labels": 6,
}


def random_model(class_name: str, config_name: str, seed: int = 0):
    torch.manual_seed(seed)
    config = getattr(transformers, config_name)(**TINY)
    return getattr(transformers, class_name)(config).eval()


def padded_batch(lengths: list[int], vocab_size: int, pad_id: int = 1, seed: int = 0):
    """Random ids of rows of the given lengths; padding positions contain ``pad_id``."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(3, vocab_size, (len(lengths), width), generator=generator)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
        ids[row, length:] = pad_id
    return ids, mask


@pytest.mark.parametrize(
    ("class_name", "config_name"),
    [
        ("BertForSequenceClassification", "BertConfig"),
        ("RobertaForSequenceClassification", "RobertaConfig"),
        ("XLMRobertaForSequenceClassification", "XLMRobertaConfig"),
    ],
)
def test_packed_logits_match_forward(class_name, config_name):
    model = random_model(class_name, config_name)
    ids, mask = padded_batch([9, 2, 17, 5, 17], TINY["vocab_size"])
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits
        packed = PackedEncoder(model)(input_ids=ids, attention_mask=mask)
    assert packed.shape == expected.shape == (5, TINY["num_labels"])
    assert torch.allclose(packed, expected, atol=1e-6), (packed - expected).abs().max()


def test_packed_logits_ignore_padding():
    model = random_model("BertForSequenceClassification", "BertConfig")
    encoder = PackedEncoder(model)
    ids, mask = padded_batch([4, 11, 7], TINY["vocab_size"])
    other_ids = ids.clone()
    other_ids[mask == 0] = 99
    with torch.inference_mode():
        assert torch.equal(encoder(ids, mask), encoder(other_ids, mask))


def test_joined_projections_keep_forward():
    model = random_model("BertForSequenceClassification", "BertConfig")
    ids, mask = padded_batch([6, 3], TINY["vocab_size"])
    with torch.inference_mode():
        before = model(input_ids=ids, attention_mask=mask).logits
    parameters = sum(p.numel() for p in model.parameters())

    encoder = PackedEncoder(model)
    with torch.inference_mode():
        after = model(input_ids=ids, attention_mask=mask).logits
    assert torch.equal(before, after)
    # The query weight is a view of the joined weight, not a copy.
    query = model.bert.encoder.layer[0].attention.self.query.weight
    joined = encoder.projections[0][0]
    assert query.untyped_storage().data_ptr() == joined.untyped_storage().data_ptr()
    assert sum(p.numel() for p in model.parameters()) == parameters


def test_unsupported_model_reason():
    albert = random_model("AlbertForSequenceClassification", "AlbertConfig")
    reason = unsupported_reason(albert)
    assert reason is not None and "AlbertForSequenceClassification" in reason
    with pytest.raises(ValueError, match="AlbertForSequenceClassification"):
        PackedEncoder(albert)

    relative = transformers.BertConfig(**TINY, position_embedding_type="relative_key")
    bert = transformers.BertForSequenceClassification(relative)
    assert unsupported_reason(bert) == "position_embedding_type is 'relative_key', not 'absolute'"


def test_scorer_packed_by_default(tiny_checkpoint):
    packed = make_scorer(tiny_checkpoint)
    padded = make_scorer(tiny_checkpoint, packed=False)
    calls = {"packed": 0, "padded": 0}
    for name, scorer in (("packed", packed), ("padded", padded)):

        def count(*_args, name=name, **_kwargs):
            calls[name] += 1

        scorer.detoxify.model.register_forward_pre_hook(count)

    packed_scores = packed.score_segments(TEXTS)
    padded_scores = padded.score_segments(TEXTS)
    # The model's own forward ran for every batch of the padded scorer only.
    assert calls["packed"] == 0
    assert calls["padded"] >= 1
    assert packed_scores == pytest.approx(padded_scores, abs=1e-6)


def test_scorer_fallback_on_mismatch(tiny_checkpoint, monkeypatch, caplog):
    class WrongEncoder(PackedEncoder):
        def __call__(self, *args, **kwargs):
            return super().__call__(*args, **kwargs) + 0.01

    exact = make_scorer(tiny_checkpoint, packed=False).score_segments(TEXTS)
    monkeypatch.setattr("scorers.packed_encoder.PackedEncoder", WrongEncoder)
    with caplog.at_level(logging.WARNING, logger=toxicity.__name__):
        scorer = make_scorer(tiny_checkpoint)
    assert "the model's own forward runs instead" in caplog.text
    assert scorer.score_segments(TEXTS) == pytest.approx(exact, abs=1e-6)


def test_packed_option_rejects_string():
    with pytest.raises(toxicity.ScorerConfigError, match="invalid toxicity packed 'yes'"):
        DetoxifyToxicityScorer(packed="yes")


def test_bf16_casts_no_weights(tiny_checkpoint):
    from torch.profiler import profile

    scorer = make_scorer(tiny_checkpoint, precision="bf16", batch_size=1)
    model = scorer.detoxify.model
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert {m.weight.dtype for m in linears} == {torch.bfloat16}
    weight_shapes = {tuple(p.shape) for m in linears for p in m.parameters()}
    # 3, 4 and 5 tokens: no activation has the shape of a weight of the tiny model.
    with profile(record_shapes=True) as recorded:
        scores = scorer.score_segments(["a", "b c", "d e f"])  # one batch per text
    casts = [
        tuple(event.input_shapes[0])
        for event in recorded.events()
        if event.name == "aten::_to_copy" and event.input_dtypes[:1] == ["float"]
    ]
    assert casts, "autocast cast no input, so it did not apply"
    assert not weight_shapes & set(casts)
    assert all(isinstance(score, float) for score in scores)


def test_feed_forward_chunks_match_whole():
    from scorers.packed_encoder import _feed_forward

    model = random_model("BertForSequenceClassification", "BertConfig")
    layer = model.bert.encoder.layer[0]
    generator = torch.Generator().manual_seed(1)
    attended = torch.randn(7, TINY["hidden_size"], generator=generator)
    hidden = torch.randn(7, TINY["hidden_size"], generator=generator)
    with torch.inference_mode():
        whole = _feed_forward(layer, attended, hidden, exact_gelu=True)
        chunked = _feed_forward(layer, attended, hidden, exact_gelu=True, chunk=3)
        # The module's own activation function gives the same values as gelu_ in place.
        own = _feed_forward(layer, attended, hidden, exact_gelu=False, chunk=3)
    assert torch.allclose(chunked, whole, atol=1e-6)
    assert torch.allclose(own, whole, atol=1e-6)
