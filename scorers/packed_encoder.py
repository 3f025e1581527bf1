"""Run a BERT-family sequence classifier on the real tokens of a padded batch only.

A batch padded to its longest row spends every linear layer, activation and layer norm on
padding too. Those steps work on each token alone, so `PackedEncoder` gathers the real
tokens of a batch into one matrix for them, and scatters the tokens back into rows only for
attention, the one step where tokens of a row meet. The padding then costs attention alone,
a small part of the work. The classifier reads only the first token of each row, so the last
layer computes its keys and values for every token but the rest for first tokens only. The
logits equal those of the model's own forward on the same batch within float32 rounding,
because no real token ever reads a padded position.

Supported: ``BertForSequenceClassification``, ``RobertaForSequenceClassification`` and
``XLMRobertaForSequenceClassification`` with absolute position embeddings, the
architectures of Detoxify's ``original``, ``unbiased`` and ``multilingual`` models. Other
models (ALBERT, used by the ``-small`` models) run their own forward, and
`unsupported_reason` returns the reason.
"""

from __future__ import annotations

from typing import Any

# Rows of the per-token steps computed at a time. 512 rows of BERT-base's 3072 intermediate
# activations take 6 MiB in float32. On a 2-core AMD EPYC, the feed-forward of 2,900 rows
# took 159 ms in chunks of 512 rows against 242 ms at once (one measurement).
FEED_FORWARD_ROWS = 512

# Model class name -> attribute of its encoder model.
_BASE_MODELS = {
    "BertForSequenceClassification": "bert",
    "RobertaForSequenceClassification": "roberta",
    "XLMRobertaForSequenceClassification": "roberta",
}


def unsupported_reason(model: Any) -> str | None:
    """Return why `PackedEncoder` cannot run ``model``, or None when it can."""
    class_name = type(model).__name__
    if class_name not in _BASE_MODELS:
        return f"{class_name} is not one of {', '.join(_BASE_MODELS)}"
    config = model.config
    if config.is_decoder or getattr(config, "add_cross_attention", False):
        return "the model is a decoder"
    position = getattr(config, "position_embedding_type", "absolute")
    if position != "absolute":
        return f"position_embedding_type is {position!r}, not 'absolute'"
    return None


class PackedEncoder:
    """Compute a supported model's logits, running per-token steps on real tokens only.

    Construction joins each layer's query, key and value weights into one matrix, so that
    one matrix product computes all three. The model's own parameters become views of the
    joined matrices, so the model's forward still works and no memory is added.

    Args:
        model: a model for which `unsupported_reason` returns None, in eval mode.
    """

    def __init__(self, model: Any) -> None:
        reason = unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"PackedEncoder cannot run this model: {reason}")
        self.model = model
        self.base = getattr(model, _BASE_MODELS[type(model).__name__])
        self.heads = model.config.num_attention_heads
        # "gelu" is the erf form in transformers' ACT2FN, which torch's gelu_ computes too.
        self.exact_gelu = model.config.hidden_act == "gelu"
        self.join_projections()

    def join_projections(self) -> None:
        """Join each layer's query, key and value weights again, as they are now.

        Call it after changing the type or device of the model's weights, which turns the
        views back into separate tensors.
        """
        self.projections = [_join_projections(layer.attention.self) for layer in self.layers]

    @property
    def layers(self):
        return self.base.encoder.layer

    def __call__(self, input_ids, attention_mask, token_type_ids=None):
        """Return the logits of a padded batch, one row per sequence."""
        import torch

        mask = attention_mask.bool()
        rows, width = input_ids.shape
        embedded = self.base.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        # Positions of the real tokens in the flattened batch, row by row.
        real = mask.reshape(-1).nonzero().squeeze(1)
        hidden = embedded.reshape(rows * width, -1).index_select(0, real)
        lengths = mask.sum(dim=1)
        first = torch.cumsum(lengths, 0) - lengths

        last = len(self.layers) - 1
        for index, (layer, projection) in enumerate(
            zip(self.layers, self.projections, strict=True)
        ):
            # The classifier reads the first token of each row alone, so past the attention
            # of the last layer only those tokens are computed. Keys and values still come
            # from every token.
            queries = first if index == last else None
            attended = self._attention(layer, projection, hidden, real, mask, queries)
            if queries is not None:
                hidden = hidden.index_select(0, queries)
            hidden = _feed_forward(layer, attended, hidden, self.exact_gelu)
        return self._classify(hidden)

    def _attention(self, layer, projection, hidden, real, mask, queries=None):
        """Self-attention of each row over its own tokens, on packed input and output.

        With ``queries``, packed positions of one token per row, only those tokens attend,
        and the result has one row per batch row.
        """
        import torch.nn.functional as F

        rows, width = mask.shape
        size = hidden.shape[1]
        weight, bias = projection
        split = (rows, width, -1, self.heads, size // self.heads)
        if queries is None:
            joined = F.linear(hidden, weight, bias)
            query, key, value = (
                _scatter(joined, real, rows * width).view(split).permute(2, 0, 3, 1, 4)
            )
        else:
            joined = F.linear(hidden, weight[size:], bias[size:])
            key, value = _scatter(joined, real, rows * width).view(split).permute(2, 0, 3, 1, 4)
            query = F.linear(hidden.index_select(0, queries), weight[:size], bias[:size])
            query = query.view(rows, 1, self.heads, -1).transpose(1, 2)

        attended = F.scaled_dot_product_attention(
            query, key, value, attn_mask=mask[:, None, None, :], scale=layer.attention.self.scaling
        )
        attended = attended.transpose(1, 2).reshape(-1, size)
        return attended if queries is not None else attended.index_select(0, real)

    def _classify(self, first):
        model = self.model
        if type(model).__name__ == "BertForSequenceClassification":
            pooler = self.base.pooler
            return model.classifier(pooler.activation(pooler.dense(first)))
        # The RoBERTa head reads the first position of a (rows, positions, size) tensor.
        return model.classifier(first.unsqueeze(1))


def _join_projections(attention) -> tuple[Any, Any]:
    """Join query, key and value into one weight and bias; make the originals views of them."""
    import torch

    linears = (attention.query, attention.key, attention.value)
    weight = torch.cat([linear.weight.detach() for linear in linears]).contiguous()
    bias = torch.cat([linear.bias.detach() for linear in linears]).contiguous()
    size = attention.query.weight.shape[0]
    for index, linear in enumerate(linears):
        linear.weight.data = weight[index * size : (index + 1) * size]
        linear.bias.data = bias[index * size : (index + 1) * size]
    return weight, bias


def _scatter(packed, real, positions: int):
    """Return a (positions, columns) tensor of zeros with the packed rows at ``real``."""
    padded = packed.new_zeros(positions, packed.shape[1])
    return padded.index_copy_(0, real, packed)


def _feed_forward(layer, attended, hidden, exact_gelu: bool, chunk: int = FEED_FORWARD_ROWS):
    """Compute the per-token rest of a layer: attention output, residuals, layer norms, FFN.

    Rows run ``chunk`` at a time, so that the wide intermediate activations are still in the
    CPU cache when the next step reads them.
    """
    import torch

    if len(hidden) <= chunk:
        return _feed_forward_rows(layer, attended, hidden, exact_gelu)
    result = torch.empty_like(hidden)
    for start in range(0, len(hidden), chunk):
        rows = slice(start, start + chunk)
        result[rows] = _feed_forward_rows(layer, attended[rows], hidden[rows], exact_gelu)
    return result


def _feed_forward_rows(layer, attended, hidden, exact_gelu: bool):
    import torch

    output = layer.attention.output
    hidden = output.LayerNorm(output.dense(attended) + hidden)
    intermediate = layer.intermediate
    expanded = intermediate.dense(hidden)
    if exact_gelu:
        # In place: one pass over the activations instead of a read and a new write.
        torch.ops.aten.gelu_(expanded)
    else:
        expanded = intermediate.intermediate_act_fn(expanded)
    return layer.output.LayerNorm(layer.output.dense(expanded) + hidden)
