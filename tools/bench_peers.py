#!/usr/bin/env python3
"""Our fast decoder against the implementations users would pick instead, in one run,
interleaved: transformers + torch (sdpa and eager attention) and llama.cpp (through
llama-cpp-python, flash attention on and off), on the same weights, the same tokens and the
same thread count.

    pip install -r tools/requirements.txt -r tools/requirements-peers.txt   # torch; gguf, llama-cpp-python (built from its sdist)
    swift build -c release --product reroute
    python3 tools/bench_peers.py [--threads 2] [--layers 4] [--iterations 8]

The model is a LLaVA-shaped random LLaMA (d=2048, 16 heads, m=5632, --layers layers, vocab
32000; seed 0), written as config.json + model.safetensors for us and transformers, and as an
f32 GGUF for llama.cpp from the same tensors, with the Q/K row permutation llama.cpp's
converter applies (its RoPE pairs adjacent elements, transformers' rotate-half pairs i with
i + d_h/2). The case: 35 + 576 + 40 = 651 tokens (the 576 "visual" rows are the embeddings of
random token ids, so llama.cpp, which takes ids, sees the same inputs). Before timing, every
peer's last-position logits are checked against ours (relative to the largest |logit|:
torch f32 within 1e-4, llama.cpp, whose KV cache is f16, within 2e-2, the same argmax).

Each iteration runs A B C D E in turn: ours (`reroute time --repeats 1`, dense, the prefill
alone, weights loaded outside the timing), torch sdpa, torch eager, llama.cpp with flash
attention, llama.cpp without; each time is one prefill of all layers and the last
position's logits (embedding lookup included for the peers: 651 rows, negligible). Prints
the median time of each and the median of the per-iteration ratios ours / peer, with the
machine's CPU and vector path.
"""

from __future__ import annotations

import argparse
import json
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
PREFIX, N, SUFFIX = 35, 576, 40
D, HEADS, M, VOCAB, ROPE_THETA = 2048, 16, 5632, 32000, 10000.0


def reroute() -> str:
    exe = os.environ.get("REROUTE", str(ROOT / ".build/release/reroute"))
    if not Path(exe).exists():
        sys.exit(f"bench_peers: {exe} not found: run `swift build -c release --product reroute` first")
    return exe


def build(tmp: Path, layers: int):
    """The model (HF folder and GGUF) and the case; returns (model, ids, folder, case, gguf)."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=D, intermediate_size=M, num_hidden_layers=layers, num_attention_heads=HEADS,
                      num_key_value_heads=HEADS, rms_norm_eps=1e-5, rope_theta=ROPE_THETA, max_position_embeddings=4096,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg).eval()
    folder = tmp / "model"
    folder.mkdir()
    cfg.save_pretrained(str(folder))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))
    ids = np.random.default_rng(0).integers(0, VOCAB, PREFIX + N + SUFFIX).astype(np.int64)
    with torch.no_grad():
        visual = model.model.embed_tokens(torch.from_numpy(ids[PREFIX:PREFIX + N])).float().numpy()
    case = tmp / "case.h5"
    with h5py.File(case, "w") as f:
        g = f.create_group("inputs")
        g["prefix_ids"], g["suffix_ids"] = ids[:PREFIX], ids[PREFIX + N:]
        g["visual_embeddings"] = visual
        g["grid"] = np.array([24, 24], dtype=np.int64)
        g["positions"] = np.arange(len(ids), dtype=np.int64)[None]
        g["decode_steps"] = np.int64(0)
    gguf = tmp / "model-f32.gguf"
    write_gguf(gguf, cfg, {k: v.numpy() for k, v in state.items()})
    return model, ids, folder, case, gguf


def permute(w: np.ndarray, heads: int) -> np.ndarray:
    """Q/K rows from transformers' rotate-half order to llama.cpp's adjacent pairs, as its converter does."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(path: Path, cfg: LlamaConfig, t: dict[str, np.ndarray]) -> None:
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("reroute-bench")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("none")  # ids in, logits out: no vocabulary needed
    w.add_tensor("token_embd.weight", t["model.embed_tokens.weight"])
    for l in range(cfg.num_hidden_layers):
        p = f"model.layers.{l}."
        w.add_tensor(f"blk.{l}.attn_norm.weight", t[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{l}.attn_q.weight", permute(t[p + "self_attn.q_proj.weight"], cfg.num_attention_heads))
        w.add_tensor(f"blk.{l}.attn_k.weight", permute(t[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads))
        w.add_tensor(f"blk.{l}.attn_v.weight", t[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{l}.attn_output.weight", t[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{l}.ffn_norm.weight", t[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{l}.ffn_gate.weight", t[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{l}.ffn_up.weight", t[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{l}.ffn_down.weight", t[p + "mlp.down_proj.weight"])
    w.add_tensor("output_norm.weight", t["model.norm.weight"])
    w.add_tensor("output.weight", t["lm_head.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


@torch.no_grad()
def torch_prefill(model, ids: torch.Tensor) -> torch.Tensor:
    """All layers on the whole sequence and the last position's logits."""
    h = model.model(input_ids=ids[None], use_cache=False).last_hidden_state
    return model.lm_head(h[:, -1])[0]


def set_attention(model, impl: str) -> None:
    model.config._attn_implementation = impl
    for layer in model.model.layers:
        layer.self_attn.config._attn_implementation = impl


class LlamaCpp:
    """One llama.cpp context; `prefill` clears its cache and evaluates the ids in one batch."""

    def __init__(self, gguf: Path, threads: int, n: int, flash: bool):
        from llama_cpp import Llama

        self.llm = Llama(model_path=str(gguf), n_ctx=n + 16, n_batch=n, n_ubatch=n, n_threads=threads, n_threads_batch=threads,
                         flash_attn=flash, logits_all=False, verbose=False)

    def prefill(self, ids: list[int]) -> np.ndarray:
        self.llm.reset()
        self.llm.eval(ids)
        # Without logits_all the context holds the last position's row only (Llama.scores stays empty).
        return np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.llm.n_vocab(),)).astype(np.float32)


def ours(model_dir: Path, case: Path, threads: int) -> float:
    """Milliseconds of one dense prefill by our fast decoder (`reroute time`)."""
    out = subprocess.run([reroute(), "time", "--model", str(model_dir), "--case", str(case), "--repeats", "1", "--threads", str(threads),
                          "--policy", "dense"], check=True, capture_output=True, text=True).stdout
    return float(out.split()[1])


def our_logits(model_dir: Path, case: Path, tmp: Path) -> np.ndarray:
    out = tmp / "ours.h5"
    subprocess.run([reroute(), "run", "--model", str(model_dir), "--case", str(case), "--policy", "dense", "--decoder", "fast",
                    "--out", str(out), "--overwrite"], check=True, capture_output=True, text=True)
    with h5py.File(out, "r") as f:
        return f["prefill/logits"][...]


def check(name: str, expected: np.ndarray, actual: np.ndarray, limit: float) -> str:
    worst = float(np.abs(expected - actual).max() / np.abs(expected).max())
    same = int(expected.argmax()) == int(actual.argmax())
    line = f"  logits {name}: max |difference| {worst:.2e} of the largest |logit| (limit {limit:g}), argmax {'equal' if same else 'DIFFERS'}"
    if worst > limit or not same:
        sys.exit(f"bench_peers: {line.strip()}: not the same model; fix the conversion before timing")
    return line


def machine() -> str:
    env = subprocess.run([reroute(), "env"], capture_output=True, text=True).stdout
    keep = [l for l in env.splitlines() if l.startswith(("CPU", "vector", "BLAS core"))]
    return "; ".join(" ".join(l.split()) for l in keep)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=8)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    S = PREFIX + N + SUFFIX
    import llama_cpp

    print(f"bench_peers: {machine()}")
    print(f"torch {torch.__version__}, llama-cpp-python {llama_cpp.__version__}, {a.threads} thread(s); "
          f"LLaMA d={D} H={HEADS} m={M} L={a.layers}, S={S}, fp32 weights (llama.cpp: f32 GGUF, KV cache f16)")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        model, ids, folder, case, gguf = build(tmp, a.layers)
        tids, lids = torch.from_numpy(ids), ids.tolist()
        peers = {"llama.cpp fa": LlamaCpp(gguf, a.threads, S, True), "llama.cpp no-fa": LlamaCpp(gguf, a.threads, S, False)}
        reference = our_logits(folder, case, tmp)
        for impl in ["sdpa", "eager"]:
            set_attention(model, impl)
            print(check(f"torch {impl}", reference, torch_prefill(model, tids).numpy(), 1e-4))
        for name, p in peers.items():
            print(check(name, reference, p.prefill(lids), 2e-2))

        runs = {"ours": lambda: ours(folder, case, a.threads)}
        for impl in ["sdpa", "eager"]:
            def timed_torch(impl=impl):
                set_attention(model, impl)
                t0 = time.perf_counter()
                torch_prefill(model, tids)
                return (time.perf_counter() - t0) * 1e3
            runs[f"torch {impl}"] = timed_torch
        for name, p in peers.items():
            def timed_llama(p=p):
                t0 = time.perf_counter()
                p.prefill(lids)
                return (time.perf_counter() - t0) * 1e3
            runs[name] = timed_llama
        for f in runs.values():  # warm-up, untimed
            f()
        times: dict[str, list[float]] = {k: [] for k in runs}
        for i in range(a.iterations):
            for k, f in runs.items():
                times[k].append(f())
            print(f"iteration {i + 1}: " + ", ".join(f"{k} {v[-1]:.0f} ms" for k, v in times.items()), file=sys.stderr, flush=True)
        flops = 2.0 * a.layers * S * (4 * D * D + 3 * D * M) + 2.0 * a.layers * HEADS * (S * (S + 1) / 2) * (D // HEADS) * 2 + 2.0 * D * VOCAB
        print(f"\n{'implementation':18s} {'median ms':>10s} {'GFLOP/s':>8s} {'ours / it (median of per-iteration ratios)':>44s}")
        for k, v in times.items():
            ratios = [o / x for o, x in zip(times["ours"], v)]
            print(f"{k:18s} {statistics.median(v):10.1f} {flops / statistics.median(v) / 1e6:8.1f} {statistics.median(ratios):44.3f}")
        print(json.dumps({k: statistics.median(v) for k, v in times.items()}))


if __name__ == "__main__":
    main()
