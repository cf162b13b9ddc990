"""Cases (SPEC.md §6): the ``/inputs`` group of a case or trace file, and the model inputs it
gives a transformers model."""

from __future__ import annotations

from typing import Any

import numpy as np

from .trace import _File, _read_inputs


def read_case(path: str) -> dict[str, np.ndarray]:
    """The ``/inputs`` group of a case or trace file, as stored, under the readers' rules
    for it (shapes, sizes, the grid); raises `TraceError` naming the file and the object."""
    f = _File(path)
    try:
        inputs = _read_inputs(f)
        return {k: f.f[f"/inputs/{k}"][()] for k in inputs}
    finally:
        f.close()


def case_span(case: dict[str, np.ndarray]) -> tuple[int, int, int]:
    """``(P, N, S)``: prefix tokens, visual tokens, sequence length."""
    visual = case.get("visual_features", case.get("visual_embeddings"))
    if visual is None:
        raise ValueError("the case has neither visual_features nor visual_embeddings")
    p, n = int(np.asarray(case["prefix_ids"]).size), int(visual.shape[0])
    return p, n, p + n + int(np.asarray(case["suffix_ids"]).size)


def model_inputs(model: Any, case: dict[str, np.ndarray]) -> dict[str, Any]:
    """``inputs_embeds [1, S, d]`` and ``position_ids`` (``[1, S]``, or ``[3, 1, S]`` for
    M-RoPE) for ``model(**model_inputs(model, case))``: the prefix and suffix through the
    model's token embedding, the visual rows through its projector when the case holds vision
    features (LLaVA's ``multi_modal_projector``; Qwen2.5-VL's merger, one 2×2 unit per row)
    or as they are when it holds embeddings. In the model's dtype."""
    import torch

    from .recorder import text_model

    dtype = next(model.parameters()).dtype
    emb = text_model(model).embed_tokens
    if "visual_features" in case:
        x = torch.from_numpy(np.ascontiguousarray(case["visual_features"])).to(dtype)
        inner = model.model
        if hasattr(inner, "multi_modal_projector"):
            visual = inner.multi_modal_projector(x)
        elif hasattr(inner, "visual") and hasattr(inner.visual, "merger"):
            merger = inner.visual.merger
            visual = merger(x.reshape(-1, merger.ln_q.weight.shape[0]))  # rows of 4 patches, normed patch by patch
        else:
            raise ValueError(f"{type(model).__name__} has no multimodal projector for the case's visual_features")
    else:
        visual = torch.from_numpy(np.ascontiguousarray(case["visual_embeddings"])).to(dtype)
    prefix = torch.from_numpy(np.asarray(case["prefix_ids"], dtype=np.int64))
    suffix = torch.from_numpy(np.asarray(case["suffix_ids"], dtype=np.int64))
    embeds = torch.cat([emb(prefix), visual, emb(suffix)])[None]
    pos = torch.from_numpy(np.asarray(case["positions"], dtype=np.int64))
    return {"inputs_embeds": embeds, "position_ids": pos[0][None] if pos.shape[0] == 1 else pos[:, None, :]}
