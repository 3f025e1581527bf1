"""Tests of the Presidio PII scorer: findings, scores, offline operation, options."""

from __future__ import annotations

import logging
import pickle
import socket

import pytest

from scorers import pii
from scorers.base import MissingDependencyError, ScorerConfigError
from scorers.pii import PiiFinding, PresidioPiiScorer

EMOJI_SEGMENTS = ["Party time 🎉🎉🎉! ", "Write to jane.roe@example.org for tickets."]

DOCUMENTS = [
    EMOJI_SEGMENTS,
    [
        "Our office moved last spring. ",
        "Call 212-555-0142 or mail help@example.com with questions. ",
        "Card 4111 1111 1111 1111 was declined.\n",
        "",
        "The server at 10.0.0.1 answered. ",
        "See https://www.example.org/faq for more.",
    ],
    [
        "Wire it to DE89 3704 0044 0532 0130 00 by Friday. ",
        "My SSN is 123-45-6788, keep it safe. ",
        "Nothing here.",
    ],
    [],
]


@pytest.fixture
def blocked_sockets(monkeypatch) -> list[tuple]:
    """Make every connection and DNS lookup raise, and record the attempts."""
    attempts = []

    def reject(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access is blocked in this test")

    monkeypatch.setattr(socket.socket, "connect", reject)
    monkeypatch.setattr(socket, "create_connection", reject)
    monkeypatch.setattr(socket, "getaddrinfo", reject)
    return attempts


@pytest.fixture(scope="module")
def scorer() -> PresidioPiiScorer:
    scorer = PresidioPiiScorer()
    scorer.setup()
    return scorer


def test_scorer_class_attributes():
    assert PresidioPiiScorer.name == "pii_presidio_v1"
    assert PresidioPiiScorer.alias == "pii"
    assert PresidioPiiScorer.kinds == frozenset({"prose"})
    assert PresidioPiiScorer.requires == ("presidio_analyzer",)
    assert PresidioPiiScorer.install_hint == "pip install presidio-analyzer"
    assert PresidioPiiScorer.option_names() == ("entities", "min_scores", "spacy_model", "language")


def test_email_after_emoji_segment(scorer):
    assert (
        "".join(EMOJI_SEGMENTS) == "Party time 🎉🎉🎉! Write to jane.roe@example.org for tickets."
    )
    second = EMOJI_SEGMENTS[1]

    findings = scorer.find(second)

    assert len(findings) == 1
    assert findings[0].entity == "EMAIL_ADDRESS"
    assert second[findings[0].start : findings[0].end] == "jane.roe@example.org"
    assert scorer.score_segments(EMOJI_SEGMENTS) == [0.0, 1 / len(second)]


def test_offsets_are_code_points(scorer):
    # The emoji lie outside the Basic Multilingual Plane, so UTF-16 or UTF-8 offsets
    # would point past the start of the address.
    text = "".join(EMOJI_SEGMENTS)

    findings = scorer.find(text)

    assert [(f.start, f.end) for f in findings] == [(25, 45)]
    assert text[25:45] == "jane.roe@example.org"


def test_phone_glued_to_word(scorer):
    text = "For support reach me at office212-555-0142 today."

    findings = scorer.find(text)

    assert findings == [PiiFinding("PHONE_NUMBER", 30, 42, 0.4)]
    assert text[30:42] == "212-555-0142"


def test_phone_followed_by_letter_rejected(scorer):
    assert scorer.find("Order 2125550142b shipped.") == []


def test_no_findings_score_zero(scorer):
    assert scorer.score_segments(["Nothing to see in this sentence."]) == [0.0]


def test_empty_segment_scores_zero(scorer):
    assert scorer.score_segments([""]) == [0.0]


def test_two_findings_score(scorer):
    segment = "Mail jane.roe@example.org or call 212-555-0142 today."

    findings = scorer.find(segment)

    assert [f.entity for f in findings] == ["EMAIL_ADDRESS", "PHONE_NUMBER"]
    assert scorer.score_segments([segment]) == [2 / len(segment)]


@pytest.mark.parametrize(
    ("text", "entity", "matched"),
    [
        ("Card 4111 1111 1111 1111 was declined.", "CREDIT_CARD", "4111 1111 1111 1111"),
        ("The server at 10.0.0.1 answered.", "IP_ADDRESS", "10.0.0.1"),
        ("See https://www.example.org/faq for more.", "URL", "https://www.example.org/faq"),
        ("Wire to DE89 3704 0044 0532 0130 00 now.", "IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
        ("My SSN is 123-45-6788, keep it safe.", "US_SSN", "123-45-6788"),
    ],
)
def test_default_entity_found(scorer, text, entity, matched):
    findings = scorer.find(text)

    assert [f.entity for f in findings] == [entity]
    assert text[findings[0].start : findings[0].end] == matched


def test_url_inside_email_not_reported(scorer):
    # Presidio's unbounded URL pattern reports "jane.ro" and "example.org" here.
    findings = scorer.find("jane.roe@example.org")

    assert findings == [PiiFinding("EMAIL_ADDRESS", 0, 20, 1.0)]


def test_missing_space_after_period_not_url(scorer):
    # "th" is a country-code TLD, so an unbounded pattern matches "end.Th".
    assert scorer.find("That was the end.Then we left.") == []


def test_overlapping_results_merge(scorer):
    # Presidio reports the whole URL, and an e-mail address starting at "example.com"
    # because its local-part pattern allows "/", "?" and "=".
    text = "Form: https://example.com/contact?to=jane.roe@example.org today."

    findings = scorer.find(text)

    assert findings == [PiiFinding("EMAIL_ADDRESS", 6, 57, 1.0)]


def test_merge_overlapping_keeps_touching_apart():
    results = [
        PiiFinding("URL", 25, 32, 0.5),
        PiiFinding("EMAIL_ADDRESS", 25, 45, 1.0),
        PiiFinding("URL", 34, 45, 0.5),
        PiiFinding("PHONE_NUMBER", 45, 57, 0.4),
    ]

    merged = pii._merge_overlapping(results)

    assert merged == [
        PiiFinding("EMAIL_ADDRESS", 25, 45, 1.0),
        PiiFinding("PHONE_NUMBER", 45, 57, 0.4),
    ]


def test_merge_tie_prefers_longest():
    results = [PiiFinding("URL", 0, 7, 0.5), PiiFinding("US_SSN", 3, 14, 0.5)]

    assert pii._merge_overlapping(results) == [PiiFinding("US_SSN", 0, 14, 0.5)]


def test_score_documents_matches_segments(scorer):
    by_document = scorer.score_documents(DOCUMENTS)
    by_segment = [scorer.score_segments(segments) for segments in DOCUMENTS]

    assert by_document == by_segment
    assert [sum(score > 0 for score in scores) for scores in by_document] == [1, 4, 2, 0]


def test_score_documents_counts_crossing_finding_at_start(scorer):
    # The documented difference: a number cut by a segment boundary is found only
    # when the document is analyzed whole, and counts for the segment where it starts.
    segments = ["Call 212-555-", "0142 now."]

    assert scorer.score_segments(segments) == [0.0, 0.0]
    assert scorer.score_documents([segments]) == [[1 / len(segments[0]), 0.0]]


def test_score_documents_chunks_long_documents(scorer, monkeypatch):
    monkeypatch.setattr(pii, "MAX_CHUNK_CHARS", 60)
    segments = DOCUMENTS[1]

    assert pii._segment_chunks(segments, 60) == [(0, 1), (1, 2), (2, 4), (4, 5), (5, 6)]
    assert scorer.score_documents([segments]) == [scorer.score_segments(segments)]


def test_segment_chunks_long_segment_alone():
    segments = ["a" * 5, "b" * 20, "c" * 3, "d" * 3]

    assert pii._segment_chunks(segments, 10) == [(0, 1), (1, 2), (2, 4)]


def test_chunk_starts_cut_after_whitespace():
    assert pii._chunk_starts("aaaa bbbb cccc dddd", 10) == [0, 10]
    assert pii._chunk_starts("aaaaaaaaaaaaaaaaaaaa", 8) == [0, 8, 16]
    assert pii._chunk_starts("short", 10) == [0]


def test_find_splits_long_text(monkeypatch):
    monkeypatch.setattr(pii, "MAX_CHUNK_CHARS", 40)
    scorer = PresidioPiiScorer()
    scorer.setup()
    text = "Write to jane.roe@example.org today. " * 3

    findings = scorer.find(text)

    assert [(f.start, f.end) for f in findings] == [(9, 29), (46, 66), (83, 103)]
    assert {text[f.start : f.end] for f in findings} == {"jane.roe@example.org"}
    assert scorer.stats()["texts_split"] == 1


def test_scoring_with_sockets_blocked(blocked_sockets):
    # Presidio's own e-mail check would try to download the public-suffix list here.
    scorer = PresidioPiiScorer()
    scorer.setup()
    segment = "Mail jane.roe@example.co.uk or call 212-555-0142 today."

    scores = scorer.score_segments([segment])

    assert scores == [2 / len(segment)]
    assert blocked_sockets == []


def test_pickle_before_setup():
    scorer = PresidioPiiScorer(entities=["EMAIL_ADDRESS"], min_scores={"EMAIL_ADDRESS": 0.9})

    copy = pickle.loads(pickle.dumps(scorer))

    assert copy.options == {"entities": ["EMAIL_ADDRESS"], "min_scores": {"EMAIL_ADDRESS": 0.9}}
    copy.setup()
    assert copy.score_segments(["Mail a.b@example.org"]) == [1 / 20]


def test_pickle_after_setup_drops_engine(scorer):
    copy = pickle.loads(pickle.dumps(scorer))

    with pytest.raises(RuntimeError, match="Call setup"):
        copy.score_segments(["Mail a.b@example.org"])


def test_score_before_setup_raises():
    with pytest.raises(RuntimeError, match="not set up"):
        PresidioPiiScorer().score_segments(["text"])


def test_min_scores_option_drops_phone():
    scorer = PresidioPiiScorer(min_scores={"PHONE_NUMBER": 0.5})
    scorer.setup()

    assert scorer.find("Call 212-555-0142 now.") == []


def test_entities_option_limits_findings():
    scorer = PresidioPiiScorer(entities=["PHONE_NUMBER"])
    scorer.setup()

    findings = scorer.find("Mail jane.roe@example.org or call 212-555-0142 today.")

    assert [f.entity for f in findings] == ["PHONE_NUMBER"]


def test_stats_count_segments_and_findings():
    scorer = PresidioPiiScorer()
    scorer.setup()

    scorer.score_segments(["Mail jane.roe@example.org or call 212-555-0142.", "Nothing."])

    assert scorer.stats() == {
        "segments_scored": 2,
        "findings_email_address": 1,
        "findings_phone_number": 1,
    }


def test_missing_spacy_model_raises():
    with pytest.raises(MissingDependencyError) as error:
        PresidioPiiScorer(spacy_model="xx_no_such_model_sm")

    message = str(error.value)
    assert "'xx_no_such_model_sm'" in message
    assert "python -m spacy download xx_no_such_model_sm" in message


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"entities": ["PASSPORT"]}, "unknown entity 'PASSPORT'"),
        ({"entities": ["PERSON"]}, "entity 'PERSON' needs a spaCy NER model"),
        ({"entities": "URL"}, "entities must be a non-empty list"),
        ({"entities": []}, "entities must be a non-empty list"),
        ({"min_scores": {"PERSON": 0.5}}, "min_scores names 'PERSON'"),
        ({"min_scores": {"URL": 1.5}}, r"min_scores\['URL'\] must be a number from 0 to 1"),
        ({"min_scores": [0.5]}, "min_scores must map entity names"),
        ({"language": ""}, "language must be a language code"),
        ({"spacy_model": 3}, "spacy_model must be a spaCy model name or path"),
        ({"threshold": 1}, "has no option 'threshold'"),
    ],
)
def test_invalid_options_raise(options, message):
    with pytest.raises(ScorerConfigError, match=message):
        PresidioPiiScorer(**options)


def test_spacy_model_path_adds_ner(tmp_path, caplog, blocked_sockets):
    spacy = pytest.importorskip("spacy")
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns(
        [
            {"label": "PERSON", "pattern": "Jane Roe"},
            {"label": "ORG", "pattern": "Acme Corp"},
            {"label": "GPE", "pattern": "Paris"},
            {"label": "DATE", "pattern": "Monday"},
        ]
    )
    nlp.to_disk(tmp_path / "ruler")
    scorer = PresidioPiiScorer(spacy_model=str(tmp_path / "ruler"))
    scorer.setup()
    text = "Jane Roe of Acme Corp met us in Paris on Monday, call 212-555-0142."

    with caplog.at_level(logging.WARNING):
        findings = scorer.find(text)

    assert [(f.entity, text[f.start : f.end]) for f in findings] == [
        ("PERSON", "Jane Roe"),
        ("ORGANIZATION", "Acme Corp"),
        ("LOCATION", "Paris"),
        ("PHONE_NUMBER", "212-555-0142"),
    ]
    assert caplog.records == []
    assert blocked_sockets == []


def test_stats_count_only_non_blank_segments():
    scorer = PresidioPiiScorer()
    scorer.setup()

    scorer.score_documents([["Mail jane.roe@example.org.", "\n\n", "Nothing."], ["  "]])
    scorer.score_segments(["Call 212-555-0142.", " "])

    assert scorer.stats()["segments_scored"] == 3
