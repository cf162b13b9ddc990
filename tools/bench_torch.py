#!/usr/bin/env python3
"""Our fast decoder against Hugging Face transformers + PyTorch (CPU) on the same weights
and case: dense prefill, and Reroute's compact routing.

    pip install -r tools/requirements.txt          # torch 2.13.0 CPU wheel
    swift build -c release --product reroute
    python3 tools/bench_torch.py [--threads 2] [--layers 8] [--rounds 3]

It writes a LLaVA-shaped random LLaMA (d=2048, 16 heads, m=5632, --layers layers, vocab
32000; seed 0) as config.json + model.safetensors and a case (35 text tokens, 576 visual
embeddings, 1 text token) as HDF5 into a temporary folder, then alternates, --rounds times:
`reroute time` (our median of 3 prefills per policy) and PyTorch (median of 3) with eager
and sdpa attention, the same thread count for both (OpenBLAS and torch). Reroute in
PyTorch follows the release's `compact_route`: at each decision layer, that layer's input
norm + q/k projections + RoPE score all tokens (last row, head mean), the top k visual
tokens are kept, and the layer runs on text + kept only, its output scattered back.
Prefill time = all layers + the last position's logits (embedding excluded), as ours.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = Path(__file__).resolve().parent.parent
PREFIX, N, SUFFIX = 35, 576, 1


def remap(layers, depth, reference=32):
    """SPEC.md §8.3: l' = max(1, floor(l·L/32 + 1/2))."""
    return [max(1, int(math.floor(l * depth / reference + 0.5))) for l in layers]


def build(tmp: Path, layers: int):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=layers,
                      num_attention_heads=16, num_key_value_heads=16, rms_norm_eps=1e-5, rope_theta=10000.0,
                      max_position_embeddings=4096, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    model_dir = tmp / "model"
    model_dir.mkdir()
    cfg.save_pretrained(str(model_dir))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(model_dir / "model.safetensors"))
    rng = np.random.default_rng(0)
    visual = rng.standard_normal((N, 2048)).astype(np.float32)
    prefix = rng.integers(0, 32000, PREFIX).astype(np.int64)
    suffix = rng.integers(0, 32000, SUFFIX).astype(np.int64)
    S = PREFIX + N + SUFFIX
    with h5py.File(tmp / "case.h5", "w") as f:
        g = f.create_group("inputs")
        g["prefix_ids"], g["suffix_ids"] = prefix, suffix
        g["visual_embeddings"] = visual
        g["grid"] = np.array([24, 24], dtype=np.int64)
        g["positions"] = np.arange(S, dtype=np.int64)[None]
        g["decode_steps"] = np.int64(0)
    embeds = torch.cat([model.model.embed_tokens(torch.from_numpy(prefix)), torch.from_numpy(visual),
                        model.model.embed_tokens(torch.from_numpy(suffix))])[None].detach()
    return model, model_dir, embeds


def causal_mask(n, dtype):
    m = torch.full((n, n), float("-inf"), dtype=dtype).triu(1)
    return m[None, None]


@torch.no_grad()
def prefill(model, embeds, schedule=None):
    """Dense (schedule None) or compact routing with {decision layer: k}."""
    S = embeds.shape[1]
    pos = torch.arange(S)[None]
    h = embeds
    cos, sin = model.model.rotary_emb(h, pos)
    text = torch.cat([torch.arange(PREFIX), torch.arange(PREFIX + N, S)])
    active = None
    for l, layer in enumerate(model.model.layers):
        if schedule and l in schedule:
            attn = layer.self_attn
            z = layer.input_layernorm(h)
            hd = attn.head_dim
            q = attn.q_proj(z[:, -1:]).view(1, 1, -1, hd).transpose(1, 2)
            k = attn.k_proj(z).view(1, S, -1, hd).transpose(1, 2)
            c, s = cos[:, None], sin[:, None]

            def rot(x):
                return torch.cat((-x[..., hd // 2:], x[..., : hd // 2]), dim=-1)
            q = q * c[:, :, -1:] + rot(q) * s[:, :, -1:]
            k = k * c + rot(k) * s
            p = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(hd), dim=-1, dtype=torch.float32)
            score = p.mean(1)[0, -1, PREFIX:PREFIX + N]
            kept = torch.topk(score, schedule[l]).indices.sort().values + PREFIX
            active = torch.cat([text[:PREFIX], kept, text[PREFIX:]])
        if active is None:
            h = layer(h, attention_mask=causal_mask(S, h.dtype), position_ids=pos, position_embeddings=(cos, sin))
        else:
            n = active.numel()
            out = layer(h[:, active], attention_mask=causal_mask(n, h.dtype), position_ids=pos[:, active],
                        position_embeddings=(cos[:, active], sin[:, active]))
            h = h.clone()
            h[:, active] = out
        h = h[0] if isinstance(h, tuple) else h
    return model.lm_head(model.model.norm(h[:, -1]))


def torch_median(model, embeds, schedule, reps):
    prefill(model, embeds, schedule)  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        prefill(model, embeds, schedule)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def ours(model_dir, case, policies, threads, reps):
    exe = ROOT / ".build/release/reroute"
    if not exe.exists():
        sys.exit(f"{exe} not found: run `swift build -c release --product reroute` first")
    cmd = [str(exe), "time", "--model", str(model_dir), "--case", str(case), "--repeats", str(reps), "--threads", str(threads)]  # decoder workers
    for p in policies:
        cmd += ["--policy", p]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return {line.split()[0]: float(line.split()[1]) for line in out.strip().splitlines()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tier", type=int, default=192, choices=[192, 128, 64])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ratio = {192: 0.2644, 128: 0.1418, 64: 0.01916}[args.tier]
    k = max(1, int(N * ratio))
    schedule = {l: k for l in remap([3, 7, 15, 23], args.layers)}
    policy = f"reroute-fastv-{args.tier}"
    print(f"torch {torch.__version__}, {args.threads} thread(s); model d=2048 H=16 m=5632 L={args.layers}; "
          f"S={PREFIX + N + SUFFIX}; {policy} decisions {sorted(schedule)} keep {k}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model, model_dir, embeds = build(tmp, args.layers)
        results = {"ours dense": [], "ours reroute": [], "eager dense": [], "eager reroute": [], "sdpa dense": [], "sdpa reroute": []}
        for r in range(args.rounds):
            o = ours(model_dir, tmp / "case.h5", ["dense", policy], args.threads, 3)
            results["ours dense"].append(o["dense"])
            results["ours reroute"].append(o[policy])
            for impl in ["eager", "sdpa"]:
                model.config._attn_implementation = impl
                for layer in model.model.layers:
                    layer.self_attn.config._attn_implementation = impl
                results[f"{impl} dense"].append(torch_median(model, embeds, None, 3))
                results[f"{impl} reroute"].append(torch_median(model, embeds, schedule, 3))
            print(f"round {r + 1}: " + ", ".join(f"{key} {v[-1]:.0f} ms" for key, v in results.items()), flush=True)
        med = {key: statistics.median(v) for key, v in results.items()}
        print("\nmedian prefill (ms) and our time / torch time:")
        for what in ["dense", "reroute"]:
            for impl in ["eager", "sdpa"]:
                print(f"  {what:8s} ours {med['ours ' + what]:7.0f}   torch-{impl} {med[impl + ' ' + what]:7.0f}   "
                      f"ratio {med['ours ' + what] / med[impl + ' ' + what]:.3f}")
        print(json.dumps(med))


if __name__ == "__main__":
    main()
