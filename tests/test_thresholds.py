"""Threshold rules, presets, and the accuracy of Beam's approximate percentiles."""

import logging

import numpy as np
import pytest

from pipeline.thresholds import (
    bucket_edges,
    choose_threshold,
    fraction_warning,
    nearest_rank,
    percentile_index,
    quantiles_combine_fn,
    rank_error,
    threshold_rules,
)
from schemas.config import LabelOptions

ALIASES = {
    "toxicity_detoxify_v1": "toxicity",
    "pii_presidio_v1": "pii",
    "code_style_pycodestyle_v1": "code_style",
}
PERCENTILES = [0, 0.1, 1, 5, 10, 25, 50, 60, 62, 63, 70, 90, 95, 99, 99.9, 100]


def tied_scores(count: int, seed: int = 7) -> np.ndarray:
    """About 60 % exact zeros, like PII and code-style scores, and a skewed rest with ties."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random(count) < 0.6, 0.0, np.round(rng.beta(0.5, 5, count), 3))


def approximate_quantiles(values, epsilon, weights=None, workers=4, batch=1000):
    """Feed the combiner as Beam does: per worker in batches, then merge the workers."""
    combine = quantiles_combine_fn(weights is not None, epsilon)
    accumulators = []
    for worker in range(workers):
        accumulator = combine.create_accumulator()
        part = values[worker::workers].tolist()
        part_weights = None if weights is None else weights[worker::workers].tolist()
        for start in range(0, len(part), batch):
            item = part[start : start + batch]
            if part_weights is not None:
                item = (item, part_weights[start : start + batch])
            accumulator = combine.add_input(accumulator, item)
        accumulators.append(accumulator)
    merged = combine.merge_accumulators(accumulators)
    collapsed = any(buffer.level > 0 for buffer in merged.buffers)
    return combine.extract_output(merged), collapsed


@pytest.mark.parametrize("epsilon", [0.05, 0.01, 0.001])
def test_quantile_rank_error_within_epsilon(epsilon):
    values = tied_scores(20_000)
    quantiles, _ = approximate_quantiles(values, epsilon)
    ordered = sorted(values.tolist())
    assert len(quantiles) == 10_001
    for percentile in PERCENTILES:
        threshold = quantiles[percentile_index(percentile)]
        assert rank_error(ordered, threshold, percentile) <= epsilon, percentile


def test_quantile_approximation_is_exercised():
    _, collapsed = approximate_quantiles(tied_scores(20_000), 0.05)
    assert collapsed


def test_weighted_quantile_rank_error_within_epsilon():
    values = tied_scores(20_000)
    weights = np.random.default_rng(3).integers(1, 300, len(values))
    quantiles, collapsed = approximate_quantiles(values, 0.05, weights)
    order = np.argsort(values, kind="stable")
    ordered = values[order].tolist()
    cumulative = np.cumsum(weights[order]).tolist()
    assert collapsed
    for percentile in PERCENTILES:
        threshold = quantiles[percentile_index(percentile)]
        assert rank_error(ordered, threshold, percentile, cumulative) <= 0.05, percentile


def test_small_input_gives_exact_nearest_rank():
    values = np.array([0.7, 0.1, 0.4, 0.4, 0.9, 0.2, 0.3])
    quantiles, _ = approximate_quantiles(values, 0.001, workers=2, batch=2)
    ordered = sorted(values.tolist())
    for percentile, expected in [(0, 0.1), (5, 0.1), (14.3, 0.2), (50, 0.4), (90, 0.9), (100, 0.9)]:
        assert quantiles[percentile_index(percentile)] == expected, percentile
        assert ordered[int(nearest_rank(percentile, len(ordered))) - 1] == expected, percentile


def test_rank_error_counts_ranks_outside_ties():
    ordered = [0.0] * 6 + [0.5, 0.6, 0.7, 0.8]
    assert rank_error(ordered, 0.0, 5) == 0.0
    assert rank_error(ordered, 0.0, 60) == 0.0
    assert rank_error(ordered, 0.0, 70) == pytest.approx(0.1)
    assert rank_error(ordered, 0.7, 50) == pytest.approx(0.4)
    assert rank_error(ordered, 0.7, 90) == 0.0


def test_preset_phf_gives_reference_thresholds():
    rules = threshold_rules(LabelOptions(preset="phf"), ALIASES)
    assert rules == {
        "toxicity_detoxify_v1": {"percentile": None, "threshold": 0.00056, "preset": "phf"},
        "pii_presidio_v1": {"percentile": None, "threshold": 0.0, "preset": "phf"},
        "code_style_pycodestyle_v1": {"percentile": None, "threshold": 0.0, "preset": "phf"},
    }


def test_explicit_rules_override_preset():
    options = LabelOptions(
        preset="phf",
        percentiles={"toxicity": 10},
        thresholds={"code_style_pycodestyle_v1": 0.02},
    )
    rules = threshold_rules(options, ALIASES)
    assert rules["toxicity_detoxify_v1"] == {"percentile": 10.0, "threshold": None, "preset": None}
    assert rules["code_style_pycodestyle_v1"]["threshold"] == 0.02
    assert rules["code_style_pycodestyle_v1"]["preset"] is None
    assert rules["pii_presidio_v1"]["threshold"] == 0.0


def test_default_percentile_for_unnamed_scorers():
    rules = threshold_rules(LabelOptions(default_percentile=2.5), {"x_v1": "x"})
    assert rules == {"x_v1": {"percentile": 2.5, "threshold": None, "preset": None}}


def test_preset_naming_no_scorer_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="pipeline.thresholds"):
        rules = threshold_rules(LabelOptions(preset="phf"), {"toxicity_profanity_v1": "profane"})
    assert rules["toxicity_profanity_v1"]["percentile"] == 5.0
    assert "preset phf names none of the scorers" in caplog.text


@pytest.mark.parametrize(
    "options",
    [LabelOptions(percentiles={"nope": 5}), LabelOptions(thresholds={"nope": 0.1})],
)
def test_rule_for_unknown_scorer_rejected(options):
    with pytest.raises(ValueError, match="names scorer 'nope', which is not in this run"):
        threshold_rules(options, ALIASES)


def test_percentile_and_threshold_for_one_scorer_rejected():
    with pytest.raises(ValueError, match="both a percentile and a fixed threshold"):
        LabelOptions(percentiles={"pii": 5}, thresholds={"pii": 0.0})


def test_choose_threshold():
    quantiles = [i / 10_000 for i in range(10_001)]
    percentile_rule = {"percentile": 5.0, "threshold": None}
    assert choose_threshold(percentile_rule, quantiles) == 0.05
    assert choose_threshold(percentile_rule, []) is None
    assert choose_threshold({"percentile": None, "threshold": 0.3}, []) == 0.3


def test_bucket_edges_are_equal_frequency_quantiles():
    quantiles = [i / 10_000 for i in range(10_001)]
    assert bucket_edges(quantiles, 4) == [0.25, 0.5, 0.75]
    assert bucket_edges([], 4) == []


def test_fraction_warning_only_beyond_one_point():
    entry = {
        "percentile": 5.0,
        "threshold": 0.0,
        "percentile_weight": "segments",
        "fraction_good": 0.9711,
        "fraction_good_characters": 0.05,
        "num_segments": 10_000,
    }
    message = fraction_warning("pii_presidio_v1", entry)
    assert message.startswith("pii_presidio_v1: 97.11% of the segments are labelled good")
    assert "ties" in message
    assert fraction_warning("x", dict(entry, fraction_good=0.0599)) is None
    assert fraction_warning("x", dict(entry, percentile_weight="characters")) is None
    assert fraction_warning("x", dict(entry, percentile=None)) is None
    assert fraction_warning("x", dict(entry, fraction_good=None)) is None


def test_fraction_warning_blames_too_few_segments():
    entry = {"percentile": 5.0, "threshold": 0.1, "fraction_good": 1 / 6, "num_segments": 6}
    assert fraction_warning("x_v1", entry) == (
        "x_v1: 16.67% of the segments are labelled good at threshold 0.1, the P = 5 "
        "percentile. With 6 scored segments, each is 16.7% of them, too few to resolve "
        "P = 5 within 1 point; score more segments, or set a fixed --threshold"
    )
    ties = dict(entry, fraction_good=4 / 6)
    assert "(ties)" in fraction_warning("x_v1", ties)
    characters = dict(entry, percentile_weight="characters", fraction_good_characters=0.3)
    assert "too few to resolve" in fraction_warning("x_v1", characters)
    assert "(ties)" in fraction_warning("x_v1", dict(characters, num_segments=40))
