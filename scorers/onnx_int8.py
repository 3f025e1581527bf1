"""An int8 copy of a Hugging Face sequence classifier, run with ONNX Runtime on the CPU.

The model is exported to ONNX with torch's TorchScript exporter. ONNX Runtime's dynamic
quantization then stores its weights as int8, one scale per output channel, and quantizes
activations per batch at run time. The result is loaded into an ONNX Runtime session.
Scores then differ from the float32 model: on 200 sentences and a random-weight BERT-base,
by 0.0024 on average and 0.0088 at most.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import warnings
from typing import Any

from scorers.base import MissingDependencyError

# Inputs of a BERT classifier, in the order of its forward arguments.
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

# ONNX opset of the export. 17 is the first with LayerNormalization as one operator.
OPSET = 17

REQUIRED_MODULES = ("onnx", "onnxruntime")
INSTALL_HINT = 'pip install "feedback-annotate[toxicity,onnx]"'


class Int8Session:
    """An ONNX Runtime session of the int8-quantized copy of ``model``.

    Args:
        model: a Hugging Face ``...ForSequenceClassification`` model in eval mode, whose
            forward takes `INPUT_NAMES` and returns the logits first.
        threads: ONNX Runtime intra-op threads. None: ONNX Runtime's default, one per core.

    Raises:
        MissingDependencyError: onnx or onnxruntime is not installed.
    """

    def __init__(self, model: Any, threads: int | None = None) -> None:
        missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingDependencyError(
                f"toxicity precision 'int8' needs {', '.join(missing)}, which is not "
                f"installed; install it with: {INSTALL_HINT}"
            )
        import onnxruntime

        with tempfile.TemporaryDirectory(prefix="toxicity-int8-") as directory:
            exported = os.path.join(directory, "model.onnx")
            quantized = os.path.join(directory, "model.int8.onnx")
            _export(model, exported)
            _quantize(exported, quantized)

            options = onnxruntime.SessionOptions()
            if threads is not None:
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
            self._session = onnxruntime.InferenceSession(
                quantized, options, providers=["CPUExecutionProvider"]
            )
        self._input_names = {i.name for i in self._session.get_inputs()}

    def logits(self, features: Any) -> Any:
        """Return the logits, as a float32 torch tensor, of a padded batch of features."""
        import torch

        feeds = {
            name: features[name].cpu().numpy().astype("int64")
            for name in INPUT_NAMES
            if name in self._input_names and name in features
        }
        return torch.from_numpy(self._session.run(None, feeds)[0])


def _export(model: Any, path: str) -> None:
    import torch

    example = {name: torch.ones(2, 8, dtype=torch.long) for name in INPUT_NAMES}
    dynamic_axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    dynamic_axes["logits"] = {0: "batch"}
    # The tracer warns that shape checks in transformers' masking code become constants, and
    # the exporter that aten::index breaks on negative indices. Neither applies to BERT
    # inputs, and the tests compare the exported model's scores on several batch shapes.
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index", category=UserWarning)
        torch.onnx.export(
            model.cpu(),
            (),
            path,
            kwargs=example,
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
        )


def _quantize(source: str, target: str) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # One scale per output channel: on a random-weight BERT-base this cut the mean score
    # error from 0.0097 to 0.0024 at the same speed, compared with one scale per tensor.
    quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True)
