"""Add a run's control tokens to a Hugging Face tokenizer, so that each is one token id.

    from transformers import AutoTokenizer
    from pipeline.tokenizer import add_special_tokens

    tokenizer = AutoTokenizer.from_pretrained("path/to/tokenizer")
    ids = add_special_tokens(tokenizer, "OUT/special_tokens.json")
    model.resize_token_embeddings(len(tokenizer))

The tokens are added as special tokens: they are matched in the raw text
before normalization and never split. Escaped control-token strings of the
input (with U+2060 after their first character) do not match them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_special_tokens(path: str | Path) -> list[str]:
    """Read the control tokens listed in a run's special_tokens.json."""
    return list(json.loads(Path(path).read_text("utf-8"))["additional_special_tokens"])


def add_special_tokens(tokenizer: Any, special_tokens_path: str | Path) -> list[int]:
    """Add the run's control tokens to `tokenizer` as special tokens; return their ids.

    Tokens the tokenizer already has (such as a GPT-2 ``<|endoftext|>``
    document token) keep their id. Tested with transformers 5.25; it uses only
    `add_tokens(tokens, special_tokens=True)` and `convert_tokens_to_ids`.
    """
    tokens = read_special_tokens(special_tokens_path)
    tokenizer.add_tokens(tokens, special_tokens=True)
    return tokenizer.convert_tokens_to_ids(tokens)
