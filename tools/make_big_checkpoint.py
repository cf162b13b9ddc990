#!/usr/bin/env python3
"""Write a random LLaVA-1.5-7B-shaped language-model checkpoint (bf16 safetensors shards) for
the real-size test of the fast decoder (SPEC.md §10.2; README "Real-size checkpoints").

Shape: LLaMA, 32 layers, hidden 4096, 32 heads, intermediate 11008, vocab 32064, untied
LM head: 6.7 B parameters, 13.5 GB. Only numpy is needed. The weights are random bf16 bit
patterns of plausible magnitude (|w| in [2^-7, 2^-6) for projections, i.e. about
1/sqrt(4096); norms 1.0), drawn from a seeded generator, so the file is the same every time.
It is written outside the repository and never committed:

    python3 tools/make_big_checkpoint.py --out /tmp/llava-7b-random        # ~2-4 minutes
    swift build -c release --product reroute
    .build/release/reroute time --model /tmp/llava-7b-random --grid 24x24 --weights mapped-bf16 \\
        --warmup 0 --repeats 1 --policy dense --policy reroute-fastv-192 --policy reroute-fastv-64
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

LAYERS, D, H, M, V = 32, 4096, 32, 11008, 32064


def bf16_bits(rng: np.random.Generator, n: int, exponent: int) -> np.ndarray:
    """n bf16 values: random sign and 7-bit mantissa, fixed binary exponent (biased)."""
    r = rng.integers(0, 256, size=n, dtype=np.uint16)
    return ((r & 0x80) << 8) | np.uint16(exponent << 7) | (r & 0x7F)


def write_shard(path: str, tensors: list[tuple[str, list[int], np.ndarray]]) -> dict[str, str]:
    header, offset = {}, 0
    for name, shape, data in tensors:
        nbytes = data.size * 2
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header["__metadata__"] = {"format": "pt", "generator": "tools/make_big_checkpoint.py"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        for _, _, data in tensors:
            f.write(data.astype("<u2", copy=False).tobytes())
    os.replace(tmp, path)
    return {name: os.path.basename(path) for name, _, _ in tensors}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output folder (created; must not be inside the repository)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--layers", type=int, default=LAYERS, help="fewer layers for a quick try")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    proj = 120  # 2^-7 ... 2^-6
    ones = lambda n: np.full(n, 0x3F80, dtype=np.uint16)  # bf16 1.0
    weight_map: dict[str, str] = {}
    nshards = a.layers // 4 + 1
    weight_map |= write_shard(os.path.join(a.out, f"model-00001-of-{nshards:05d}.safetensors"), [
        ("model.embed_tokens.weight", [V, D], bf16_bits(rng, V * D, 123)),
        ("model.norm.weight", [D], ones(D)),
        ("lm_head.weight", [V, D], bf16_bits(rng, V * D, proj)),
    ])
    for s in range(1, nshards):
        tensors = []
        for l in range(4 * (s - 1), min(a.layers, 4 * s)):
            p = f"model.layers.{l}."
            tensors += [
                (p + "input_layernorm.weight", [D], ones(D)),
                (p + "post_attention_layernorm.weight", [D], ones(D)),
                (p + "self_attn.q_proj.weight", [D, D], bf16_bits(rng, D * D, proj)),
                (p + "self_attn.k_proj.weight", [D, D], bf16_bits(rng, D * D, proj)),
                (p + "self_attn.v_proj.weight", [D, D], bf16_bits(rng, D * D, proj)),
                (p + "self_attn.o_proj.weight", [D, D], bf16_bits(rng, D * D, proj)),
                (p + "mlp.gate_proj.weight", [M, D], bf16_bits(rng, M * D, proj)),
                (p + "mlp.up_proj.weight", [M, D], bf16_bits(rng, M * D, proj)),
                (p + "mlp.down_proj.weight", [D, M], bf16_bits(rng, D * M, proj - 1)),
            ]
        weight_map |= write_shard(os.path.join(a.out, f"model-{s + 1:05d}-of-{nshards:05d}.safetensors"), tensors)
        print(f"shard {s + 1}/{nshards} written", file=sys.stderr)
    with open(os.path.join(a.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": 0}, "weight_map": weight_map}, f, indent=1)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": D,
                   "num_hidden_layers": a.layers, "num_attention_heads": H, "num_key_value_heads": H,
                   "intermediate_size": M, "vocab_size": V, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
                   "max_position_embeddings": 4096, "tie_word_embeddings": False, "hidden_act": "silu",
                   "torch_dtype": "bfloat16"}, f, indent=1)
    print(f"wrote {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
