"""Labels, control tokens, escaping and the drop fraction, on exact texts."""

import re
from collections import Counter

import pytest

from pipeline.label import (
    BAD,
    ESCAPE_CHARACTER,
    GOOD,
    TokenWriter,
    check_control_tokens,
    control_token_pattern,
    control_tokens,
    insert_tokens,
    label_segments,
    remove_tokens,
    restore_text,
    score_bucket,
    token_dropped,
    unescape,
)
from schemas.config import LabelOptions

THRESHOLDS = {"tox": 0.5, "pii": 0.0}
ALIASES = {"tox": "toxicity", "pii": "pii"}
DEFAULT_TOKENS = ["<|good|>", "<|bad|>"]
E = ESCAPE_CHARACTER


def write(options, segments, scores, thresholds=THRESHOLDS, edges=None, doc_id="d"):
    counts = Counter()
    writer = TokenWriter(options, ALIASES, thresholds, edges)
    labels, text = writer.write(doc_id, segments, scores, counts)
    return labels, text, counts


def test_good_needs_every_scorer_safe():
    segments = ["A. ", "B. ", "C. ", "D."]
    scores = {"tox": [0.5, 0.6, 0.1, 0.1], "pii": [0.0, 0.0, 0.01, 0.0]}
    assert label_segments(segments, scores, THRESHOLDS) == [GOOD, BAD, BAD, GOOD]


def test_scorer_that_does_not_apply_is_ignored():
    assert label_segments(["x = 1\n"], {"tox": None, "pii": None}, THRESHOLDS) == [GOOD]


def test_unscored_segment_is_bad():
    assert label_segments(["A."], {"tox": [None], "pii": [0.0]}, THRESHOLDS) == [BAD]


def test_missing_threshold_makes_segment_bad():
    assert label_segments(["A."], {"tox": [0.0], "pii": None}, {"tox": None}) == [BAD]


def test_blank_segments_get_no_label():
    labels = label_segments(["A. ", "  \n"], {"tox": [0.1, None], "pii": [0.0, None]}, THRESHOLDS)
    assert labels == [GOOD, None]


def test_tokens_inserted_and_removed():
    segments = ["Hi. ", "\n", "Bye."]
    scores = {"tox": [0.1, None, 0.9], "pii": [0.0, None, 0.0]}
    labels, text, _ = write(LabelOptions(), segments, scores)
    assert labels == [GOOD, None, BAD]
    assert text == "<|good|>Hi. \n<|bad|>Bye."
    assert restore_text(text, DEFAULT_TOKENS) == "".join(segments)


def test_custom_tokens():
    options = LabelOptions(good_token="<|aligned|>", bad_token="<|misaligned|>")
    scores = {"tox": [0.1, 0.9], "pii": [0.0, 0.0]}
    _, text, _ = write(options, ["a", "b"], scores)
    assert text == "<|aligned|>a<|misaligned|>b"


def test_control_token_strings_in_input_are_escaped():
    source = "Our tagger writes <|good|> before clean text. Some scraped pages contain <|bad|> too."
    # The sentencizer's split of `source`; the pipeline tests run the real segmenter on it.
    segments = [source[:46], source[46:]]
    scores = {"tox": [0.1, 0.9], "pii": [0.0, 0.0]}
    _, text, counts = write(LabelOptions(), segments, scores)
    assert text == (
        f"<|good|>Our tagger writes <{E}|good|> before clean text. "
        f"<|bad|>Some scraped pages contain <{E}|bad|> too."
    )
    assert text.count("<|good|>") + text.count("<|bad|>") == 2
    assert text.startswith("<|good|>")
    assert text.index("<|bad|>") == len("<|good|>") + len(segments[0]) + 1
    assert counts["control_tokens_escaped"] == 2
    assert restore_text(text, DEFAULT_TOKENS) == source


def test_escape_character_in_input_is_doubled():
    segments = [f"a{E}b <{E}|good|> c{E}{E}. ", f"{E}<|bad|>"]
    scores = {"tox": [0.1, 0.1], "pii": [0.0, 0.0]}
    _, text, counts = write(LabelOptions(), segments, scores)
    assert text == f"<|good|>a{E}{E}b <{E}{E}|good|> c{E}{E}{E}{E}. <|good|>{E}{E}<{E}|bad|>"
    assert counts["escape_characters_doubled"] == 5
    assert counts["control_tokens_escaped"] == 1
    assert restore_text(text, DEFAULT_TOKENS) == "".join(segments)


def test_token_across_segment_boundary_is_escaped():
    pattern = control_token_pattern(DEFAULT_TOKENS)
    split_inside = ["x <|go", "od|> y"]
    text = insert_tokens(split_inside, [["<|good|>"], []], pattern)
    assert text == f"<|good|>x <{E}|good|> y"
    split_at_escape = ["x <", "|good|> y"]
    text = insert_tokens(split_at_escape, [["<|bad|>"], ["<|good|>"]], pattern)
    assert text == f"<|bad|>x <<|good|>{E}|good|> y"
    assert text.count("<|good|>") == 1
    assert restore_text(text, DEFAULT_TOKENS) == "x <|good|> y"


def test_restore_round_trip_on_hard_inputs():
    cases = [
        ["", ""],
        [E, E * 3, " "],
        ["<|good|><|bad|>", "<|good|>"],
        [f"<{E}|good|>", f"{E}<|bad|>{E}"],
        ["<|<|good|>|>", " <", "|bad|>"],
    ]
    pattern = control_token_pattern(DEFAULT_TOKENS)
    for segments in cases:
        tokens = [["<|bad|>"] if segment.strip() else [] for segment in segments]
        text = insert_tokens(segments, tokens, pattern)
        assert text.count("<|good|>") + text.count("<|bad|>") == sum(map(len, tokens)), segments
        assert restore_text(text, DEFAULT_TOKENS) == "".join(segments), segments


def test_remove_tokens_keeps_escapes_and_unescape_halves_runs():
    text = f"<|good|>a{E}{E}<{E}|bad|>"
    assert remove_tokens(text, DEFAULT_TOKENS) == f"a{E}{E}<{E}|bad|>"
    assert unescape(f"a{E}{E}<{E}|bad|>{E}{E}{E}{E}") == f"a{E}<|bad|>{E}{E}"


def test_blank_segments_never_get_a_token():
    segments = ["", "  \n", "A. ", "\t"]
    scores = {"tox": [None, None, 0.1, None], "pii": [None, None, 0.0, None]}
    for mode in ("label", "scorer", "bucket"):
        options = LabelOptions(token_mode=mode, document_token="<|endoftext|>")
        _, text, _ = write(options, segments, scores, edges={"tox": [0.2], "pii": [0.0]})
        assert text.startswith("<|endoftext|>  \n<|"), mode
        assert text.endswith("A. \t"), mode


def test_document_token_before_first_segment():
    options = LabelOptions(document_token="<|endoftext|>")
    scores = {"tox": [0.1, 0.1], "pii": [0.0, 0.0]}
    _, text, _ = write(options, ["A. ", "B."], scores)
    assert text == "<|endoftext|><|good|>A. <|good|>B."
    _, blank_text, _ = write(options, ["  "], {"tox": [None], "pii": [None]})
    assert blank_text == "  "
    _, empty_text, _ = write(options, [], {"tox": [], "pii": []})
    assert empty_text == ""


def test_per_scorer_tokens():
    options = LabelOptions(token_mode="scorer")
    scores = {"tox": [0.1, 0.9, 0.2], "pii": [0.0, 0.0, None]}
    labels, text, _ = write(options, ["A. ", "B. ", "C."], scores)
    assert labels == [GOOD, BAD, BAD]
    assert text == (
        "<|toxicity:good|><|pii:good|>A. "
        "<|toxicity:bad|><|pii:good|>B. "
        "<|toxicity:good|><|pii:bad|>C."
    )
    _, code_text, _ = write(options, ["x = 1\n"], {"tox": None, "pii": [0.0]})
    assert code_text == "<|pii:good|>x = 1\n"


def test_bucket_tokens():
    options = LabelOptions(token_mode="bucket", buckets=4)
    edges = {"tox": [0.1, 0.5, 0.8], "pii": [0.0, 0.0, 0.0]}
    scores = {"tox": [0.1, 0.11, 0.8, 0.95, None], "pii": [0.0, 0.0, 0.01, 0.0, 0.0]}
    _, text, _ = write(options, ["A. ", "B. ", "C. ", "D. ", "E."], scores, edges=edges)
    assert text == (
        "<|toxicity:0|><|pii:0|>A. "
        "<|toxicity:1|><|pii:0|>B. "
        "<|toxicity:2|><|pii:3|>C. "
        "<|toxicity:3|><|pii:0|>D. "
        "<|toxicity:3|><|pii:0|>E."
    )


def test_score_bucket_edges():
    edges = [0.1, 0.5, 0.8]
    assert [score_bucket(s, edges) for s in (0.0, 0.1, 0.2, 0.5, 0.81, None)] == [0, 0, 1, 1, 3, 3]
    assert score_bucket(0.3, []) == 0


def test_drop_token_fraction_is_seeded_and_stable():
    first = [token_dropped("doc-1", index, 0.5, 0) for index in range(8)]
    assert first == [False, True, True, True, False, True, False, True]
    assert first == [token_dropped("doc-1", index, 0.5, 0) for index in range(8)]
    other_seed = [token_dropped("doc-1", index, 0.5, 1) for index in range(8)]
    assert other_seed == [True, False, False, False, True, False, False, True]
    dropped = sum(token_dropped(f"doc-{i}", j, 0.25, 0) for i in range(1000) for j in range(10))
    assert dropped == 2608
    assert not any(token_dropped("doc-1", index, 0.0, 0) for index in range(100))
    assert all(token_dropped("doc-1", index, 1.0, 0) for index in range(100))


def test_dropped_segments_keep_their_label():
    options = LabelOptions(drop_token_fraction=0.5)
    segments = [f"S{i}. " for i in range(8)]
    scores = {"tox": [0.1] * 8, "pii": [0.0] * 8}
    labels, text, counts = write(options, segments, scores, doc_id="doc-1")
    assert labels == [GOOD] * 8
    assert text == "<|good|>S0. S1. S2. S3. <|good|>S4. S5. <|good|>S6. S7. "
    assert counts["segments_token_dropped"] == 5


def test_control_tokens_in_order():
    assert control_tokens(LabelOptions(), ALIASES) == DEFAULT_TOKENS
    scorer_mode = LabelOptions(token_mode="scorer", document_token="<|endoftext|>")
    assert control_tokens(scorer_mode, ALIASES) == [
        "<|endoftext|>",
        "<|toxicity:good|>",
        "<|toxicity:bad|>",
        "<|pii:good|>",
        "<|pii:bad|>",
    ]
    buckets = control_tokens(LabelOptions(token_mode="bucket", buckets=3), ALIASES)
    assert buckets == [
        "<|toxicity:0|>",
        "<|toxicity:1|>",
        "<|toxicity:2|>",
        "<|pii:0|>",
        "<|pii:1|>",
        "<|pii:2|>",
    ]


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (["<|good|>", "<|good|>"], "given twice"),
        (["<|good|>", "<|good|>x"], "is part of"),
        (["<good>", "good>bad"], "ends with the start"),
        (["ab", "ba"], "ends with the start"),
        (["<|a b|>"], "no whitespace"),
        (["g"], "at least 2 characters"),
        ([f"<{E}|x|>"], "no U+2060"),
    ],
)
def test_ambiguous_control_tokens_rejected(tokens, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        check_control_tokens(tokens)


def test_bucket_format_without_delimiters_rejected():
    options = LabelOptions(token_mode="bucket", buckets=12, scorer_token_format="{scorer}{label}")
    with pytest.raises(ValueError, match="is part of"):
        TokenWriter(options, ALIASES, THRESHOLDS)
