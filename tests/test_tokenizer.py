"""special_tokens.json added to a Hugging Face tokenizer built here, without downloads."""

import json
from collections import Counter

import pytest

from pipeline.label import TokenWriter
from pipeline.run import list_special_tokens
from pipeline.tokenizer import add_special_tokens
from schemas.config import LabelOptions

tokenizers = pytest.importorskip("tokenizers")
transformers = pytest.importorskip("transformers")

ESCAPE_TEST = (
    "Our tagger writes <|good|> before clean text. Some scraped pages contain <|bad|> too."
)
WORDS = "our tagger writes good before clean text some scraped pages contain bad too"


def wordpiece_tokenizer():
    """A lower-casing BERT-style WordPiece tokenizer over the words of ESCAPE_TEST."""
    vocab = {"[UNK]": 0, "<": 1, "|": 2, ">": 3, ".": 4}
    for word in WORDS.split():
        vocab.setdefault(word, len(vocab))
    model = tokenizers.models.WordPiece(vocab, unk_token="[UNK]")
    backend = tokenizers.Tokenizer(model)
    backend.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")


def written_text(options):
    aliases = {"toxicity_v1": "toxicity"}
    writer = TokenWriter(options, aliases, {"toxicity_v1": 0.5})
    segments = [ESCAPE_TEST[:46], ESCAPE_TEST[46:]]
    _, text = writer.write("d", segments, {"toxicity_v1": [0.1, 0.9]}, Counter())
    return text, list_special_tokens(options, aliases)


def test_control_tokens_become_single_ids(tmp_path):
    options = LabelOptions(document_token="<|endoftext|>")
    text, listed = written_text(options)
    path = tmp_path / "special_tokens.json"
    path.write_text(json.dumps(listed), "utf-8")
    tokenizer = wordpiece_tokenizer()
    base_size = len(tokenizer)

    ids = add_special_tokens(tokenizer, path)

    assert len(tokenizer) == base_size + 3
    assert sorted(ids) == [base_size, base_size + 1, base_size + 2]
    for token, token_id in zip(listed["additional_special_tokens"], ids, strict=True):
        assert tokenizer.encode(token, add_special_tokens=False) == [token_id], token
    encoded = tokenizer.encode(text, add_special_tokens=False)
    assert [i for i in encoded if i in ids] == ids
    pieces = tokenizer.convert_ids_to_tokens(encoded)
    assert pieces.count("good") == 1
    assert pieces.count("bad") == 1
    assert "[UNK]" not in pieces


def test_tokens_survive_save_and_reload(tmp_path):
    _, listed = written_text(LabelOptions())
    path = tmp_path / "special_tokens.json"
    path.write_text(json.dumps(listed), "utf-8")
    tokenizer = wordpiece_tokenizer()
    ids = add_special_tokens(tokenizer, path)
    tokenizer.save_pretrained(tmp_path / "tokenizer")
    reloaded = transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path / "tokenizer")
    assert reloaded.convert_tokens_to_ids(["<|good|>", "<|bad|>"]) == ids
    too = reloaded.convert_tokens_to_ids("too")
    assert reloaded.encode("<|bad|>too", add_special_tokens=False) == [ids[1], too]
