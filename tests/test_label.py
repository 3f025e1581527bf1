from pipeline.label import BAD, GOOD, insert_tokens, label_segments, remove_tokens
from schemas.config import LabelOptions

THRESHOLDS = {"tox": 0.5, "pii": 0.0}


def test_good_needs_every_scorer_safe():
    segments = ["A. ", "B. ", "C. ", "D."]
    scores = {"tox": [0.5, 0.6, 0.1, 0.1], "pii": [0.0, 0.0, 0.01, 0.0]}
    assert label_segments(segments, scores, THRESHOLDS) == [GOOD, BAD, BAD, GOOD]


def test_scorer_that_does_not_apply_is_ignored():
    assert label_segments(["x = 1\n"], {"tox": None, "pii": None}, THRESHOLDS) == [GOOD]


def test_unscored_segment_is_bad():
    assert label_segments(["A."], {"tox": [None], "pii": [0.0]}, THRESHOLDS) == [BAD]


def test_blank_segments_get_no_label():
    labels = label_segments(["A. ", "  \n"], {"tox": [0.1, None], "pii": [0.0, None]}, THRESHOLDS)
    assert labels == [GOOD, None]


def test_tokens_inserted_and_removed():
    options = LabelOptions()
    segments = ["Hi. ", "\n", "Bye."]
    text = insert_tokens(segments, [GOOD, None, BAD], options)
    assert text == "<|good|>Hi. \n<|bad|>Bye."
    assert remove_tokens(text, options) == "".join(segments)


def test_custom_tokens():
    options = LabelOptions(good_token="<|aligned|>", bad_token="<|misaligned|>")
    assert insert_tokens(["a", "b"], [GOOD, BAD], options) == "<|aligned|>a<|misaligned|>b"
