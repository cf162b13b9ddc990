"""Cases (SPEC.md §6): the ``/inputs`` group of a case or trace file, and the model inputs it
gives a transformers model."""

from __future__ import annotations

import math
from typing import Any, Sequence

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


def build_case(model: Any, image: Any, prompt: str, *, image_processor: Any, tokenizer: Any, decode_steps: int = 3,
               vision_side: bool | str = False, cls_attention_layer: int = -2,
               similarity_layers: Sequence[int] = tuple(range(16, 25))) -> dict[str, np.ndarray]:
    """A case (SPEC.md §6) from an HF VLM, its image processor and tokenizer, an image and a
    prompt holding the image placeholder once (LLaVA: ``<image>``; Qwen2.5-VL:
    ``<|image_pad|>``, between ``<|vision_start|>`` and ``<|vision_end|>`` as its chat
    template writes it). The placeholder is expanded to one token per visual token, as the
    model's processor does; the token ids are split at the image; the visual rows are the
    model's own image features after its projector (LLaVA's ``multi_modal_projector`` on the
    selected CLIP layer; Qwen2.5-VL's vision tower and merger), stored as
    ``visual_embeddings``; the grid is the image's LLM-side grid; positions are ``0 … S−1``
    (LLaVA) or the model's own ``get_rope_index`` (Qwen2.5-VL, 3-D M-RoPE). In float32.

    With ``vision_side`` (LLaVA), the visual rows are stored as ``visual_features`` instead
    (the patch features of CLIP layer ``vision_feature_layer`` before the projector, which
    Nüwa's stage 1 aggregates; the suite applies the projector), with Nüwa's vision-side
    inputs as its code computes them:
    ``vision_side/cls_attention`` the CLS row of CLIP layer ``cls_attention_layer``'s
    attention to each patch, summed over heads (default the penultimate layer, whose output
    LLaVA takes), and ``vision_side/similarity_features`` the mean of CLIP's
    ``hidden_states`` entries ``similarity_layers`` over the patches (default 16 … 24, as
    for LLaVA-1.5's 24-layer CLIP; entry 0 is the embedding output).

    With ``vision_side="visionzip"`` (LLaVA), VisionZip's inputs instead (SPEC.md §8.17): the
    same ``cls_attention``; ``vision_side/similarity_features`` the keys of that layer,
    ``k_proj(layer_norm1(x))`` of its input, averaged over heads (no RoPE, unscaled); and
    ``vision_side/cls_feature`` the CLS token of CLIP layer ``vision_feature_layer`` (the one
    whose patches are the features), which VisionZip hands to the LLM; ``similarity_layers``
    is not used. VisionZip's code reads all three at CLIP layer −2: keep ``cls_attention_layer``
    and ``vision_feature_layer`` equal (both −2 for LLaVA-1.5) to build its inputs."""
    import torch

    name = type(model).__name__
    cfg = model.config
    with torch.no_grad():
        if name == "LlavaForConditionalGeneration":
            token_id = int(cfg.image_token_index)
            pixels = image_processor(images=image, return_tensors="pt")["pixel_values"]
            visual = model.model.get_image_features(pixel_values=pixels.to(model.dtype)).pooler_output[0]
            side = math.isqrt(visual.shape[0])
            if side * side != visual.shape[0]:
                raise ValueError(f"{name}: {visual.shape[0]} image features are not a square grid")
            grid = (side, side)
            if vision_side not in (False, True, "nuwa", "visionzip"):
                raise ValueError(f"vision_side must be False, True / 'nuwa', or 'visionzip', not {vision_side!r}")
            if vision_side:
                tower = model.model.vision_tower
                v = tower(pixels.to(model.dtype), output_attentions=True, output_hidden_states=True)
                cls = v.attentions[cls_attention_layer][0, :, 0, 1:].sum(dim=0)  # [patches]
                features = v.hidden_states[cfg.vision_feature_layer][0, 1:]  # the 'default' select strategy drops CLS
                side_inputs = {"visual_features": features.float().numpy().astype(np.float32),
                               "vision_side/cls_attention": cls.float().numpy().astype(np.float32)}
                if vision_side != "visionzip":
                    hs = [v.hidden_states[i][0, 1:] for i in similarity_layers]
                    side_inputs["vision_side/similarity_features"] = torch.stack(hs).mean(dim=0).float().numpy().astype(np.float32)
                else:
                    layers = tower.vision_model.encoder.layers if hasattr(tower, "vision_model") else tower.encoder.layers
                    index = cls_attention_layer % len(layers)
                    layer = layers[index]
                    keys = layer.self_attn.k_proj(layer.layer_norm1(v.hidden_states[index][0]))  # the layer's input is entry `index`
                    heads = int(layer.self_attn.num_heads)
                    keys = keys.view(keys.shape[0], heads, -1).mean(dim=1)[1:]
                    side_inputs["vision_side/similarity_features"] = keys.float().numpy().astype(np.float32)
                    side_inputs["vision_side/cls_feature"] = v.hidden_states[cfg.vision_feature_layer][0, 0].float().numpy().astype(np.float32)
                if side_inputs["vision_side/cls_attention"].shape[0] != side * side:
                    raise ValueError(f"{name}: {cls.shape[0]} patches for a {side}x{side} grid (a select strategy other than 'default'?)")
        elif name == "Qwen2_5_VLForConditionalGeneration":
            token_id = int(cfg.image_token_id)
            px = image_processor(images=image, return_tensors="pt")
            thw = px["image_grid_thw"]
            merge = int(cfg.vision_config.spatial_merge_size)
            t, h, w = (int(x) for x in thw[0])
            if thw.shape[0] != 1 or t != 1:
                raise ValueError(f"{name}: one image of one frame expected, got grid_thw {thw.tolist()}")
            visual = model.model.get_image_features(pixel_values=px["pixel_values"].to(model.dtype), image_grid_thw=thw).pooler_output[0]
            grid = (h // merge, w // merge)
            if vision_side:
                raise ValueError(f"{name}: Nüwa's vision-side inputs are built for LLaVA only")
        else:
            raise ValueError(f"{name} is not supported; cases are built for LlavaForConditionalGeneration and "
                             "Qwen2_5_VLForConditionalGeneration")
        placeholder = tokenizer.convert_ids_to_tokens(token_id)
        if prompt.count(placeholder) != 1:
            raise ValueError(f"the prompt must hold the image placeholder {placeholder!r} once, found {prompt.count(placeholder)}")
        n = visual.shape[0]
        ids = tokenizer(prompt.replace(placeholder, placeholder * n), return_tensors="pt")["input_ids"]
        at = (ids[0] == token_id).nonzero().reshape(-1)
        if len(at) != n or int(at[-1] - at[0]) != n - 1:
            raise ValueError(f"the tokenized prompt holds {len(at)} image tokens in {'one run' if len(at) else 'none'}; expected {n} in one run")
        prefix, suffix = ids[0, : int(at[0])], ids[0, int(at[-1]) + 1:]
        vocab = int(cfg.get_text_config().vocab_size)
        for label, part in (("prefix", prefix), ("suffix", suffix)):
            if len(part) and int(part.max()) >= vocab:
                raise ValueError(f"the {label} holds token id {int(part.max())}, outside the model's vocabulary [0, {vocab})")
        if len(suffix) == 0:
            raise ValueError("the prompt needs text after the image (its last token is the scoring query)")
        S = ids.shape[1]
        if name == "Qwen2_5_VLForConditionalGeneration":
            pos, _ = model.model.get_rope_index(ids, (ids == token_id).int(), image_grid_thw=thw, attention_mask=torch.ones_like(ids))
            positions = pos[:, 0].numpy().astype(np.int64)
        else:
            positions = np.arange(S, dtype=np.int64)[None]
    case = {"prefix_ids": prefix.numpy().astype(np.int64), "suffix_ids": suffix.numpy().astype(np.int64),
            "grid": np.asarray(grid, dtype=np.int64), "visual_embeddings": visual.float().numpy().astype(np.float32),
            "positions": positions, "decode_steps": np.int64(decode_steps)}
    if vision_side:
        del case["visual_embeddings"]
        case |= side_inputs
    return case


def write_case(path: str, case: dict[str, np.ndarray], *, case_name: str, model_name: str = "", overwrite: bool = False) -> None:
    """Writes a case file (``/inputs`` and ``/@case``, ``/@model``; SPEC.md §6) that ``reroute
    run --case`` reads; atomically, read back before it is renamed into place."""
    import os

    import h5py

    from .errors import TraceError
    from .trace import _new_temporary

    if os.path.lexists(path) and (not overwrite or not os.path.isfile(path)):
        raise FileExistsError(f"{path}: exists; pass overwrite=True" if os.path.isfile(path) else f"{path}: exists and is not a regular file")
    tmp = _new_temporary(path)
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["case"], f.attrs["model"], f.attrs["producer"] = case_name, model_name, "reroute-trace build_case"
            for k, v in case.items():
                f.create_dataset(f"inputs/{k}", data=v)
        try:
            read_case(tmp)
        except TraceError as e:
            raise TraceError(path, e.object, e.kind, e.detail + " (not written)") from None
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
