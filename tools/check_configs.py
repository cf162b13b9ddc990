#!/usr/bin/env python3
"""Checks that `reroute inspect` reads config.json files exactly as transformers does.

For every shipped config (golden/configs, golden/models) and for synthetic ones that leave
keys out (so each default of SPEC.md §3.1 is exercised), parses the file with transformers'
own config class and with `reroute inspect FILE --json`, and compares the language model's
shape: d, L, H, H_kv, d_h, m, ε, θ, V, tied embeddings, max positions and the M-RoPE section.

    python3 tools/check_configs.py [--reroute .build/debug/reroute]

Exit 0 when every file agrees, 1 otherwise (each difference printed).
"""

from __future__ import annotations

import argparse
import glob
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from transformers import CONFIG_MAPPING, LlamaConfig

# The outer model types and what transformers reads each as; original LLaVA's `llava_llama`
# is LlamaConfig plus keys LlamaConfig ignores (transformers has no llava_llama class).
def transformers_text_config(raw: dict):
    mtype = raw["model_type"]
    if mtype == "llava_llama":
        return LlamaConfig.from_dict({k: v for k, v in raw.items() if k != "model_type"}), raw
    config = CONFIG_MAPPING[mtype].from_dict(raw)
    return config.get_text_config(), config


def expected(raw: dict) -> dict:
    text, outer = transformers_text_config(raw)
    heads = text.num_attention_heads
    rope = text.rope_parameters or {}
    tie = getattr(text, "tie_word_embeddings", None)
    if tie is None:
        tie = getattr(outer, "tie_word_embeddings", False) if not isinstance(outer, dict) else False
    out = {
        "hidden_size": text.hidden_size, "layers": text.num_hidden_layers, "heads": heads,
        "kv_heads": text.num_key_value_heads if text.num_key_value_heads is not None else heads,
        "head_dim": getattr(text, "head_dim", None) or text.hidden_size // heads,
        "intermediate_size": text.intermediate_size, "rms_norm_eps": float(text.rms_norm_eps),
        "rope_theta": float(rope["rope_theta"]), "vocab_size": text.vocab_size, "tie_word_embeddings": bool(tie),
        "max_position_embeddings": text.max_position_embeddings,
    }
    if raw["model_type"] in ("qwen2_5_vl", "qwen2_vl"):
        # The text models' rotary embedding falls back to [16, 24, 24] without a section.
        out["mrope_section"] = list(rope.get("mrope_section") or [16, 24, 24])
    return out


def synthetic() -> dict[str, dict]:
    """Configs that rely on defaults, one per reading path of SPEC.md §3.1."""
    qwen7b = json.loads(Path("golden/configs/qwen2.5-vl-7b.json").read_text())
    modelscope = dict(qwen7b, rope_scaling={"mrope_section": [16, 24, 24], "rope_type": "mrope"})
    return {
        "llama-empty": {"model_type": "llama"},
        "qwen2-empty": {"model_type": "qwen2"},
        "llava-empty": {"model_type": "llava"},
        "llava-qwen2-text": {"model_type": "llava", "text_config": {"model_type": "qwen2", "num_hidden_layers": 2}},
        "llava_llama-original": {"model_type": "llava_llama", "hidden_size": 4096, "intermediate_size": 11008,
                                 "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
                                 "rms_norm_eps": 1e-05, "vocab_size": 32000, "max_position_embeddings": 4096,
                                 "mm_hidden_size": 1024, "mm_projector_type": "mlp2x_gelu", "tie_word_embeddings": False},
        "qwen2_5_vl-flat-empty": {"model_type": "qwen2_5_vl"},
        "qwen2_vl-flat-empty": {"model_type": "qwen2_vl"},
        "qwen2_5_vl-text-config": {"model_type": "qwen2_5_vl", "tie_word_embeddings": True,
                                   "text_config": {"model_type": "qwen2_5_vl_text", "hidden_size": 512,
                                                   "num_attention_heads": 4, "num_key_value_heads": 2}},
        "qwen2.5-vl-7b-modelscope": modelscope,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reroute", default=".build/debug/reroute")
    args = ap.parse_args()
    files = {p: json.loads(Path(p).read_text()) for p in sorted(glob.glob("golden/configs/*.json") + glob.glob("golden/models/*/config.json"))}
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, raw in synthetic().items():
            path = Path(tmp) / f"{name}.json"
            path.write_text(json.dumps(raw))
            files[str(path)] = raw
        for path, raw in files.items():
            run = subprocess.run([args.reroute, "inspect", path, "--json"], capture_output=True, text=True)
            if run.returncode != 0:
                print(f"DIFFERS {path}: reroute inspect exit {run.returncode}: {run.stderr.strip()}")
                failures += 1
                continue
            got = json.loads(run.stdout)["config"]
            want = expected(raw)
            bad = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
            label = Path(path).name if path.startswith(tmp) else path
            if bad:
                failures += 1
                print(f"DIFFERS {label}: " + ", ".join(f"{k} reroute {a} transformers {b}" for k, (a, b) in bad.items()))
            else:
                print(f"same    {label}")
    print(f"{len(files)} config(s), {failures} differ(s)" if failures else f"{len(files)} config(s), all read as transformers reads them")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
