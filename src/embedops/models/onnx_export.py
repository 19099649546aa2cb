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


def export_fp32(spec: ModelSpec, folder: Path, filename: str) -> dict[str, Any]:
    """Export the transformer (token embeddings out; pooling runs in numpy), then apply ONNX
    Runtime's BERT fusions. Writes ``folder/filename``."""
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

    raw = folder / "raw.onnx"
    sample = torch.ones(2, 16, dtype=torch.long)
    with torch.no_grad():
        torch.onnx.export(
            TokenEmbeddings(bert).eval(),
            (sample, sample),
            str(raw),
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
    fused = _fuse(raw, config.num_attention_heads, config.hidden_size)
    fused.save_model_to_file(str(folder / filename))
    raw.unlink()
    return {
        "opset": OPSET,
        "fusions": {k: int(v) for k, v in fused.get_fused_operator_statistics().items() if v},
        "libraries": library_versions("torch", "transformers", "onnx", "onnxruntime"),
    }


def _fuse(path: Path, heads: int, hidden: int) -> Any:
    from onnxruntime.transformers import optimizer

    # opt_level=0: Python fusions only, so the file does not depend on this CPU's features.
    return optimizer.optimize_model(
        str(path),
        model_type="bert",
        num_heads=heads,
        hidden_size=hidden,
        opt_level=0,
        use_gpu=False,
    )
