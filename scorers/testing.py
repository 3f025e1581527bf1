"""Offline stand-ins for downloaded models, for tests and benchmarks.

`write_detoxify_checkpoint` writes a Detoxify-format checkpoint with random weights and the
Hugging Face config and tokenizer files it needs, so `DetoxifyToxicityScorer` can load a
model of the real shape without network access. Its scores are meaningless.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Class names as stored in the released Detoxify ``original`` checkpoint (Jigsaw labels).
JIGSAW_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]

# Detoxify calls from_pretrained on this name, so loading offline needs ``hf_dir``.
CHECKPOINT_MODEL_TYPE = "bert-base-uncased"

CHECKPOINT_FILE_NAME = "detoxify_random.ckpt"


@dataclass(frozen=True)
class _BertSize:
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int
    intermediate_size: int
    vocab_size: int
    # Made-up words added to the built-in text, so the vocabulary can reach vocab_size.
    synthetic_words: int
    # Standard deviation of the random weights. With BERT's own 0.02 the tiny model gives
    # every text the score 0.4933 to four digits, which would hide ordering bugs. Larger
    # values amplify float32 rounding: on 64 random sentences the base model's batched and
    # one-at-a-time scores differed by up to 2.4e-7 at 0.03, 7.7e-7 at 0.05 and 4.6e-5
    # at 0.2 (CPU, torch 2.13). The chosen values spread those scores over 0.27 to 0.45
    # (tiny) and 0.42 to 0.50 (base).
    initializer_range: float


_SIZES = {
    "tiny": _BertSize(2, 32, 2, 64, 1000, synthetic_words=2000, initializer_range=0.2),
    "base": _BertSize(12, 768, 12, 3072, 30522, synthetic_words=300_000, initializer_range=0.03),
}

_MAX_POSITION_EMBEDDINGS = 512

_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

_TRAINING_TEXT = """\
Every morning the town wakes up slowly. The baker opens the shop before the sun is up, and
the first people in line are usually the workers going to the station. They talk about the
weather, the news, the football results and what their children said at dinner the night
before. Nobody is in a hurry, although everyone says they are late.

In the afternoon the library fills with students. Some of them read quietly, others write
long reports for school, and a few simply sleep with their heads on the table. The librarian
knows most of them by name. She has worked there for thirty years and has seen the old
computers replaced by new ones three times.

People disagree about many things here: where the new road should go, whether the park
needs more trees, and who makes the best coffee. These arguments can become loud, but they
rarely become cruel. When someone writes an angry message online, a neighbour usually
answers with a joke, and the conversation moves on to something else.

A visitor once asked why the café near the river is always full. The owner, a naïve but
generous man from Zürich, said that the secret was simple: good bread, fair prices, and a
friendly word for every customer. Then he laughed and offered her another cup of tea.
"""

_SYLLABLE_ONSETS = ["", "b", "c", "d", "f", "g", "h", "l", "m", "n", "p", "r", "s", "t", "st", "tr"]
_SYLLABLE_VOWELS = ["a", "e", "i", "o", "u", "ea", "ou", "ai"]
_SYLLABLE_CODAS = ["", "n", "r", "s", "t", "l", "ng", "nd", "st"]


def write_detoxify_checkpoint(
    directory: str | Path, size: str = "tiny", seed: int = 0
) -> tuple[Path, Path]:
    """Write a random-weight BERT checkpoint in Detoxify's format, with its tokenizer files.

    The checkpoint stores ``model_type`` ``bert-base-uncased``, as the released ``original``
    checkpoint does. Detoxify calls ``from_pretrained`` on that name, so load it offline with
    ``DetoxifyToxicityScorer(checkpoint=..., hf_dir=...)``.

    The WordPiece vocabulary is built from a short built-in English text and seeded made-up
    words, so English splits into more tokens per word than with ``bert-base-uncased``: with
    size ``base``, a 13-word sentence outside the built-in text became 32 tokens.

    Args:
        directory: folder to write into. It is created if missing.
        size: ``tiny`` (2 layers, hidden size 32, about 1000 tokens in the vocabulary) for
            tests, or ``base`` (BERT-base dimensions: 12 layers, hidden size 768, 12 heads,
            intermediate size 3072) for benchmarks. Both have 512 positions.
        seed: seed for the weights and the made-up words.

    Returns:
        The checkpoint path and the Hugging Face directory (config.json, vocab.txt,
        tokenizer.json, tokenizer_config.json).

    Raises:
        ValueError: ``size`` is not ``tiny`` or ``base``.
    """
    if size not in _SIZES:
        raise ValueError(f"invalid checkpoint size {size!r}; expected one of {sorted(_SIZES)}")
    spec = _SIZES[size]
    directory = Path(directory)
    hf_dir = directory / "hf"
    hf_dir.mkdir(parents=True, exist_ok=True)

    vocab = _build_vocab(spec, seed)
    _write_tokenizer(vocab, hf_dir)
    config = _write_config(spec, len(vocab), hf_dir)

    checkpoint_path = directory / CHECKPOINT_FILE_NAME
    _write_checkpoint(config, seed, checkpoint_path)
    return checkpoint_path, hf_dir


def _build_vocab(spec: _BertSize, seed: int) -> dict[str, int]:
    """Build a WordPiece vocabulary from the built-in text and made-up words.

    The tokenizers WordPiece trainer is not used because it breaks ties in hash-map order,
    so two runs in one process gave different vocabularies (tokenizers 0.23.3). Here every
    character and its ``##`` form come first, then every word of the built-in text, then
    whole words, prefixes and ``##`` suffixes of two to four characters by descending count.
    """
    from tokenizers import normalizers, pre_tokenizers

    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()

    def words_of(lines: list[str]) -> list[str]:
        words = []
        for line in lines:
            pieces = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(line))
            words.extend(piece for piece, _ in pieces)
        return words

    text_words = words_of(_TRAINING_TEXT.splitlines())
    all_words = text_words + words_of(_synthetic_lines(spec.synthetic_words, seed))

    characters = sorted({character for word in all_words for character in word})
    tokens = list(_SPECIAL_TOKENS)
    tokens += characters + [f"##{character}" for character in characters]
    tokens += sorted(set(text_words) - set(tokens))

    counts = Counter(piece for word in all_words for piece in _wordpiece_candidates(word))
    ranked = sorted(counts, key=lambda piece: (-counts[piece], piece))
    known = set(tokens)
    tokens += [piece for piece in ranked if piece not in known][: spec.vocab_size - len(tokens)]
    return {token: index for index, token in enumerate(tokens)}


def _wordpiece_candidates(word: str) -> list[str]:
    candidates = [word]
    for length in range(2, min(4, len(word) - 1) + 1):
        candidates.append(word[:length])
        candidates.append(f"##{word[-length:]}")
    return candidates


def _synthetic_lines(word_count: int, seed: int) -> list[str]:
    """Return lines of pronounceable made-up words, a source of common prefixes and suffixes."""
    rng = random.Random(seed)
    words = []
    for _ in range(word_count):
        syllables = rng.randint(1, 4)
        words.append(
            "".join(
                rng.choice(_SYLLABLE_ONSETS)
                + rng.choice(_SYLLABLE_VOWELS)
                + rng.choice(_SYLLABLE_CODAS)
                for _ in range(syllables)
            )
        )
    return [" ".join(words[start : start + 20]) for start in range(0, len(words), 20)]


def _write_tokenizer(vocab: dict[str, int], hf_dir: Path) -> None:
    import transformers

    # transformers 5 ignores BertTokenizer(vocab_file=...), so build it from the dict and
    # let save_pretrained write tokenizer.json and tokenizer_config.json.
    tokenizer = transformers.BertTokenizer(vocab=vocab, model_max_length=_MAX_POSITION_EMBEDDINGS)
    tokenizer.save_pretrained(hf_dir)

    tokens = sorted(vocab, key=vocab.__getitem__)
    (hf_dir / "vocab.txt").write_text("".join(f"{token}\n" for token in tokens), encoding="utf-8")


def _write_config(spec: _BertSize, vocab_size: int, hf_dir: Path):
    import transformers

    config = transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=_MAX_POSITION_EMBEDDINGS,
        initializer_range=spec.initializer_range,
        num_labels=len(JIGSAW_CLASSES),
    )
    config.save_pretrained(hf_dir)
    return config


def _write_checkpoint(config, seed: int, checkpoint_path: Path) -> None:
    import torch
    import transformers

    # fork_rng keeps the caller's global torch RNG state unchanged.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.BertForSequenceClassification(config)

    checkpoint = {
        "config": {
            "arch": {
                "args": {
                    "model_type": CHECKPOINT_MODEL_TYPE,
                    "model_name": "BertForSequenceClassification",
                    "tokenizer_name": "BertTokenizer",
                    "num_classes": len(JIGSAW_CLASSES),
                }
            },
            "dataset": {"args": {"classes": list(JIGSAW_CLASSES)}},
        },
        "state_dict": model.state_dict(),
    }
    torch.save(checkpoint, checkpoint_path)


def main(argv: list[str] | None = None) -> None:
    """Write a random-weight checkpoint: ``python -m scorers.testing DIR [--size tiny|base]``."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Write a random-weight Detoxify checkpoint and its Hugging Face files, "
        "for tests and benchmarks (the scores mean nothing)."
    )
    parser.add_argument("directory", help="directory to write into")
    parser.add_argument("--size", choices=("tiny", "base"), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    checkpoint, hf_dir = write_detoxify_checkpoint(args.directory, args.size, args.seed)
    print(f"--toxicity-checkpoint {checkpoint} --toxicity-hf-dir {hf_dir}")


if __name__ == "__main__":
    main()
