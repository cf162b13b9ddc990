#!/usr/bin/env python3
"""Reroute traces from Hugging Face transformers: an independent torch implementation of the
routing policies, written as "reroute.trace" v1 files (SPEC.md §9.1) for `reroute diff`.

The compute is transformers' own: the text model's `layers[i]` (LlamaDecoderLayer /
Qwen2DecoderLayer with eager attention), its rotary embedding, RMSNorms, LM head and
DynamicCache. This module only decides which rows each layer sees (SPEC.md §5, §8):

    dense                    every token at every layer
    fastv, fastv-k2-r75      official FastV (K=2; R=0.5 / 0.75): scores are the attention
                             probabilities layer K-1 produced while it ran (captured from its
                             eager attention), last row, head mean; keep round(N(1-R)) visual
                             tokens, delete the rest for every layer >= K
    fastv-release-T          the Reroute release's FastV baseline (T = 192, 128, 64):
                             decision layer 3's own input_layernorm + q_proj/k_proj + RoPE on
                             the hidden states entering it, causal softmax over the current
                             sequence, head mean, last row; keep max(1, floor(N r)); delete
    reroute-fastv-T          Reroute on FastV: decisions [3, 7, 15, 23] with the same scorer
                             and count; the softmax covers every visual token, deferred ones
                             keyed from their stale hidden states; every decision re-ranks all
                             N visual tokens; deferred tokens bypass the stage's layers
                             (state unchanged, no KV entries there)

Decision layers are given for 32 layers and remapped to the model's depth L by
l' = max(1, floor(l L / 32 + 1/2)) (SPEC.md §8.3). Top-k orders by score descending, then
index ascending; kept/deferred are stored ascending. Positions are the case's own (gaps
after deletion); decode is greedy, no routing, feeding step k's token at
max(prefill positions) + k through each layer's own KV cache.

Usage:

    python3 tools/torch_trace.py --model golden/models/tiny-llama \\
        --inputs golden/traces/tiny-llama/dense.h5 --policy reroute-fastv-192 --out /tmp/x.h5
    python3 tools/torch_trace.py --model golden/models/tiny-qwen2 \\
        --inputs golden/traces/tiny-qwen2/dense.h5 --all --out-dir /tmp/out/tiny-qwen2
    .build/debug/reroute diff golden/traces/tiny-llama/reroute-fastv-192.h5 /tmp/x.h5
    .build/debug/reroute conform --trace /tmp/x.h5

CI runs tools/torch_interop.sh: every policy on both tiny models, diffed against the goldens.

`--inputs` is any trace or case file with an `/inputs` group (SPEC.md §6); the group is
copied to the output unchanged. `--dtype float64` (default) runs the model in float64 with
transformers' float32 islands (RoPE angles, RMSNorm, attention softmax) lifted to float64
by tools/make_tiny_models.py's `patch_float64` / `Float64Softmax`; `--dtype float32` is
stock transformers in float32, `--dtype bfloat16` / `float16` the model cast to that type (as
research code runs it); the trace records `/@dtype`, so `reroute diff` picks the matching
tolerance preset. Outputs are written atomically (the reroute-trace package,
`write_trace`); an existing file is replaced only with `--force`. With `--all` every trace is
computed before the first one is written.

Exit codes: 0 written, 2 bad input (the message names the file and the object).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from transformers import AutoModelForCausalLM, LlavaForConditionalGeneration  # noqa: E402
from transformers.models.llama.modeling_llama import repeat_kv  # noqa: E402

from make_tiny_models import Float64Softmax, patch_float64  # noqa: E402
from reroute_trace import TraceError, read_trace, write_trace  # noqa: E402

PRODUCER = "tools/torch_trace.py"
PRODUCER_VERSION = "1.0.0"
REFERENCE_DEPTH = 32
BYTES_PER_ELEMENT = 2  # KV bytes in the budget group are for 16-bit caches (SPEC.md §8.13)


class InputError(Exception):
    """Bad input: names the file and the object."""

    def __init__(self, file, obj, message):
        super().__init__(f"{file}: {obj}: {message}" if obj else f"{file}: {message}")


# ----------------------------------------------------------------------------------------
# Policies (SPEC.md §8)

@dataclass(frozen=True)
class Policy:
    name: str
    decision_layers: tuple  # at REFERENCE_DEPTH layers
    keep_ratios: tuple  # of the original N
    count_rule: str  # "round" | "floorAtLeastOne" | "floor"
    attention: str  # "producedByPreviousLayer" | "decisionLayerInput"
    domain: str  # "activeTokens" | "allTokens"
    action: str  # "delete" | "route"
    monotonic: bool = False  # only for route
    matching: tuple = ("none", None)  # ("none" | "perLayer" | "averageTokens", base)

    def count(self, n, ratio):
        """k = rule(N r), clipped to [0, N] (SPEC.md §8.2)."""
        x = n * ratio
        if self.count_rule == "floor":
            k = math.floor(x)
        elif self.count_rule == "floorAtLeastOne":
            k = max(1, math.floor(x))
        elif self.count_rule == "round":
            k = round(x)  # Python 3: halves to even, as FastV's round(N * (1 - R))
        else:
            raise ValueError(self.count_rule)
        return min(n, max(0, k))

    def schedule(self, layers, n):
        """[(decision layer at depth `layers`, k)]; SPEC.md §8.3 remap."""
        mapped = [max(1, math.floor(l * layers / REFERENCE_DEPTH + 0.5)) for l in self.decision_layers]
        if any(b <= a for a, b in zip(mapped, mapped[1:])) or any(l >= layers for l in mapped):
            raise ValueError(f"{self.name}: decision layers {list(self.decision_layers)} remap to {mapped} on {layers} layers")
        return [(l, self.count(n, r)) for l, r in zip(mapped, self.keep_ratios)]

    def as_json_value(self):
        """The policy in the structure the suite's traces store (`RoutingPolicy`'s Codable form)."""
        action = {"delete": {}} if self.action == "delete" else {"route": {"monotonic": self.monotonic}}
        kind, base = self.matching
        return {
            "action": action,
            "budgetMatching": {kind: {} if base is None else {"base": base}},
            "countRule": self.count_rule,
            "decisionLayers": list(self.decision_layers),
            "keepRatios": list(self.keep_ratios),
            "name": self.name,
            "positions": "original",
            "referenceDepth": REFERENCE_DEPTH,
            "scorer": {"attention": {self.attention: {}}, "domain": self.domain, "heads": "mean",
                       "query": {"lastToken": {}}},
        }


def fastv(k=2, r=0.5):
    name = "fastv" if (k, r) == (2, 0.5) else f"fastv-k{k}-r{round(r * 100)}"
    return Policy(name, (k,), (1 - r,), "round", "producedByPreviousLayer", "activeTokens", "delete")


RELEASE_RATIO = {192: 0.2644, 128: 0.1418, 64: 0.01916}  # fastv_K3 / ours_vs_fastv keep_ratio


def fastv_release(tier):
    return Policy(f"fastv-release-{tier}", (3,), (RELEASE_RATIO[tier],), "floorAtLeastOne",
                  "decisionLayerInput", "allTokens", "delete")


def reroute_fastv(tier):
    r = RELEASE_RATIO[tier]
    return Policy(f"reroute-fastv-{tier}", (3, 7, 15, 23), (r, r, r, r), "floorAtLeastOne",
                  "decisionLayerInput", "allTokens", "route", monotonic=False,
                  matching=("perLayer", f"fastv-release-{tier}"))


DENSE = Policy("dense", (), (), "floor", "decisionLayerInput", "allTokens", "delete")
POLICIES = {p.name: p for p in [DENSE, fastv(), fastv(2, 0.75)]
            + [f(t) for t in (192, 128, 64) for f in (fastv_release, reroute_fastv)]}


def swift_json(v):
    """Compact JSON with sorted keys, numbers and strings as Foundation's JSONEncoder writes
    them (integral doubles without `.0`, `/` escaped), so the attribute strings match the
    suite's own traces byte for byte (the diff compares decoded values either way)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"non-finite number {v} in JSON")
        return str(int(v)) if v.is_integer() and abs(v) < 2 ** 53 else repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("/", "\\/")
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(swift_json(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ",".join(f"{swift_json(k)}:{swift_json(v[k])}" for k in sorted(v)) + "}"
    raise TypeError(type(v))


def top_k(candidates, scores, k, layer):
    """Score descending, then index ascending; returns (kept, deferred), both ascending."""
    for j, s in zip(candidates, scores):
        if math.isnan(s):
            raise ValueError(f"NaN score for visual token {j} at layer {layer}")
    order = sorted(range(len(candidates)), key=lambda i: (-scores[i], candidates[i]))
    take = {candidates[i] for i in order[:max(0, min(k, len(candidates)))]}
    return sorted(c for c in candidates if c in take), sorted(c for c in candidates if c not in take)


# ----------------------------------------------------------------------------------------
# Inputs

def read_inputs(path):
    """The /inputs group, datasets as stored (dtype and shape kept), and the root attributes."""
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise InputError(path, None, f"cannot open as HDF5: {e}") from None
    with f:
        if "inputs" not in f or not isinstance(f["inputs"], h5py.Group):
            raise InputError(path, "/inputs", "missing (expected a trace or case file)")
        raw = {}

        def visit(key, obj):
            if isinstance(obj, h5py.Dataset):
                raw[key] = obj[()]
        f["inputs"].visititems(visit)
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return raw, attrs


def validate_inputs(path, raw, vocab, hidden, vision_dim):
    def need(key, kind, rank):
        if key not in raw:
            raise InputError(path, f"/inputs/{key}", "missing")
        v = np.asarray(raw[key])
        if v.dtype.kind not in kind:
            raise InputError(path, f"/inputs/{key}", f"dtype {v.dtype}, expected {'an integer' if kind == 'iu' else 'a float'} type")
        if v.ndim != rank:
            raise InputError(path, f"/inputs/{key}", f"shape {v.shape}, expected rank {rank}")
        return v

    prefix, suffix = need("prefix_ids", "iu", 1), need("suffix_ids", "iu", 1)
    grid, positions = need("grid", "iu", 1), need("positions", "iu", 2)
    steps = int(need("decode_steps", "iu", 0))
    if "visual_features" in raw:
        vkey = "visual_features"
    elif "visual_embeddings" in raw:
        vkey = "visual_embeddings"
    else:
        raise InputError(path, "/inputs", "neither visual_features nor visual_embeddings")
    visual = need(vkey, "f", 2)
    N = visual.shape[0]
    if grid.shape != (2,) or grid[0] * grid[1] != N:
        raise InputError(path, "/inputs/grid", f"{grid.tolist()} does not hold the {N} visual rows")
    for key, ids in (("prefix_ids", prefix), ("suffix_ids", suffix)):
        if ids.size and (ids.min() < 0 or ids.max() >= vocab):
            raise InputError(path, f"/inputs/{key}", f"token ids outside the vocabulary [0, {vocab})")
    if suffix.size == 0:
        raise InputError(path, "/inputs/suffix_ids", "empty (the last suffix token is the scoring query)")
    S = prefix.size + N + suffix.size
    if positions.shape[0] != 1:
        raise InputError(path, "/inputs/positions", f"{positions.shape[0]} axes; only 1-D RoPE positions are supported")
    if positions.shape[1] != S:
        raise InputError(path, "/inputs/positions", f"{positions.shape[1]} positions for {S} tokens")
    if positions.min() < 0:
        raise InputError(path, "/inputs/positions", "negative position id")
    if steps < 0:
        raise InputError(path, "/inputs/decode_steps", f"{steps} < 0")
    width = vision_dim if vkey == "visual_features" else hidden
    if width is None:
        raise InputError(path, f"/inputs/{vkey}", "visual features need a model with a projector (LLaVA, or mm_projector.safetensors)")
    if visual.shape[1] != width:
        raise InputError(path, f"/inputs/{vkey}", f"width {visual.shape[1]}, the model expects {width}")
    if not np.isfinite(visual).all():
        raise InputError(path, f"/inputs/{vkey}", "contains NaN or Inf")
    return dict(prefix=prefix.astype(np.int64), suffix=suffix.astype(np.int64), visual_key=vkey, visual=visual,
                positions=positions[0].astype(np.int64), decode_steps=steps, N=N)


# ----------------------------------------------------------------------------------------
# Model

class Model:
    def __init__(self, folder, dtype):
        folder = Path(folder)
        cfg_path = folder / "config.json"
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, ValueError) as e:
            raise InputError(str(cfg_path), None, f"cannot read config: {e}") from None
        outer_type = cfg.get("model_type")
        if outer_type not in ("llama", "qwen2", "llava"):
            raise InputError(str(cfg_path), "model_type", f"'{outer_type}' is not supported (llama, qwen2, llava; "
                             "Qwen2.5-VL needs M-RoPE positions, which this tool does not implement)")
        text_cfg = (cfg.get("text_config") or {}) if outer_type == "llava" else cfg
        mtype = text_cfg.get("model_type", "llama") if outer_type == "llava" else outer_type
        if mtype not in ("llama", "qwen2"):
            raise InputError(str(cfg_path), "text_config.model_type", f"'{mtype}' is not supported (llama, qwen2)")
        rope = text_cfg.get("rope_parameters") or {}
        if rope.get("rope_type", "default") != "default" or text_cfg.get("rope_scaling") not in (None, {}):
            raise InputError(str(cfg_path), "rope_parameters", "only default RoPE is supported")
        if text_cfg.get("use_sliding_window"):
            raise InputError(str(cfg_path), "use_sliding_window", "sliding-window attention is not supported")
        self.folder, self.dtype = folder, dtype
        cls = LlavaForConditionalGeneration if outer_type == "llava" else AutoModelForCausalLM
        try:
            model = cls.from_pretrained(str(folder), dtype=torch.float32, attn_implementation="eager")
        except Exception as e:  # noqa: BLE001 — transformers raises many kinds
            raise InputError(str(folder), None, f"transformers cannot load the checkpoint: {e}") from None
        model = model.to(dtype).eval()
        if dtype == torch.float64:
            patch_float64(model)
        self.model = model
        # The decoder stack and LM head: model.model (CausalLM) or model.model.language_model (LLaVA).
        self.text = getattr(model.model, "language_model", model.model)
        self.head = model.lm_head
        c = model.config.get_text_config()
        self.family = mtype
        self.L, self.d = c.num_hidden_layers, c.hidden_size
        self.H, self.Hkv = c.num_attention_heads, c.num_key_value_heads
        self.hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        self.ff, self.V = c.intermediate_size, c.vocab_size
        tie = model.config.tie_word_embeddings if getattr(c, "tie_word_embeddings", None) is None else c.tie_word_embeddings
        self.config_json = swift_json({
            "attentionBias": True if mtype == "qwen2" else bool(getattr(c, "attention_bias", False)),
            "family": mtype, "headDim": self.hd, "heads": self.H, "hiddenSize": self.d,
            "intermediateSize": self.ff, "kvHeads": self.Hkv, "layers": self.L,
            "maxPositionEmbeddings": int(c.max_position_embeddings), "rmsNormEps": float(c.rms_norm_eps),
            "ropeTheta": float(c.rope_parameters["rope_theta"]), "tieWordEmbeddings": bool(tie),
            "vocabSize": self.V})
        # LLaVA: transformers' own multi_modal_projector; a CausalLM: mm_projector.safetensors.
        self.projector_module = getattr(model.model, "multi_modal_projector", None)
        self.projector = None if self.projector_module else self._load_projector(folder / "mm_projector.safetensors")

    def _load_projector(self, path):
        if not path.exists():
            return None
        try:
            with safe_open(str(path), "pt") as f:
                keys = set(f.keys())
                l1, l2 = "multi_modal_projector.linear_1", "multi_modal_projector.linear_2"
                if f"{l1}.weight" not in keys:
                    raise InputError(str(path), "multi_modal_projector.linear_1.weight", "no projector tensors")
                t = {k: f.get_tensor(f"{p}.{w}").to(torch.float32).to(self.dtype)
                     for k, p, w in [("w1", l1, "weight"), ("b1", l1, "bias"), ("w2", l2, "weight"), ("b2", l2, "bias")]}
        except InputError:
            raise
        except Exception as e:  # noqa: BLE001
            raise InputError(str(path), None, f"cannot read: {e}") from None
        if t["w1"].shape[0] != self.d or t["w2"].shape != (self.d, self.d):
            raise InputError(str(path), "linear_1.weight", f"shape {tuple(t['w1'].shape)} does not fit hidden size {self.d}")
        return t

    @property
    def vision_dim(self):
        if self.projector_module is not None:
            return self.projector_module.linear_1.in_features
        return None if self.projector is None else self.projector["w1"].shape[1]

    def embed(self, case):
        emb = self.text.embed_tokens
        x = torch.from_numpy(np.ascontiguousarray(case["visual"])).to(torch.float32).to(self.dtype)
        if case["visual_key"] == "visual_features" and self.projector_module is not None:
            visual = self.projector_module(x)
        elif case["visual_key"] == "visual_features":
            p = self.projector
            act = transformers.activations.ACT2FN["gelu"]  # exact erf GELU, as LLaVA's projector
            visual = torch.nn.functional.linear(act(torch.nn.functional.linear(x, p["w1"], p["b1"])), p["w2"], p["b2"])
        else:
            visual = x
        return torch.cat([emb(torch.from_numpy(case["prefix"])), visual, emb(torch.from_numpy(case["suffix"]))])


# ----------------------------------------------------------------------------------------
# The routed run

class Run:
    """One prefill + greedy decode of one policy; layers are transformers' decoder layers."""

    def __init__(self, m: Model, case, policy: Policy):
        self.m, self.case, self.policy = m, case, policy
        self.P, self.N = case["prefix"].size, case["N"]
        self.S = self.P + self.N + case["suffix"].size
        self.text = list(range(self.P)) + list(range(self.P + self.N, self.S))
        self.positions = torch.from_numpy(case["positions"])
        self.schedule = dict(policy.schedule(m.L, self.N))
        self.softmax_dtype = torch.float64 if m.dtype == torch.float64 else torch.float32

    def sequence(self, visual):
        return list(range(self.P)) + [self.P + j for j in sorted(visual)] + list(range(self.P + self.N, self.S))

    def rope(self, x, pos):
        return self.m.text.rotary_emb(x, pos[None])

    def layer_input_probabilities(self, layer, h, keys):
        """Softmax row of the last key for every head, from `layer`'s own input norm, q/k
        projections and RoPE applied to the hidden states `h[keys]` (SPEC.md §8.1)."""
        attn = layer.self_attn
        rope_fn = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        idx = torch.tensor(keys)
        x = layer.input_layernorm(h[idx][None])  # [1, n, d]
        n = len(keys)
        q = attn.q_proj(x[:, -1:]).view(1, 1, -1, attn.head_dim).transpose(1, 2)  # [1, H, 1, hd]
        k = attn.k_proj(x).view(1, n, -1, attn.head_dim).transpose(1, 2)  # [1, Hkv, n, hd]
        cos, sin = self.rope(x, self.positions[idx])
        q, _ = rope_fn(q, q, cos[:, -1:], sin[:, -1:])
        _, k = rope_fn(k, k, cos, sin)
        k = repeat_kv(k, attn.num_key_value_groups)
        logits = torch.matmul(q, k.transpose(2, 3)) * attn.scaling  # last row: every key precedes it
        return torch.softmax(logits, dim=-1, dtype=self.softmax_dtype)[0, :, 0, :]  # [H, n]

    @torch.no_grad()
    def execute(self):
        m, layers = self.m, self.m.text.layers
        h = m.embed(self.case)  # [S, d] full residual stream
        hidden = [h.clone()]
        cache = transformers.DynamicCache(config=m.model.config)
        captured = {}
        hooks = [layer.self_attn.register_forward_hook(
            lambda _mod, _inp, out, l=l: captured.__setitem__(l, out[1])) for l, layer in enumerate(layers)]
        visual_active = list(range(self.N))  # LLM visual indices processed by the current stage
        alive = [True] * self.N  # False once deleted
        previous_active = None
        processed, decisions = [], []
        try:
            for l, layer in enumerate(layers):
                if l in self.schedule:
                    decision = self.decide(l, layer, h, visual_active, alive, previous_active, captured)
                    decisions.append(decision)
                    if self.policy.action == "delete":
                        for j in decision["deferred"]:
                            alive[j] = False
                    visual_active = decision["kept"]
                active = self.sequence(visual_active)
                idx = torch.tensor(active)
                n = len(active)
                x = h[idx][None]
                pos = self.positions[idx]
                mask = torch.full((n, n), torch.finfo(h.dtype).min, dtype=h.dtype).triu(1)[None, None]
                out = layer(x, attention_mask=mask, position_ids=pos[None], cache=cache, use_cache=True,
                            position_embeddings=self.rope(x, pos))
                out = out[0] if isinstance(out, tuple) else out
                h = h.clone()
                h[idx] = out[0]  # rows not in `active` keep their state bit for bit
                hidden.append(h.clone())
                processed.append(active)
                previous_active = active
            norm, head = m.text.norm, m.head
            logits = head(norm(h[-1:]))[0]
            kv_prefill = [cache.get_seq_length(l) for l in range(m.L)]
            decode_position = int(self.case["positions"].max()) + 1  # original positions (SPEC.md §8.6)
            tokens, step_logits = [], []
            current = logits
            for t in range(self.case["decode_steps"]):
                if t > 0:
                    x = m.text.embed_tokens(torch.tensor([[tokens[-1]]]))
                    pos = torch.tensor([decode_position + t - 1])
                    pe = self.rope(x, pos)
                    for layer in layers:  # a single query row attends to its layer's whole cache
                        x = layer(x, attention_mask=None, position_ids=pos[None], cache=cache, use_cache=True,
                                  position_embeddings=pe)
                        x = x[0] if isinstance(x, tuple) else x
                    current = head(norm(x[:, -1]))[0]
                step_logits.append(current)
                tokens.append(int(torch.argmax(current)))  # first maximum on ties
            kv_decode = [cache.get_seq_length(l) for l in range(m.L)]
        finally:
            for hk in hooks:
                hk.remove()
        return dict(hidden=torch.stack(hidden), processed=processed, decisions=decisions, logits=logits,
                    kv_prefill=kv_prefill, kv_decode=kv_decode, decode_position=decode_position, tokens=tokens,
                    step_logits=step_logits)

    def decide(self, l, layer, h, visual_active, alive, previous_active, captured):
        pol = self.policy
        if pol.action == "route" and not pol.monotonic:
            candidates = [j for j in range(self.N) if alive[j]]
        else:
            candidates = list(visual_active)
        if pol.attention == "producedByPreviousLayer":
            # What layer l-1 produced while it ran: its eager attention over the tokens it processed.
            keys = previous_active
            probs = captured[l - 1][0, :, -1, :].to(torch.float64)  # [H, n_{l-1}], last row
        elif pol.domain == "allTokens":
            keys = self.sequence([j for j in range(self.N) if alive[j]])  # deferred: stale states
            probs = self.layer_input_probabilities(layer, h, keys).to(torch.float64)
        else:
            keys = previous_active
            probs = self.layer_input_probabilities(layer, h, keys).to(torch.float64)
        column = {t: i for i, t in enumerate(keys)}
        mean = probs.mean(dim=0)
        scores = [float(mean[column[self.P + j]]) for j in candidates]
        k = self.schedule[l]
        kept, deferred = top_k(candidates, scores, k, l)
        return dict(layer=l, budget=k, candidates=candidates, kept=kept, deferred=deferred, scores=scores)


# ----------------------------------------------------------------------------------------
# Budget (SPEC.md §8.13) and the trace

def budget(m: Model, policy: Policy, text, n):
    schedule = policy.schedule(m.L, n)
    visual = []
    for l in range(m.L):
        stages = [k for (dl, k) in schedule if dl <= l]
        visual.append(stages[-1] if stages else n)
    d, mi, q, kv = m.d, m.ff, m.H * m.hd, m.Hkv * m.hd
    out = {k: [] for k in ["text_tokens", "visual_tokens", "kv_entries", "kv_bytes", "flops", "flops_fastv_paper",
                           "flops_pdrop_paper"]}
    for v in visual:
        nl = text + v
        out["text_tokens"].append(text)
        out["visual_tokens"].append(v)
        out["kv_entries"].append(nl)
        out["kv_bytes"].append(nl * 2 * kv * BYTES_PER_ELEMENT)
        out["flops"].append(float(2 * (nl * d * (2 * q + 2 * kv) + q * nl * (nl + 1) + 3 * nl * d * mi)))
        out["flops_fastv_paper"].append(float(4 * nl * d * d + 2 * nl * nl * d + 2 * nl * d * mi))
        out["flops_pdrop_paper"].append(float(4 * v * d * d + 2 * v * v * d + 3 * v * d * mi))
    arrays = {k: np.asarray(v, dtype=np.float64 if k.startswith("flops") else np.int64) for k, v in out.items()}
    kind, base = policy.matching
    attrs = {"avg_visual_tokens": float(sum(visual)) / m.L, "image_tokens": n, "llm_visual_tokens": n,
             "bytes_per_element": BYTES_PER_ELEMENT, "matching": swift_json({kind: {} if base is None else {"base": base}})}
    return arrays, attrs


def producer_commit():
    try:
        r = subprocess.run(["git", "-C", str(TOOLS), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        commit = r.stdout.strip() if r.returncode == 0 else ""
        if commit:
            dirty = subprocess.run(["git", "-C", str(TOOLS), "status", "--porcelain", "--", Path(__file__).name],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return commit + ("+modified" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


def make_trace(m: Model, raw_inputs, in_attrs, inputs_path, case, policy, result, commit):
    L, S = m.L, case["prefix"].size + case["N"] + case["suffix"].size
    processed = np.zeros((L, S), dtype=np.uint8)
    positions = np.full((L, S), -1, dtype=np.int64)
    for l, active in enumerate(result["processed"]):
        processed[l, active] = 1
        positions[l, active] = case["positions"][active]
    text = S - case["N"]
    b, battrs = budget(m, policy, text, case["N"])
    # The executed run must have the budget's counts.
    for l, active in enumerate(result["processed"]):
        assert len(active) == b["kv_entries"][l] == result["kv_prefill"][l], (policy.name, l)
    T = case["decode_steps"]
    step = (torch.stack(result["step_logits"]).to(torch.float32).numpy() if T
            else np.zeros((0, m.V), dtype=np.float32))
    model_name = in_attrs.get("model", m.folder.name)
    return {
        "attrs": {
            "schema": "reroute.trace", "schema_version": 1, "producer": PRODUCER, "producer_version": PRODUCER_VERSION,
            "producer_commit": commit, "decoder": "torch", "dtype": str(m.dtype).replace("torch.", ""), "mode": "free",
            "model": str(model_name),
            "case": str(in_attrs.get("case", Path(inputs_path).stem)), "seed": int(in_attrs.get("seed", 0)),
            "model_config": m.config_json, "policy": swift_json(policy.as_json_value()),
        },
        "inputs": raw_inputs,
        "llm": {},
        "prefill": {
            "hidden_states": result["hidden"].to(torch.float32).numpy(),
            "processed": processed,
            "positions": positions,
            "decode_positions": np.full(L, result["decode_position"], dtype=np.int64),
            "kv_length": np.asarray(result["kv_prefill"], dtype=np.int64),
            "logits": result["logits"].to(torch.float32).numpy(),
            "decisions": [dict(layer=d["layer"], budget=d["budget"],
                               candidates=np.asarray(d["candidates"], dtype=np.int64),  # grid cells (no vision stage)
                               kept=np.asarray(d["kept"], dtype=np.int64),
                               deferred=np.asarray(d["deferred"], dtype=np.int64),
                               scores=np.asarray(d["scores"], dtype=np.float64)) for d in result["decisions"]],
        },
        "decode": {
            "tokens": np.asarray(result["tokens"], dtype=np.int64),
            "step_logits": step,
            "kv_length": np.asarray(result["kv_decode"], dtype=np.int64),
        },
        "budget": b,
        "budget_attrs": battrs,
    }


def run_policy(m: Model, case, policy):
    if m.dtype == torch.float64:
        with Float64Softmax():
            return Run(m, case, policy).execute()
    return Run(m, case, policy).execute()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="torch_trace.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="model folder as saved by transformers (LlamaForCausalLM / Qwen2ForCausalLM, optionally with mm_projector.safetensors, or LlavaForConditionalGeneration)")
    ap.add_argument("--inputs", required=True, help="trace or case file with an /inputs group")
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--policy", choices=list(POLICIES), help="one policy")
    which.add_argument("--all", action="store_true", help="every supported policy (needs --out-dir)")
    ap.add_argument("--out", help="output trace (with --policy)")
    ap.add_argument("--out-dir", help="output folder, one <policy>.h5 per policy (with --all)")
    ap.add_argument("--dtype", choices=["float64", "float32", "bfloat16", "float16"], default="float64",
                    help="float64: transformers in float64 with its float32 islands lifted (default); float32: stock; "
                         "bfloat16, float16: the model cast to that type")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--force", action="store_true", help="replace existing output files")
    args = ap.parse_args(argv)
    if args.policy and not args.out:
        ap.error("--policy needs --out")
    if args.all and not args.out_dir:
        ap.error("--all needs --out-dir")
    torch.set_num_threads(max(1, args.threads))
    transformers.utils.logging.disable_progress_bar()
    policies = [POLICIES[args.policy]] if args.policy else list(POLICIES.values())
    if args.all:
        os.makedirs(args.out_dir, exist_ok=True)
        outs = [os.path.join(args.out_dir, f"{p.name}.h5") for p in policies]
    else:
        outs = [args.out]
    try:
        for o in outs:
            if os.path.exists(o) and not args.force:
                raise InputError(o, None, "exists; pass --force to replace it")
            if not os.path.isdir(os.path.dirname(os.path.abspath(o))):
                raise InputError(o, None, "the folder does not exist")
        dtype = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
        m = Model(args.model, dtype)
        raw, in_attrs = read_inputs(args.inputs)
        if "model" in in_attrs and str(in_attrs["model"]) != m.folder.resolve().name:
            print(f"warning: {args.inputs} is a case of model '{in_attrs['model']}', running {m.folder}; "
                  f"the trace keeps /@model = '{in_attrs['model']}'", file=sys.stderr)
        case = validate_inputs(args.inputs, raw, m.V, m.d, m.vision_dim)
        commit = producer_commit()
        traces = []
        for p in policies:
            try:
                result = run_policy(m, case, p)
            except ValueError as e:  # NaN score, bad schedule for this depth
                raise InputError(args.inputs, f"policy {p.name}", str(e)) from None
            traces.append(make_trace(m, raw, in_attrs, args.inputs, case, p, result, commit))
        for o, t in zip(outs, traces):  # everything computed; each file written atomically
            write_trace(o, t, overwrite=args.force)
            read_trace(o)  # the schema reader accepts it
            d = t["prefill"]["decisions"]
            print(f"wrote {o}: {json.loads(t['attrs']['policy'])['name']}, {len(d)} decision(s), "
                  f"tokens {t['decode']['tokens'].tolist()}")
    except (InputError, TraceError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
