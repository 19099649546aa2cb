"""Export a sentence-transformers BERT-style model to ONNX, fuse it, and quantise it to int8.

Runs once per weights digest (see ``artifacts.ensure_artefact``); needs torch and transformers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from embedops.models.artifacts import library_versions
from embedops.models.base import ModelSpec

logger = logging.getLogger(__name__)

OPSET = 17


def export_raw(spec: ModelSpec, path: Path) -> Any:
    """Export the transformer to ``path``: token embeddings out (pooling runs in numpy).

    Returns the model's transformers config.
    """
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(str(spec.path))
    # Eager attention gives the plain MatMul/Softmax graph that ORT's BERT fusion recognises.
    bert = AutoModel.from_pretrained(str(spec.path), attn_implementation="eager").eval()

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            return self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=torch.zeros_like(input_ids),
            ).last_hidden_state

    sample = torch.ones(2, 16, dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            TokenEmbeddings(bert).eval(),
            (sample, sample),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["token_embeddings"],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "sequence"},
                "attention_mask": {0: "batch", 1: "sequence"},
                "token_embeddings": {0: "batch", 1: "sequence"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
            external_data=False,
        )
    return config


def export_fp32(spec: ModelSpec, folder: Path, filename: str) -> dict[str, Any]:
    """Export the plain graph to ``folder/filename``.

    ONNX Runtime optimises it at load time (``ORT_ENABLE_ALL``: LayerNormalization, FusedMatMul,
    Gelu). The offline BERT fusions of ``onnxruntime.transformers`` (Attention,
    SkipLayerNormalization, BiasGelu) ran 6-19% slower on CPU (STS-B, 1 and 2 threads), so they
    are not applied.
    """
    export_raw(spec, folder / filename)
    return {
        "opset": OPSET,
        "libraries": library_versions("torch", "transformers", "onnx", "onnxruntime"),
    }


# Layers whose quantisation costs the most accuracy stay fp32: for all-MiniLM-L6-v2 the first
# layer's FFN output (measured: mean cosine to fp32 0.9928 -> 0.9941, STS-B 86.53 -> 86.64).
INT8_KEEP_FP32 = ("layer.0/output/dense/MatMul",)

# What each build makes: part of the artefact's manifest; an artefact built by another recipe
# is rebuilt (a stale offline-fused fp32 file ran 6-19% slower than the plain graph).
FP32_RECIPE = f"plain graph, opset {OPSET}, ORT fuses at load"
INT8_RECIPE = (
    f"plain graph, opset {OPSET}, dynamic int8 per-channel weights, "
    f"fp32 kept: {', '.join(INT8_KEEP_FP32)}"
)


def export_int8(spec: ModelSpec, folder: Path, filename: str) -> dict[str, Any]:
    """Export the plain graph, then quantise its MatMul weights to int8 per channel.

    Dynamic quantisation (activations quantised at run time), signed int8 weights, one scale
    per output channel, full range. Quantising the plain graph was as fast as the fused one and
    more accurate.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    raw = folder / "raw.onnx"
    export_raw(spec, raw)
    graph = onnx.load(str(raw)).graph
    keep = [n.name for n in graph.node if n.name.endswith(INT8_KEEP_FP32)]
    quantize_dynamic(
        str(raw),
        str(folder / filename),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=False,
        nodes_to_exclude=keep,
    )
    raw.unlink()
    return {
        "opset": OPSET,
        "quantization": {
            "method": "dynamic",
            "weights": "int8 per-channel",
            "kept_fp32": keep,
        },
        "libraries": library_versions("torch", "transformers", "onnx", "onnxruntime"),
    }
