"""Toxicity scores from Detoxify, a BERT-family classifier of Jigsaw toxic comments.

A segment's score is the probability of Detoxify's ``toxicity`` class, the value that
``Detoxify(...).predict(segment)["toxicity"]`` returns. The scorer batches segments by token
length for speed; batched scores equal one-at-a-time ``predict`` within float32 rounding.

A segment longer than the model window (512 tokens, [CLS] and [SEP] included) is truncated:
its score is that of its first 510 word-pieces, as ``predict`` computes it, because Detoxify's
tokenizer call truncates too. Such segments are counted as ``truncated_segments``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import pickle
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from scorers.base import PROSE, Refinement, Score, Scorer, ScorerConfigError

logger = logging.getLogger(__name__)

# Keys of detoxify.detoxify.MODEL_URLS (detoxify 0.5.4), repeated here so that the class
# imports without detoxify installed.
MODEL_NAMES = ("original", "unbiased", "multilingual", "original-small", "unbiased-small")

# Maximum input length in tokens, [CLS] and [SEP] included, of every Detoxify model
# (BERT, RoBERTa, XLM-RoBERTa and ALBERT). Longer segments are truncated.
MODEL_WINDOW = 512

DEFAULT_BATCH_SIZE = 512
DEFAULT_MAX_TOKENS = 8192
# Scores of this many distinct segments are kept per worker: 23 MB on CPython 3.11, as
# tracemalloc measured it.
DEFAULT_CACHE_SIZE = 100_000
# Cost of starting one more batch, in padded tokens, when batches are planned.
DEFAULT_BATCH_COST = 256

# Numeric precision of the forward pass. Only fp32 gives predict's scores; see the class docstring.
PRECISIONS = ("fp32", "bf16", "int8")

# Default `refine_margin` per reduced precision, in log-odds. On the random-weight
# BERT-base of benchmarks/toxicity.py, the sentences near the threshold moved by up to
# 0.015 (bf16) and 0.023 (int8), and the threshold by 0.009 and 0.003 (docs/benchmarks.md).
# The defaults leave room for other models. fp16 keeps 3 more mantissa bits than bf16 but
# was never measured here, so it gets bf16's margin.
DEFAULT_REFINE_MARGINS = {"bf16": 0.04, "fp16": 0.04, "int8": 0.08}

TOXICITY_CLASS = "toxicity"

# detoxify.detoxify.load_checkpoint renames these Jigsaw classes but does not export the map.
_CLASS_RENAMES = {
    "toxic": "toxicity",
    "identity_hate": "identity_attack",
    "severe_toxic": "severe_toxicity",
}

_OFFLINE_HINT = (
    "To run offline, pass --toxicity-checkpoint and --toxicity-hf-dir with local copies, "
    "or use --scorers toxicity_profanity."
)


class ModelDownloadError(RuntimeError):
    """Detoxify weights or Hugging Face files could not be downloaded."""


class DetoxifyToxicityScorer(Scorer):
    """Probability of the ``toxicity`` class of a Detoxify model, from 0 to 1.

    Options:
        model: released Detoxify model to download when ``checkpoint`` is not given, one of
            `MODEL_NAMES`. Default ``original``.
        checkpoint: local path or Beam filesystem URI (``gs://...``) of a checkpoint in
            Detoxify's format. It is loaded with ``torch.load(weights_only=True)``, so a
            file containing pickled Python objects is rejected instead of run.
        hf_dir: local directory with the Hugging Face config.json and tokenizer files. When
            given, the checkpoint's ``model_type`` is replaced by this directory, because
            Detoxify calls ``from_pretrained`` on ``model_type``; nothing is downloaded
            from the Hugging Face Hub.
        device: torch device. Default ``cuda`` when available, else ``cpu``.
        threads: torch CPU threads, set process-wide with ``torch.set_num_threads``.
            Default: torch's own default.
        batch_size: maximum segments per batch. Default 512.
        max_tokens: maximum padded tokens per batch, rows times the longest row. A segment
            longer than this forms a batch of its own. Default 8192.
        fp16: run the model under ``torch.autocast`` in float16, on CUDA devices only.
            Scores then differ from ``predict`` by float16 rounding. Default False.
        cache_size: distinct segments whose scores are kept, so that a segment repeated
            anywhere in a worker's input is scored once. The least recently used score is
            dropped first, and 0 turns the cache off. Default 100,000.
        batch_cost: the cost of one more batch, in padded tokens, that `plan_batches` weighs
            against padding. Default 256, measured on a CPU; a GPU may need more.
        precision: ``fp32`` (default) computes ``predict``'s scores. ``bf16`` runs the model
            under ``torch.autocast`` in bfloat16, on CPU or GPU. ``int8`` exports the model to
            ONNX in `setup`, quantizes its weights to int8 with ONNX Runtime's dynamic
            quantization and runs it with ONNX Runtime, on the CPU only. It needs the ``onnx``
            extra. Both change scores: on 556 sentences and a random-weight BERT-base, by up to
            0.0042 (bf16) and 0.013 (int8). docs/benchmarks.md gives speeds and label changes.
        packed: run the linear layers on real tokens only (`scorers.packed_encoder`), for the
            BERT and RoBERTa models of Detoxify. Setup checks it against the model's own
            forward and falls back to that forward, with a warning, if they differ. The
            int8 path does not use it. Default True.
        refine_margin: with a reduced precision (``bf16``, ``int8`` or ``fp16``), the
            segments whose score lies within this many log-odds of a threshold are scored
            again in fp32 once the run's thresholds are known (`pipeline.refine`), so that
            labels match an fp32 run. 0 turns this off. Default 0.04 for bf16 and fp16,
            0.08 for int8.
    """

    name = "toxicity_detoxify_v1"
    alias = "toxicity"
    kinds = frozenset({PROSE})
    description = "Detoxify probability of the 'toxicity' class, 0 (safe) to 1 (toxic)"
    requires = ("detoxify", "torch", "transformers")
    install_hint = 'pip install "feedback-annotate[toxicity]"'

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.model_name = options.get("model", "original")
        if self.model_name not in MODEL_NAMES:
            raise ScorerConfigError(
                f"invalid toxicity model {self.model_name!r}; "
                f"expected one of {', '.join(MODEL_NAMES)}"
            )
        self.checkpoint = _optional_path(options.get("checkpoint"))
        self.hf_dir = _optional_path(options.get("hf_dir"))
        self.device = options.get("device")
        self.threads = _positive_int(options, "threads", None)
        self.batch_size = _positive_int(options, "batch_size", DEFAULT_BATCH_SIZE)
        self.max_tokens = _positive_int(options, "max_tokens", DEFAULT_MAX_TOKENS)
        self.fp16 = options.get("fp16", False)
        if not isinstance(self.fp16, bool):
            raise ScorerConfigError(f"invalid toxicity fp16 {self.fp16!r}; expected true or false")
        self.cache_size = _non_negative_int(options, "cache_size", DEFAULT_CACHE_SIZE)
        self._cache: OrderedDict[bytes, tuple[float, bool]] = OrderedDict()
        self.batch_cost = _positive_int(options, "batch_cost", DEFAULT_BATCH_COST)
        self.precision = options.get("precision", "fp32")
        if self.precision not in PRECISIONS:
            raise ScorerConfigError(
                f"invalid toxicity precision {self.precision!r}; "
                f"expected one of {', '.join(PRECISIONS)}"
            )
        if self.fp16 and self.precision != "fp32":
            raise ScorerConfigError(
                f"toxicity fp16 and precision {self.precision!r} exclude each other; pick one"
            )
        self.packed = options.get("packed", True)
        if not isinstance(self.packed, bool):
            raise ScorerConfigError(
                f"invalid toxicity packed {self.packed!r}; expected true or false"
            )
        self.refine_margin = _refine_margin(options, "fp16" if self.fp16 else self.precision)
        self._detoxify = None
        self._int8_session = None
        self._packed_encoder = None
        self._counts = {"truncated_segments": 0, "duplicate_segments": 0}

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return (
            "model",
            "checkpoint",
            "hf_dir",
            "device",
            "threads",
            "batch_size",
            "max_tokens",
            "fp16",
            "cache_size",
            "batch_cost",
            "precision",
            "packed",
            "refine_margin",
        )

    @property
    def detoxify(self):
        """The loaded ``detoxify.Detoxify`` object, whose ``predict`` gives the reference scores."""
        if self._detoxify is None:
            raise RuntimeError(f"scorer {self.name} is not set up; call setup() first")
        return self._detoxify

    def setup(self) -> None:
        """Load the checkpoint, tokenizer and model, and reset the counts."""
        self.check_dependencies()
        import torch
        import transformers

        # The per-tensor "Loading weights" bar would print once per worker.
        transformers.utils.logging.disable_progress_bar()

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        _check_fp16_device(self.fp16, device)
        if self.precision == "int8" and device != "cpu":
            raise ScorerConfigError(
                f"toxicity precision 'int8' runs on the CPU only, but the device is {device!r}. "
                "Pass device cpu, or use precision bf16 on a GPU."
            )
        if self.hf_dir is not None and not os.path.isdir(self.hf_dir):
            raise ScorerConfigError(
                f"toxicity hf_dir {self.hf_dir!r} is not a directory. Pass the directory "
                "that contains config.json and the tokenizer files."
            )

        if self.checkpoint is None:
            loaded, source = _download_checkpoint(self.model_name), self.model_name
        else:
            loaded, source = _read_checkpoint(self.checkpoint), self.checkpoint
        self._detoxify = _build_detoxify(loaded, source, self.hf_dir, device)
        if self.precision == "int8":
            from scorers.onnx_int8 import Int8Session

            self._int8_session = Int8Session(self._detoxify.model, self.threads)
        elif self.packed:
            self._packed_encoder = _checked_packed_encoder(self._detoxify)
        if self.fp16 or self.precision == "bf16":
            _cast_linear_weights(self._detoxify.model, self._autocast_dtype(), self._packed_encoder)
        self._toxicity_index = self._detoxify.class_names.index(TOXICITY_CLASS)
        self._window = min(MODEL_WINDOW, self._detoxify.tokenizer.model_max_length)
        self._counts = dict.fromkeys(self._counts, 0)
        self._cache = OrderedDict()
        precision = "fp16" if self.fp16 else self.precision
        logger.info("loaded Detoxify model from %s on %s in %s", source, device, precision)

    def teardown(self) -> None:
        self._detoxify = None
        self._int8_session = None
        self._packed_encoder = None
        self._cache = OrderedDict()

    def stats(self) -> dict[str, int]:
        """Return counts since setup.

        ``truncated_segments`` counts segments longer than the model window, which are scored
        on their leading tokens. ``duplicate_segments`` counts segments that were not given to
        the model, because an equal segment was scored earlier in the same call or is in the
        cache.
        """
        return dict(self._counts)

    def refinement(self) -> Refinement | None:
        """Return the fp32 scorer that refines reduced-precision scores near a threshold."""
        if not self.refine_margin:
            if self.options.get("refine_margin"):
                logger.warning(
                    "toxicity refine_margin %s is ignored, because precision fp32 computes "
                    "exact scores; it applies to precision bf16 or int8, or fp16",
                    self.options["refine_margin"],
                )
            return None
        exact_options = {
            key: value
            for key, value in self.options.items()
            if key not in ("precision", "fp16", "refine_margin")
        }
        return Refinement(DetoxifyToxicityScorer(**exact_options), self.refine_margin)

    def score_segments(self, segments: Sequence[str]) -> list[Score]:
        """Return the toxicity probability of each segment, None for blank segments.

        Identical segments are scored once per worker, within ``cache_size``. Segments are
        sorted by token length and cut into batches by `plan_batches`, within ``batch_size``
        and ``max_tokens``. Each batch is padded to its longest row.
        """
        texts = [segment for segment in segments if segment.strip()]
        results: dict[str, tuple[float, bool]] = {}
        missing = []
        for text in dict.fromkeys(texts):
            cached = self._cache_get(text)
            if cached is None:
                missing.append(text)
            else:
                results[text] = cached
        for text, result in self._score_unique(missing).items():
            results[text] = result
            self._cache_put(text, result)

        self._counts["duplicate_segments"] += len(texts) - len(missing)
        self._counts["truncated_segments"] += sum(1 for text in texts if results[text][1])
        return [results[segment][0] if segment.strip() else None for segment in segments]

    def _score_unique(self, texts: list[str]) -> dict[str, tuple[float, bool]]:
        """Score distinct texts in length-sorted batches: text -> (score, truncated)."""
        if not texts:
            return {}
        encodings, truncated = self._tokenize(texts)

        results = {}
        lengths = [len(encoding["input_ids"]) for encoding in encodings]
        plan = plan_batches(lengths, self.batch_size, self.max_tokens, self.batch_cost)
        with self._inference_context():
            for batch in plan:
                batch_scores = self._score_batch([encodings[i] for i in batch])
                for i, score in zip(batch, batch_scores, strict=True):
                    results[texts[i]] = (score, texts[i] in truncated)
        return results

    def _autocast_dtype(self):
        import torch

        return torch.float16 if self.fp16 else torch.bfloat16

    def _inference_context(self):
        """Return the context in which batches run: no gradients, and autocast if asked for."""
        import torch

        context = contextlib.ExitStack()
        context.enter_context(torch.inference_mode())
        if self.fp16 or self.precision == "bf16":
            # NOTE: the float16 path has run only under CPU autocast in the tests, never on CUDA.
            device_type = self.detoxify.model.device.type
            context.enter_context(torch.autocast(device_type, dtype=self._autocast_dtype()))
        return context

    def _cache_get(self, text: str) -> tuple[float, bool] | None:
        if not self.cache_size:
            return None
        key = _cache_key(text)
        result = self._cache.get(key)
        if result is not None:
            self._cache.move_to_end(key)
        return result

    def _cache_put(self, text: str, result: tuple[float, bool]) -> None:
        if not self.cache_size:
            return
        self._cache[_cache_key(text)] = result
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _tokenize(self, texts: list[str]) -> tuple[list[dict[str, list[int]]], set[str]]:
        """Tokenize texts to at most the model window, and return the truncated texts."""
        tokenizer = self.detoxify.tokenizer
        # One token over the window reveals truncation, so only those texts are tokenized again.
        batch = tokenizer(texts, truncation=True, max_length=self._window + 1)
        encodings = [{key: batch[key][i] for key in batch.keys()} for i in range(len(texts))]

        truncated = [i for i, e in enumerate(encodings) if len(e["input_ids"]) > self._window]
        if truncated:
            again = tokenizer(
                [texts[i] for i in truncated], truncation=True, max_length=self._window
            )
            for row, i in enumerate(truncated):
                encodings[i] = {key: again[key][row] for key in again.keys()}
        return encodings, {texts[i] for i in truncated}

    def _score_batch(self, encodings: list[dict[str, list[int]]]) -> list[float]:
        """Return the toxicity scores of one batch; call within `_inference_context`."""
        import torch

        # Same computation as Detoxify.predict: sigmoid of the logits, one class column.
        detoxify = self.detoxify
        features = detoxify.tokenizer.pad(encodings, return_tensors="pt")
        if self._int8_session is not None:
            logits = self._int8_session.logits(features)
        elif self._packed_encoder is not None:
            logits = self._packed_encoder(**features.to(detoxify.model.device))
        else:
            logits = detoxify.model(**features.to(detoxify.model.device))[0]
        return torch.sigmoid(logits.float())[:, self._toxicity_index].cpu().tolist()


def plan_batches(
    lengths: Sequence[int],
    batch_size: int,
    max_tokens: int,
    batch_cost: int = DEFAULT_BATCH_COST,
) -> list[list[int]]:
    """Group row indices into batches of similar length, longest rows first.

    A batch contains at most ``batch_size`` rows and, padded to its longest row, at most
    ``max_tokens`` tokens, except that a row longer than ``max_tokens`` forms its own batch.
    Within these limits the plan minimizes the padded tokens of all batches plus
    ``batch_cost`` tokens per batch, so that a batch is split where the padding it would
    carry costs more than starting another batch. Rows sorted by length are cut into
    consecutive runs by dynamic programming. Ties keep the input order and, between plans
    of equal cost, fill earlier batches first, so the plan is deterministic.
    """
    import numpy as np

    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    widths = np.array([lengths[i] for i in order], dtype=np.int64)
    count = len(order)
    # cost[j]: least cost of the first j rows; start[j]: where the last batch of it starts.
    cost = np.zeros(count + 1, dtype=np.int64)
    start = np.zeros(count + 1, dtype=np.int64)
    for stop in range(1, count + 1):
        first = max(0, stop - batch_size)
        rows = stop - np.arange(first, stop)
        # A candidate batch runs from row i to stop - 1; row i is its longest.
        padded = rows * widths[first:stop]
        candidates = cost[first:stop] + padded + batch_cost
        candidates[(rows > 1) & (padded > max_tokens)] = np.iinfo(np.int64).max
        # The last minimum is the shortest final batch, which leaves earlier batches full.
        best = len(candidates) - 1 - int(np.argmin(candidates[::-1]))
        cost[stop] = candidates[best]
        start[stop] = first + best

    batches: list[list[int]] = []
    stop = count
    while stop > 0:
        batches.append(order[start[stop] : stop])
        stop = int(start[stop])
    return batches[::-1]


def _optional_path(value: Any) -> str | None:
    return None if value is None else os.fspath(value)


def _positive_int(options: dict[str, Any], name: str, default: int | None) -> int | None:
    value = options.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScorerConfigError(f"invalid toxicity {name} {value!r}; expected a positive integer")
    return value


def _refine_margin(options: dict[str, Any], precision: str) -> float:
    """Return the refinement margin; 0 for fp32, whose scores need none."""
    value = options.get("refine_margin")
    if value is None:
        return DEFAULT_REFINE_MARGINS.get(precision, 0.0)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
        raise ScorerConfigError(
            f"invalid toxicity refine_margin {value!r}; expected a number of log-odds, "
            "0 or more (0 turns refinement off)"
        )
    return float(value) if precision != "fp32" else 0.0


def _non_negative_int(options: dict[str, Any], name: str, default: int) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScorerConfigError(
            f"invalid toxicity {name} {value!r}; expected an integer of at least 0"
        )
    return value


# Rows of different lengths, so that the check below runs a batch with padding.
_PACKED_CHECK_TEXTS = (
    "A short sentence.",
    "A longer sentence, with some punctuation, a number 42 and a few more words in it.",
    "Yes",
)
# Largest logit difference accepted between the packed and the model's own forward. In the
# tests, float32 rounding moved logits by less than 1e-6, and a wrong computation by far more.
_PACKED_TOLERANCE = 1e-4


def _checked_packed_encoder(detoxify):
    """Return a `PackedEncoder` for the model if it gives the model's own logits, else None."""
    import torch

    from scorers.packed_encoder import PackedEncoder, unsupported_reason

    model = detoxify.model
    reason = unsupported_reason(model)
    if reason is not None:
        logger.info("running the model's own forward on padded batches: %s", reason)
        return None
    encoder = PackedEncoder(model)
    features = detoxify.tokenizer(list(_PACKED_CHECK_TEXTS), padding=True, return_tensors="pt")
    with torch.inference_mode():
        features = features.to(model.device)
        expected = model(**features)[0]
        difference = (encoder(**features) - expected).abs().max().item()
    if difference > _PACKED_TOLERANCE:
        logger.warning(
            "the packed forward gave logits %.3g away from the model's own forward, so the "
            "model's own forward runs instead (slower on padded batches). Please report this "
            "with the model's config.json.",
            difference,
        )
        return None
    return encoder


def _cast_linear_weights(model, dtype, packed_encoder) -> None:
    """Store the weights of the model's linear layers in ``dtype``, as autocast would cast them.

    Otherwise autocast casts every weight again for each batch. With torch 2.13 it kept no
    casts under ``torch.inference_mode``, and none of views, in our measurements. Layer norms
    and embeddings stay in float32, as under autocast.
    """
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            module.weight.data = module.weight.data.to(dtype)
            if module.bias is not None:
                module.bias.data = module.bias.data.to(dtype)
    if packed_encoder is not None:
        packed_encoder.join_projections()


def _check_fp16_device(fp16: bool, device: str) -> None:
    if fp16 and not device.startswith("cuda"):
        raise ScorerConfigError(
            f"toxicity fp16 runs on CUDA devices only, but the device is {device!r}. "
            "Remove the fp16 option, or pass a CUDA device."
        )


def _cache_key(text: str) -> bytes:
    # A 128-bit digest keeps the cache's memory independent of segment length.
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _download_checkpoint(model_name: str) -> dict[str, Any]:
    """Download a released Detoxify checkpoint, or reuse the copy in the torch hub cache."""
    import torch
    from detoxify.detoxify import MODEL_URLS

    url = MODEL_URLS[model_name]
    logger.info("loading Detoxify %s weights from %s", model_name, url)
    try:
        # NOTE: weights_only=False as in Detoxify itself. check_hash compares only the
        # 8-hex-digit SHA-256 prefix in the file name, which detects corruption, not tampering.
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", check_hash=True, weights_only=False
        )
    except (OSError, RuntimeError) as error:
        raise ModelDownloadError(
            f"Detoxify {model_name!r} weights could not be downloaded from {url}: {error}. "
            f"{_OFFLINE_HINT}"
        ) from error


def _read_checkpoint(path: str) -> dict[str, Any]:
    """Load a Detoxify-format checkpoint from a local path or Beam filesystem URI."""
    import torch
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(path) as file:
            data = file.read()
    except (OSError, ValueError) as error:
        raise ScorerConfigError(
            f"toxicity checkpoint {path!r} could not be read: {error}. "
            "Check the --toxicity-checkpoint path."
        ) from error

    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ScorerConfigError(
            f"toxicity checkpoint {path!r} was rejected by torch.load(weights_only=True): "
            f"{_unpickler_reason(error)}. Only tensors and plain containers are loaded, "
            "because unpickling other objects could run code. Save the checkpoint as a dict "
            "of plain values ('config') and tensors ('state_dict')."
        ) from error
    except (RuntimeError, EOFError, KeyError, ValueError) as error:
        raise ScorerConfigError(
            f"toxicity checkpoint {path!r} is not a readable torch checkpoint: {error!r}"
        ) from error
    return loaded


def _unpickler_reason(error: Exception) -> str:
    """Return the torch message line that names the rejected global, without its advice."""
    for line in str(error).splitlines():
        line = line.strip()
        if line.startswith("WeightsUnpickler error:"):
            reason = line.removeprefix("WeightsUnpickler error:")
            return reason.split(" Please use")[0].strip()
    return str(error).split("\n", 1)[0]


def _check_checkpoint_format(loaded: Any, source: str) -> None:
    try:
        loaded["state_dict"]
        loaded["config"]["arch"]["args"]["model_type"]
        loaded["config"]["dataset"]["args"]["classes"]
    except (KeyError, TypeError, IndexError) as error:
        raise ScorerConfigError(
            f"toxicity checkpoint {source!r} is not in Detoxify's format (missing or invalid "
            f"key: {error}). Expected config.arch.args, config.dataset.args.classes and "
            "state_dict."
        ) from error


def _build_detoxify(loaded: dict[str, Any], source: str, hf_dir: str | None, device: str):
    """Build a ``Detoxify`` object around the loaded checkpoint without reloading it.

    ``Detoxify.__init__`` would load the checkpoint again with ``weights_only=False``, so
    the object is created empty and given what ``detoxify.detoxify.load_checkpoint`` would
    have set.
    """
    from detoxify.detoxify import Detoxify, get_model_and_tokenizer

    _check_checkpoint_format(loaded, source)
    arch_args = dict(loaded["config"]["arch"]["args"])
    if hf_dir is not None:
        arch_args["model_type"] = hf_dir
    model, tokenizer = _load_model_and_tokenizer(
        get_model_and_tokenizer, arch_args, loaded["state_dict"], hf_dir
    )

    class_names = [_CLASS_RENAMES.get(c, c) for c in loaded["config"]["dataset"]["args"]["classes"]]
    if TOXICITY_CLASS not in class_names:
        raise ScorerConfigError(
            f"toxicity checkpoint {source!r} has no {TOXICITY_CLASS!r} class. "
            f"Its classes are {class_names}."
        )

    detoxify = object.__new__(Detoxify)
    detoxify.model = model.to(device).eval()
    detoxify.tokenizer = tokenizer
    detoxify.class_names = class_names
    detoxify.device = device
    return detoxify


def _load_model_and_tokenizer(get_model_and_tokenizer, arch_args, state_dict, hf_dir):
    model_type = arch_args["model_type"]
    try:
        return get_model_and_tokenizer(**arch_args, state_dict=state_dict)
    except OSError as error:
        if hf_dir is not None:
            raise ScorerConfigError(
                f"toxicity hf_dir {hf_dir!r} does not contain a usable Hugging Face config "
                f"and tokenizer: {error}"
            ) from error
        raise ModelDownloadError(
            f"the Hugging Face config and tokenizer {model_type!r} could not be loaded or "
            f"downloaded: {error}. {_OFFLINE_HINT}"
        ) from error
