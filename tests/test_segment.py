from pipeline import segment
from pipeline.segment import MAX_CHUNK_CHARS, Segmenter, document_kind, line_spans
from schemas.config import SegmentOptions


def pieces(text: str, kind: str) -> list[str]:
    return [text[start:end] for start, end in Segmenter().spans(text, kind)]


def test_prose_sentences_keep_trailing_whitespace():
    text = "It was late .... The end.\r\nNext day we left.  Hello world!"
    assert pieces(text, "prose") == [
        "It was late .... The end.\r\n",
        "Next day we left.  ",
        "Hello world!",
    ]


def test_prose_offsets_cover_text():
    text = "  Leading space. Second one? Third!\n\nNew paragraph without end"
    spans = Segmenter().spans(text, "prose")
    assert spans[0][0] == 0
    assert spans[-1][1] == len(text)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert "".join(text[s:e] for s, e in spans) == text


def test_empty_and_blank_documents():
    assert pieces("", "prose") == []
    assert pieces("   \n\t  ", "prose") == ["   \n\t  "]
    assert pieces("", "code") == []


def test_code_lines_keep_line_endings():
    assert pieces("a = 1\r\nb = 2\n\nc = 3", "code") == ["a = 1\r\n", "b = 2\n", "\n", "c = 3"]
    assert line_spans("x\ry\n") == [(0, 2), (2, 4)]


def test_huge_sentence_is_cut_into_bounded_pieces():
    text = "word " * (MAX_CHUNK_CHARS // 2)
    spans = Segmenter().spans(text, "prose")
    assert len(spans) >= 3
    assert max(end - start for start, end in spans) <= MAX_CHUNK_CHARS
    assert "".join(text[s:e] for s, e in spans) == text


def test_unbroken_text_over_spacy_limit():
    text = "A" * 1_200_001
    spans = Segmenter().spans(text, "prose")
    assert len(spans) == 13
    assert spans[-1][1] == len(text)


def test_vocabulary_growth_is_bounded(monkeypatch):
    monkeypatch.setattr(segment, "MAX_VOCABULARY_ENTRIES", 1_000)
    segmenter = Segmenter()
    text = " ".join(f"Token{i}." for i in range(3_000))
    spans = segmenter.spans(text, "prose")
    assert [text[start:end] for start, end in spans][-2:] == ["Token2998. ", "Token2999."]
    assert len(spans) == 3_000
    # Over the limit, the spaCy pipeline is dropped and rebuilt on the next call.
    assert segmenter._nlp is None
    assert segmenter.spans("Short. Text.", "prose") == [(0, 7), (7, 12)]
    assert len(segmenter._nlp.vocab) < 1_000


def test_document_kind_from_language_field():
    options = SegmentOptions()
    assert document_kind({"lang": "python"}, options) == "code"
    assert document_kind({"lang": "Python "}, options) == "code"
    assert document_kind({"lang": "en"}, options) == "prose"
    assert document_kind({}, options) == "prose"
    assert document_kind({"lang": ["python"]}, options) == "prose"
    assert document_kind({"language": "go"}, SegmentOptions(language_field="language")) == "code"
    assert document_kind({"lang": "python"}, SegmentOptions(kind="prose")) == "prose"
