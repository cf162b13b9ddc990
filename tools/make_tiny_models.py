#!/usr/bin/env python3
"""Build the tiny reference checkpoints and transformers' own outputs for them.

This is the project's *independent* reference: the checkpoints are written in Hugging
Face format (config.json + .safetensors) and the expected outputs are computed by
Hugging Face transformers itself, not by any code of this repository.

Install (CPU torch comes from the machine's local wheel; never install plain `torch`):

    pip install -r tools/requirements.txt

Usage:

    python3 tools/make_tiny_models.py --out golden/models           # regenerate in place
    python3 tools/make_tiny_models.py --out /tmp/x --check golden/models
                                                                    # reproduce and compare

Models, each written by transformers in a layout real checkpoints have (SPEC.md §3.2):

- tiny-llama      LlavaForConditionalGeneration (LLaMA text model, the smallest CLIP tower),
                  bf16, save_pretrained: the llava-hf layout (language_model.model.*,
                  multi_modal_projector.*, vision_tower.*)
- tiny-qwen2      LlavaForConditionalGeneration with a Qwen2 text model, tied embeddings,
                  written under transformers 5's module names (model.language_model.*,
                  model.multi_modal_projector.*, model.vision_tower.*) as two shards + index;
                  language model f32, projector f16
- tiny-qwen2-vl   Qwen2_5_VLForConditionalGeneration (3-D M-RoPE), f32, save_pretrained: the
                  Hub's layout (model.*, visual.*); the vision merger is the projector

Every folder is loaded back with from_pretrained and checked to hold exactly the stored
tensors before any output is computed; vision features go through transformers' own
projector module. No vision tower is ever run.

What is written, per model `golden/models/<model>/`:

- `config.json`                       transformers' own config (save_pretrained)
- `model.safetensors` or shards + `model.safetensors.index.json`, `generation_config.json`
  when save_pretrained writes one
- `cases/<case>.h5`                   inputs and transformers' outputs (schema below)

Case file (HDF5, written with h5py's default libver so HDF5 1.10 can read it):

    attrs: format="reroute.hf-reference", format_version=1, model, case, seed,
           torch_version, transformers_version, generator
    /inputs/prefix_ids        int64 [P]      text before the image
    /inputs/suffix_ids        int64 [Q]      text after the image
    /inputs/visual_features   float32 [N,dv] (or /inputs/visual_embeddings float32 [N,d]); for
                                             Qwen2.5-VL a row is the merge unit's 4 patch features
    /inputs/grid              int64 [2]      rows, cols (rows*cols == N)
    /inputs/positions         int64 [A,S]    position ids (axes x tokens); S = P+N+Q; A = 1, or
                                             3 (t, h, w) for Qwen2.5-VL M-RoPE, as transformers'
                                             get_rope_index builds them (see mrope_positions)
    /inputs/decode_steps      int64 scalar   number of greedy tokens
    /<run>/hidden_states      float32 [L+1,S,d] hidden state entering each layer; [L] = last output
    /<run>/logits             float32 [S,V]  logits at every prefill position
    /<run>/step_logits        float32 [T,V]  logits each greedy token was chosen from
    /<run>/greedy_tokens      int64 [T]
    /<run>/last_row_attention float32 [L,H,S] attention probabilities of the last prefill row
                                            (float64 run only)
    run "float64": model in float64, float32 islands lifted to float64 (see patch_float64)
    run "float32": stock transformers in float32 (hidden_states omitted to save space)

Decode convention (SPEC.md, "Positions"): greedy step k feeds token k-1 at position
max(prefill positions) + k, with the KV cache of the prefill. With 3 axes, max is taken over
all axes and the fed token gets that position on all three: this is what transformers'
rope_deltas produce (cache length + max + 1 - S), checked for every M-RoPE case.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch
import transformers
from safetensors.torch import save_file
from transformers import LlavaConfig, LlavaForConditionalGeneration, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

SEED = 20261125
GENERATOR = "tools/make_tiny_models.py"
# Greedy tokens are compared exactly, so every chosen token must win by a margin far
# above float32 noise (about 1e-5 here); the generator refuses a case that does not.
MIN_TOP2_MARGIN = 1e-3

MODELS = {
    # LlavaForConditionalGeneration as save_pretrained writes it (the Hub's llava-hf layout:
    # language_model.model.*, language_model.lm_head, multi_modal_projector.*, vision_tower.*),
    # all bf16, one file: exercises bf16 -> f32 and LLaVA-1.5's config form.
    "tiny-llama": dict(
        family="llama",
        wrapper="llava",
        storage="save_pretrained-bf16",
        config=dict(
            vocab_size=256, hidden_size=64, intermediate_size=172, num_hidden_layers=8,
            num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-5,
            rope_theta=10000.0, max_position_embeddings=1024, tie_word_embeddings=False,
            attention_bias=False, mlp_bias=False, hidden_act="silu",
        ),
        # The smallest CLIP tower (never run): its width is the projector's input width.
        vision_config=dict(hidden_size=48, intermediate_size=48, num_hidden_layers=1, num_attention_heads=1,
                           image_size=28, patch_size=14, projection_dim=48),
    ),
    # LlavaForConditionalGeneration with a Qwen2 text model, written under transformers 5's
    # module names (model.language_model.*, model.multi_modal_projector.*, lm_head) as two
    # shards + index: the language model f32, the projector f16 (subnormals included), the
    # vision tower f32; tied embeddings.
    "tiny-qwen2": dict(
        family="qwen2",
        wrapper="llava",
        storage="state_dict-sharded",
        projector_dtype=torch.float16,
        config=dict(
            vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=8,
            num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
            rope_theta=1000000.0, max_position_embeddings=1024, tie_word_embeddings=True,
            hidden_act="silu", use_sliding_window=False,
        ),
        vision_config=dict(hidden_size=48, intermediate_size=48, num_hidden_layers=1, num_attention_heads=1,
                           image_size=28, patch_size=14, projection_dim=48),
    ),
    # Qwen2_5_VLForConditionalGeneration as save_pretrained writes it (the Hub's layout:
    # model.*, visual.*, lm_head), f32; the vision merger (visual.merger.*) is the projector.
    "tiny-qwen2-vl": dict(
        family="qwen2_5_vl",
        wrapper="qwen2_5_vl",
        storage="save_pretrained-f32",
        # The language model (text_config). 8 layers, so every shipped schedule remaps to
        # distinct layers (SPEC.md §8.3); GQA 3:1. head_dim 16: 8 frequencies, split t/h/w by
        # mrope_section. rope_theta 100 (not Qwen's 1e6) so that even the lowest (w) frequencies
        # turn by a visible angle over the image's few positions.
        config=dict(
            vocab_size=256, hidden_size=48, intermediate_size=96, num_hidden_layers=8,
            num_attention_heads=3, num_key_value_heads=1, rms_norm_eps=1e-6,
            max_position_embeddings=1024, tie_word_embeddings=False, hidden_act="silu",
            use_sliding_window=False,
            rope_parameters=dict(rope_type="mrope", rope_theta=100.0, mrope_section=[2, 3, 3]),
            bos_token_id=None, eos_token_id=None, pad_token_id=None,
        ),
        # Smallest useful vision tower (never run): its merger (2x2 patches of width 8, so
        # features of width 32) is the projector, and spatial_merge_size 2 enters get_rope_index.
        vision_config=dict(
            depth=1, hidden_size=8, intermediate_size=8, num_heads=1, in_channels=3, patch_size=2,
            temporal_patch_size=2, spatial_merge_size=2, window_size=8, out_hidden_size=48,
            fullatt_block_indexes=[0], tokens_per_second=2,
        ),
    ),
}

CASES = [
    # name, prefix length, grid (rows, cols), suffix length, visual input kind, positions kind
    dict(name="features-12x12-contiguous", prefix=5, grid=(12, 12), suffix=7,
         visual="features", positions="contiguous", decode_steps=4),
    dict(name="embeddings-12x14-gapped", prefix=4, grid=(12, 14), suffix=6,
         visual="embeddings", positions="gapped", decode_steps=4),
]

# Qwen2.5-VL cases: one image (1 frame) of rows x cols LLM tokens between two text runs,
# 3-D positions from get_rope_index. Non-square both ways, so h and w differ.
MROPE_CASES = [
    dict(name="features-6x8-mrope", prefix=5, grid=(6, 8), suffix=7,
         visual="features", positions="mrope", decode_steps=4),
    dict(name="embeddings-8x6-mrope", prefix=4, grid=(8, 6), suffix=6,
         visual="embeddings", positions="mrope", decode_steps=4),
]


def model_cases(spec: dict) -> list[dict]:
    return MROPE_CASES if spec["family"] == "qwen2_5_vl" else CASES


def case_seed(model: str, case: str) -> int:
    """Seed per (model, case) from a hash, so adding a case perturbs no other."""
    digest = hashlib.sha256(f"{SEED}/{model}/{case}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def vision_dim(spec: dict) -> int:
    """Width of a feature row: CLIP's hidden size (LLaVA), or the merger's input, the
    spatial_merge_size^2 patch features of one LLM token side by side (Qwen2.5-VL)."""
    v = spec["vision_config"]
    return v["hidden_size"] * (v["spatial_merge_size"] ** 2 if spec["wrapper"] == "qwen2_5_vl" else 1)


def make_weights(name: str, spec: dict) -> dict[str, np.ndarray]:
    """Language-model and LLaVA-projector weights in float32 numpy, from numpy's PCG64
    (platform independent), under transformers 5's module names.

    Scales keep activations O(1) so nothing is trivially near zero: matrices
    N(0, 1/fan_in), embeddings N(0, 0.25^2) (small enough that with tied embeddings the
    fed-back token does not dominate the residual stream and greedy decoding does not just
    repeat it), norm weights 1 + N(0, 0.1^2), biases N(0, 0.1^2).
    """
    c = spec["config"]
    rng = np.random.Generator(np.random.PCG64(case_seed(name, "weights")))
    d, m, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    H, KV = c["num_attention_heads"], c["num_key_value_heads"]
    hd = d // H
    bias = spec["family"] in ("qwen2", "qwen2_5_vl") or c.get("attention_bias", False)

    def mat(rows, cols):
        return (rng.standard_normal((rows, cols)) / math.sqrt(cols)).astype(np.float32)

    def vec(n, base=0.0, scale=0.1):
        return (base + scale * rng.standard_normal(n)).astype(np.float32)

    lm = "model.language_model."
    w: dict[str, np.ndarray] = {}
    w[lm + "embed_tokens.weight"] = (0.25 * rng.standard_normal((V, d))).astype(np.float32)
    for l in range(c["num_hidden_layers"]):
        p = f"{lm}layers.{l}."
        w[p + "input_layernorm.weight"] = vec(d, 1.0)
        w[p + "self_attn.q_proj.weight"] = mat(H * hd, d)
        w[p + "self_attn.k_proj.weight"] = mat(KV * hd, d)
        w[p + "self_attn.v_proj.weight"] = mat(KV * hd, d)
        if bias:
            w[p + "self_attn.q_proj.bias"] = vec(H * hd)
            w[p + "self_attn.k_proj.bias"] = vec(KV * hd)
            w[p + "self_attn.v_proj.bias"] = vec(KV * hd)
        w[p + "self_attn.o_proj.weight"] = mat(d, H * hd)
        w[p + "post_attention_layernorm.weight"] = vec(d, 1.0)
        w[p + "mlp.gate_proj.weight"] = mat(m, d)
        w[p + "mlp.up_proj.weight"] = mat(m, d)
        w[p + "mlp.down_proj.weight"] = mat(d, m)
    w[lm + "norm.weight"] = vec(d, 1.0)
    if not c["tie_word_embeddings"]:
        w["lm_head.weight"] = mat(V, d)
    if spec["wrapper"] == "llava":
        dv = vision_dim(spec)
        w["model.multi_modal_projector.linear_1.weight"] = mat(d, dv)
        w["model.multi_modal_projector.linear_1.bias"] = vec(d)
        w["model.multi_modal_projector.linear_2.weight"] = mat(d, d)
        w["model.multi_modal_projector.linear_2.bias"] = vec(d)
    return w


def make_vision_weights(name: str, shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Weights of the vision tower (never run; for Qwen2.5-VL its merger is the projector):
    the same scale rules as make_weights, own stream, in sorted name order."""
    rng = np.random.Generator(np.random.PCG64(case_seed(name, "vision")))
    w = {}
    for k in sorted(shapes):
        shape = shapes[k]
        if k.endswith(".bias"):
            w[k] = (0.1 * rng.standard_normal(shape)).astype(np.float32)
        elif len(shape) == 1:  # norm weights (and CLIP's class embedding)
            w[k] = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
        else:
            w[k] = (rng.standard_normal(shape) / math.sqrt(int(np.prod(shape[1:])))).astype(np.float32)
    return w


def build_config(spec: dict):
    """The transformers config of the whole model; tying on both configs (transformers 5
    reads the outer one for VLMs)."""
    text = dict(spec["config"])
    tie = text["tie_word_embeddings"]
    if spec["wrapper"] == "qwen2_5_vl":
        text.pop("tie_word_embeddings")
        text["rope_parameters"] = dict(text["rope_parameters"])
        return Qwen2_5_VLConfig(text_config=text, vision_config=dict(spec["vision_config"]), tie_word_embeddings=tie)
    text["model_type"] = spec["family"]
    vision = dict(spec["vision_config"], model_type="clip_vision_model")
    return LlavaConfig(text_config=text, vision_config=vision, projector_hidden_act="gelu", tie_word_embeddings=tie,
                       image_token_index=spec["config"]["vocab_size"] - 1)


def model_class(spec: dict):
    return Qwen2_5_VLForConditionalGeneration if spec["wrapper"] == "qwen2_5_vl" else LlavaForConditionalGeneration


def stored_dtype(spec: dict, key: str) -> torch.dtype:
    if spec["storage"].endswith("bf16"):
        return torch.bfloat16
    if "multi_modal_projector" in key and "projector_dtype" in spec:
        return spec["projector_dtype"]
    return torch.float32


def save_checkpoint(out: Path, name: str, spec: dict) -> dict[str, torch.Tensor]:
    """Writes the model folder; returns the stored tensors widened to f32, by module name."""
    config = build_config(spec)
    torch.manual_seed(0)
    model = model_class(spec)(config).eval()
    state = model.state_dict()
    weights = make_weights(name, spec)
    vision = make_vision_weights(name, {k: tuple(v.shape) for k, v in state.items()
                                        if k not in weights and k != "lm_head.weight"})
    arrays = {**weights, **vision}
    stored = {k: torch.from_numpy(v).to(stored_dtype(spec, k)).contiguous() for k, v in arrays.items()}
    widened = {k: v.to(torch.float32) for k, v in stored.items()}
    load = dict(widened)
    if spec["config"]["tie_word_embeddings"]:
        load["lm_head.weight"] = load["model.language_model.embed_tokens.weight"]
    missing, unexpected = model.load_state_dict(load, strict=True)
    assert not missing and not unexpected, (missing, unexpected)
    out.mkdir(parents=True, exist_ok=True)
    if spec["storage"].startswith("save_pretrained"):
        # transformers' own writer (it saves the names its loaders have always read).
        model.to(stored_dtype(spec, "")).save_pretrained(str(out))
    else:
        # transformers 5's module names, as a saved state_dict() has them, in two shards.
        config.architectures = [model_class(spec).__name__]
        config.save_pretrained(str(out))
        names = sorted(stored)
        shards = [names[: len(names) // 2], names[len(names) // 2:]]
        index = {"metadata": {"total_size": sum(t.numel() * t.element_size() for t in stored.values())},
                 "weight_map": {}}
        for i, shard in enumerate(shards):
            fname = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            # One metadata key only: safetensors writes __metadata__ in hash-map order.
            save_file({k: stored[k] for k in shard}, str(out / fname), metadata={"format": "pt"})
            for k in shard:
                index["weight_map"][k] = fname
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return widened


def patch_float64(model):
    """Lift transformers' three float32 islands to float64 for the float64 run.

    Even in a float64 model, transformers computes (1) RoPE inverse frequencies and angles,
    (2) RMSNorm and (3) the attention softmax in float32. For the float64 run they are
    replaced by the same formulas in float64, so that run differs from an exact evaluation
    of the model only by float64 rounding. Everything else is transformers' own code.
    """
    lm = text_model(model)
    cfg = lm.config
    base = cfg.rope_parameters["rope_theta"]
    dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))

    def rope_forward(x, position_ids):
        freqs = position_ids[..., None].to(torch.float64) * inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    rotary = lm.rotary_emb
    if hasattr(rotary, "mrope_section"):
        # Qwen2.5-VL: the same angles per axis, then transformers' own recomposition
        # (mrope_section chunks of the half dimension take t, h, w in turn; duplicated).
        assert rotary.attention_scaling == 1.0

        def rope_forward(x, position_ids):  # noqa: F811
            freqs = position_ids.expand(3, -1, -1)[..., None].to(torch.float64) * inv_freq
            cos = rotary.recomposition_frequencies(freqs.cos())
            sin = rotary.recomposition_frequencies(freqs.sin())
            return cos.to(x.dtype), sin.to(x.dtype)

    rotary.forward = rope_forward

    def norm_forward(module):
        def forward(h):
            variance = h.pow(2).mean(-1, keepdim=True)
            return module.weight * (h * torch.rsqrt(variance + module.variance_epsilon))
        return forward

    for module in model.modules():
        if type(module).__name__.endswith("RMSNorm"):
            module.forward = norm_forward(module)


class Float64Softmax:
    """While active, a softmax asked for float32 on a float64 input stays in float64."""

    def __enter__(self):
        self.original = torch.nn.functional.softmax
        original = self.original

        def softmax(x, dim=None, _stacklevel=3, dtype=None):
            if x.dtype == torch.float64 and dtype == torch.float32:
                dtype = torch.float64
            return original(x, dim=dim, dtype=dtype)

        torch.nn.functional.softmax = softmax

    def __exit__(self, *exc):
        torch.nn.functional.softmax = self.original


def text_model(model):
    """The decoder stack: model.model (CausalLM) or model.model.language_model (Qwen2.5-VL)."""
    return getattr(model.model, "language_model", model.model)


def load_model(mdir: Path, spec: dict, weights: dict[str, torch.Tensor], dtype):
    """The model loaded back from the files just written, by transformers' own loading,
    checked to hold exactly the stored tensors."""
    model = model_class(spec).from_pretrained(str(mdir), dtype=torch.float32, attn_implementation="eager").eval()
    sd = model.state_dict()
    for k, v in weights.items():
        assert torch.equal(sd[k], v), k
    model = model.to(dtype)
    if dtype == torch.float64:
        patch_float64(model)
    return model


def make_case_inputs(model_name: str, spec: dict, case: dict) -> dict:
    rng = np.random.Generator(np.random.PCG64(case_seed(model_name, case["name"])))
    V = spec["config"]["vocab_size"]
    d = spec["config"]["hidden_size"]
    rows, cols = case["grid"]
    N = rows * cols
    P, Q = case["prefix"], case["suffix"]
    inputs = {
        "prefix_ids": rng.integers(0, V, P, dtype=np.int64),
        "suffix_ids": rng.integers(0, V, Q, dtype=np.int64),
        "grid": np.array([rows, cols], dtype=np.int64),
    }
    if case["visual"] == "features":
        inputs["visual_features"] = rng.standard_normal((N, vision_dim(spec))).astype(np.float32)
    else:
        inputs["visual_embeddings"] = rng.standard_normal((N, d)).astype(np.float32)
    S = P + N + Q
    if case["positions"] == "mrope":
        inputs["positions"] = mrope_positions(P, rows, cols, Q)
        inputs["decode_steps"] = np.int64(case["decode_steps"])
        return inputs
    if case["positions"] == "contiguous":
        pos = np.arange(S, dtype=np.int64)
    else:
        # Gaps inside the image (as after a pruner that keeps original positions) and a
        # jump after it: visual positions are a sorted random subset of a longer span.
        span = N + N // 3
        vis = np.sort(rng.choice(span, size=N, replace=False)).astype(np.int64) + P
        pos = np.concatenate([np.arange(P), vis, P + span + np.arange(Q)]).astype(np.int64)
    inputs["positions"] = pos[None, :]
    inputs["decode_steps"] = np.int64(case["decode_steps"])
    return inputs


def mrope_positions(P: int, rows: int, cols: int, Q: int) -> np.ndarray:
    """Qwen2.5-VL 3-D positions [3, S] (t, h, w) of P text tokens, one image of rows x cols
    LLM tokens (1 frame, row-major) and Q text tokens: text i -> (i, i, i); image token
    (r, c) -> (P, P + r, P + c); text after -> P + max(rows, cols) + j on all axes."""
    r, c = np.divmod(np.arange(rows * cols, dtype=np.int64), cols)
    image = np.stack([np.full(rows * cols, P, dtype=np.int64), P + r, P + c])
    before = np.tile(np.arange(P, dtype=np.int64), (3, 1))
    after = np.tile(P + max(rows, cols) + np.arange(Q, dtype=np.int64), (3, 1))
    return np.concatenate([before, image, after], axis=1)


@torch.no_grad()
def check_mrope_case(model, inputs, r32) -> None:
    """Cross-checks an M-RoPE case against transformers' own multimodal path.

    get_rope_index (input_ids with image placeholders, mm_token_type_ids, image_grid_thw in
    patches) must give exactly inputs["positions"]; its rope_deltas must put decode token k
    at max(positions) + 1 + k; and the model run the way generate() runs it (prefill with
    position_ids=None, so Qwen2_5_VLModel computes them; decode steps from rope_deltas) must
    reproduce the float32 run's logits and greedy tokens.
    """
    cfg = model.config
    merge = cfg.vision_config.spatial_merge_size
    rows, cols = (int(x) for x in inputs["grid"])
    P, Q, N = len(inputs["prefix_ids"]), len(inputs["suffix_ids"]), rows * cols
    ids = np.concatenate([inputs["prefix_ids"], np.full(N, cfg.image_token_id), inputs["suffix_ids"]])
    input_ids = torch.from_numpy(ids.astype(np.int64))[None]
    types = torch.from_numpy(np.concatenate([np.zeros(P), np.ones(N), np.zeros(Q)]).astype(np.int32))[None]
    thw = torch.tensor([[1, rows * merge, cols * merge]])
    vl = model.model
    pos, deltas = vl.get_rope_index(input_ids, mm_token_type_ids=types, image_grid_thw=thw)
    if not np.array_equal(pos[:, 0].numpy(), inputs["positions"]):
        sys.exit("mrope_positions differs from transformers' get_rope_index")
    S = ids.shape[0]
    if int(deltas[0, 0]) != int(inputs["positions"].max()) + 1 - S:
        sys.exit(f"rope_deltas {int(deltas[0, 0])} != max(positions) + 1 - S")

    # Prefill from embeddings (no vision tower), positions computed by the model itself.
    embeds = prompt_embeddings(model, inputs, torch.float32)[None]
    vl.rope_deltas = None
    cache = transformers.DynamicCache(config=model.config)
    out = model(input_ids=input_ids, inputs_embeds=embeds, mm_token_type_ids=types, image_grid_thw=thw,
                cache=cache, use_cache=True)
    prefill = out.logits[0]
    logits, steps = [out.logits[0, -1]], int(inputs["decode_steps"])
    tokens = [int(torch.argmax(logits[-1]))]
    for _ in range(steps - 1):
        out = model(input_ids=torch.tensor([[tokens[-1]]]), cache=cache, use_cache=True)
        logits.append(out.logits[0, -1])
        tokens.append(int(torch.argmax(logits[-1])))
    vl.rope_deltas = None
    if tokens != r32["greedy_tokens"].tolist():
        sys.exit(f"generate-style run gives tokens {tokens}, explicit positions {r32['greedy_tokens'].tolist()}")
    for what, a, b in (("logits", prefill, r32["logits"]), ("step logits", torch.stack(logits), r32["step_logits"])):
        err = float((a - torch.from_numpy(b)).abs().max())
        if err > 1e-5:
            sys.exit(f"generate-style run: {what} differ from the explicit-position run by {err:.2e}")


def prompt_embeddings(model, inputs, dtype):
    """[S, d] input embeddings: prefix tokens, projected features (or given embeddings), suffix.
    Features go through transformers' own projector module: LLaVA's multi_modal_projector
    (linear_1, exact GELU, linear_2), or Qwen2.5-VL's merger (ln_q on each patch feature,
    the merge unit's patches side by side, mlp)."""
    embed = model.get_input_embeddings()
    if "visual_features" in inputs:
        x = torch.from_numpy(inputs["visual_features"]).to(dtype)
        inner = model.model
        if hasattr(inner, "visual"):
            merger = inner.visual.merger
            visual = merger(x.reshape(-1, merger.ln_q.weight.shape[0]))
        else:
            visual = inner.multi_modal_projector(x)
    else:
        visual = torch.from_numpy(inputs["visual_embeddings"]).to(dtype)
    pre = embed(torch.from_numpy(inputs["prefix_ids"]))
    suf = embed(torch.from_numpy(inputs["suffix_ids"]))
    return torch.cat([pre, visual, suf], dim=0)


@torch.no_grad()
def run_transformers(model, inputs, dtype, want_hidden):
    embeds = prompt_embeddings(model, inputs, dtype)[None]
    S = embeds.shape[1]
    axes = inputs["positions"].shape[0]
    # [batch=1, S]; M-RoPE: [3 axes, batch=1, S] (the text model's (t, h, w) layout)
    positions = torch.from_numpy(inputs["positions"][0])[None] if axes == 1 else torch.from_numpy(inputs["positions"])[:, None, :]
    # An explicit all-ones mask: without it transformers 5 reads non-contiguous position
    # ids as packed sequences and builds a block-diagonal mask (masking_utils).
    mask = torch.ones(1, S, dtype=torch.long)
    cache = transformers.DynamicCache(config=model.config)
    out = model(inputs_embeds=embeds, position_ids=positions, attention_mask=mask,
                cache=cache, use_cache=True, output_hidden_states=want_hidden, output_attentions=want_hidden)
    result = {"logits": out.logits[0].to(torch.float32).numpy()}
    if want_hidden:
        # Attention probabilities of the last prefill row, per layer and head: what FastV
        # and Nüwa read ("the attention layer K-1 produced").
        result["last_row_attention"] = torch.stack([a[0, :, -1, :] for a in out.attentions]).to(torch.float32).numpy()
    if want_hidden:
        # hidden_states[0..L-1] enter layers 0..L-1; transformers applies the final norm
        # to its last entry, so the raw output of the last layer is captured by a hook.
        hs = [h[0] for h in out.hidden_states[:-1]]
        result["hidden_entering"] = hs
    steps = int(inputs["decode_steps"])
    next_pos = int(inputs["positions"].max()) + 1
    step_logits = [out.logits[0, -1]]
    tokens = []
    margins = []
    for k in range(steps):
        logits = step_logits[-1]
        top2 = torch.topk(logits.to(torch.float64), 2).values
        margins.append(float(top2[0] - top2[1]))
        tok = int(torch.argmax(logits))
        tokens.append(tok)
        if k == steps - 1:
            break
        step_pos = torch.tensor([[next_pos + k]]) if axes == 1 else torch.full((3, 1, 1), next_pos + k)
        o = model(input_ids=torch.tensor([[tok]]), position_ids=step_pos,
                  attention_mask=torch.ones(1, S + k + 1, dtype=torch.long),
                  cache=cache, use_cache=True)
        out = o
        step_logits.append(o.logits[0, -1])
    result["step_logits"] = torch.stack(step_logits).to(torch.float32).numpy()
    result["greedy_tokens"] = np.array(tokens, dtype=np.int64)
    result["min_margin"] = min(margins)
    return result


@torch.no_grad()
def last_layer_output(model, inputs, dtype):
    """Output of the last decoder layer (before the final norm), via a forward hook."""
    captured = {}

    def hook(_module, _inp, output):
        captured["h"] = (output[0] if isinstance(output, tuple) else output)[0].clone()

    handle = text_model(model).layers[-1].register_forward_hook(hook)
    try:
        saved = inputs["decode_steps"]
        inputs = dict(inputs, decode_steps=np.int64(1))
        run_transformers(model, inputs, dtype, want_hidden=False)
        inputs["decode_steps"] = saved
    finally:
        handle.remove()
    return captured["h"]


def write_case(path: Path, model_name: str, case: dict, inputs: dict, r64: dict, r32: dict, last64):
    tmp = path.with_suffix(".h5.tmp")
    with h5py.File(tmp, "w") as f:  # default libver: readable by HDF5 1.10
        f.attrs["format"] = "reroute.hf-reference"
        f.attrs["format_version"] = np.int64(1)
        f.attrs["model"] = model_name
        f.attrs["case"] = case["name"]
        f.attrs["seed"] = np.int64(SEED)
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["transformers_version"] = transformers.__version__
        f.attrs["generator"] = GENERATOR
        g = f.create_group("inputs")
        for k, v in inputs.items():
            g.create_dataset(k, data=v)
        for run, r in (("float64", r64), ("float32", r32)):
            g = f.create_group(run)
            g.create_dataset("logits", data=r["logits"].astype(np.float32))
            g.create_dataset("step_logits", data=r["step_logits"].astype(np.float32))
            g.create_dataset("greedy_tokens", data=r["greedy_tokens"])
            g.attrs["min_top2_margin"] = r["min_margin"]
            if "last_row_attention" in r:
                g.create_dataset("last_row_attention", data=r["last_row_attention"])
            if "hidden_entering" in r:
                hs = torch.stack(r["hidden_entering"] + [last64]).to(torch.float32).numpy()
                g.create_dataset("hidden_states", data=hs)
    os.replace(tmp, path)


def generate(out_root: Path):
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()
    for name, spec in MODELS.items():
        mdir = out_root / name
        if mdir.exists():
            shutil.rmtree(mdir)
        weights = save_checkpoint(mdir, name, spec)
        m64 = load_model(mdir, spec, weights, torch.float64)
        m32 = load_model(mdir, spec, weights, torch.float32)
        (mdir / "cases").mkdir()
        for case in model_cases(spec):
            inputs = make_case_inputs(name, spec, case)
            with Float64Softmax():
                r64 = run_transformers(m64, inputs, torch.float64, want_hidden=True)
                last64 = last_layer_output(m64, inputs, torch.float64)
            r32 = run_transformers(m32, inputs, torch.float32, want_hidden=False)
            if case["positions"] == "mrope":
                check_mrope_case(m32, inputs, r32)
            for run, r in (("float64", r64), ("float32", r32)):
                if r["min_margin"] < MIN_TOP2_MARGIN:
                    sys.exit(f"{name}/{case['name']} ({run}): greedy top-2 margin {r['min_margin']:.2e} "
                             f"< {MIN_TOP2_MARGIN}; pick another seed")
            if list(r64["greedy_tokens"]) != list(r32["greedy_tokens"]):
                sys.exit(f"{name}/{case['name']}: float32 and float64 greedy tokens differ")
            write_case(mdir / "cases" / f"{case['name']}.h5", name, case, inputs, r64, r32, last64)
            print(f"{name}/{case['name']}: S={inputs['positions'].shape[1]} tokens={r64['greedy_tokens'].tolist()} "
                  f"margin={r64['min_margin']:.3g}")


def compare(new_root: Path, golden_root: Path) -> int:
    """Checkpoints and configs bitwise; case files: inputs exact, outputs within 1e-5
    relative to each row's largest magnitude (float64-run outputs are rounded to f32 and
    may differ by BLAS summation order between machines)."""
    failures = 0
    for name in MODELS:
        for p in sorted((golden_root / name).rglob("*")):
            if p.is_dir():
                continue
            rel = p.relative_to(golden_root)
            q = new_root / rel
            if not q.exists():
                print(f"MISSING {rel}")
                failures += 1
                continue
            if p.suffix != ".h5":
                same = p.read_bytes() == q.read_bytes()
                print(f"{'same' if same else 'DIFFERS'}  {rel} (bitwise)")
                failures += not same
                continue
            with h5py.File(p, "r") as a, h5py.File(q, "r") as b:
                bad = []

                def visit(key, obj):
                    if not isinstance(obj, h5py.Dataset):
                        return
                    x, y = np.asarray(obj), np.asarray(b[key])
                    if x.shape != y.shape or x.dtype != y.dtype:
                        bad.append(f"{key}: shape/dtype {x.shape}{x.dtype} vs {y.shape}{y.dtype}")
                    elif x.dtype.kind in "iu" or key.startswith("inputs/"):
                        if not np.array_equal(x, y):
                            bad.append(f"{key}: not equal")
                    else:
                        scale = np.maximum(np.abs(x).max(axis=-1, keepdims=True), 1e-30)
                        err = float((np.abs(x - y) / scale).max())
                        if err > 1e-5:
                            bad.append(f"{key}: max row-relative error {err:.2e} > 1e-5")

                a.visititems(visit)
            print(f"{'same' if not bad else 'DIFFERS'}  {rel} (within tolerance)")
            for line in bad:
                print("    " + line)
            failures += bool(bad)
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="output folder (one subfolder per model)")
    ap.add_argument("--check", type=Path, help="compare what was generated with this folder; exit 1 on differences")
    args = ap.parse_args()
    if torch.__version__.split("+")[0] != "2.13.0":
        print(f"warning: torch {torch.__version__}, the shipped files were made with 2.13.0", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    generate(args.out)
    if args.check:
        n = compare(args.out, args.check)
        print(f"{n} file(s) differ" if n else "all files reproduced")
        sys.exit(1 if n else 0)


if __name__ == "__main__":
    main()
