#!/usr/bin/env python3
"""Read and write Reroute traces (schema "reroute.trace", version 1; SPEC.md §9) with h5py.

For PyTorch users who dump traces from their own models and compare them with
`reroute diff` / `reroute conform --trace`. Only h5py and numpy are needed.

    from reroute_trace import read_trace, write_trace
    t = read_trace("golden/traces/tiny-llama/reroute-fastv-192.h5")
    t["prefill"]["hidden_states"].shape        # (L+1, S, d) float32
    write_trace("mine.h5", t)                  # atomic; refuses to overwrite unless overwrite=True

A trace is a dict:
    attrs:    schema, schema_version, producer, producer_version, producer_commit, decoder,
              mode, model, case, seed, model_config (JSON str), policy (JSON str)
    inputs:   prefix_ids, suffix_ids, grid, positions [A,S], decode_steps, and
              visual_features or visual_embeddings; optional vision_side/{cls_attention,
              similarity_features}
    llm:      optional visual_grid_indices
    prefill:  hidden_states [L+1,S,d] f32, processed [L,S] u8, positions [L,S] i64 (-1 where not
              processed; [L,3,S] with 3-D M-RoPE inputs positions), decode_positions [L], kv_length [L], logits [V] f32,
              decisions: list of {layer, budget, candidates, kept, deferred, scores (f64)}
    decode:   tokens [T], step_logits [T,V] f32, kv_length [L]
    budget:   text_tokens, visual_tokens, kv_entries, kv_bytes, flops, flops_fastv_paper,
              flops_pdrop_paper [L]; attrs avg_visual_tokens, image_tokens,
              llm_visual_tokens, bytes_per_element, matching (JSON str)

Command line:
    python3 tools/reroute_trace.py check FILE...      validate files against the schema
    python3 tools/reroute_trace.py copy IN OUT        read IN and write it again as OUT
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

import h5py
import numpy as np

SCHEMA = "reroute.trace"
SCHEMA_VERSION = 1

# How each dataset is compared (the `compare` attribute).
COMPARE = {
    "prefill/hidden_states": "float", "prefill/processed": "set", "prefill/positions": "exact",
    "prefill/decode_positions": "exact", "prefill/kv_length": "exact", "prefill/logits": "float",
    "decode/tokens": "exact", "decode/step_logits": "float", "decode/kv_length": "exact",
    "llm/visual_grid_indices": "exact",
}
DECISION_COMPARE = {"candidates": "set", "kept": "set", "deferred": "set", "scores": "float"}
ROOT_ATTRS = ["schema", "schema_version", "producer", "producer_version", "producer_commit", "decoder",
              "mode", "model", "case", "seed", "model_config", "policy"]
# Optional root attributes (SPEC.md §9.1): /@dtype, the producer's arithmetic.
OPTIONAL_ROOT_ATTRS = ["dtype"]


class TraceError(ValueError):
    """A file that is not a valid trace; the message names the file and the object."""


def _str(x):
    return x.decode() if isinstance(x, bytes) else str(x)


def read_trace(path: str) -> dict:
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise TraceError(f"{path}: cannot open: {e}") from None
    with f:
        attrs = {k: f.attrs[k] for k in ROOT_ATTRS + OPTIONAL_ROOT_ATTRS if k in f.attrs}
        missing = [k for k in ROOT_ATTRS if k not in attrs]
        if missing:
            raise TraceError(f"{path}: /@{missing[0]}: missing")
        if _str(attrs["schema"]) != SCHEMA:
            raise TraceError(f"{path}: /@schema: '{_str(attrs['schema'])}', expected '{SCHEMA}'")
        if int(attrs["schema_version"]) != SCHEMA_VERSION:
            raise TraceError(f"{path}: /@schema_version: {int(attrs['schema_version'])}, this module reads {SCHEMA_VERSION}")
        t = {"attrs": {k: (_str(v) if isinstance(v, (str, bytes)) else int(v)) for k, v in attrs.items()}}

        def group(name):
            if name not in f:
                raise TraceError(f"{path}: /{name}: missing")
            out = {}

            def visit(key, obj):
                if isinstance(obj, h5py.Dataset):
                    out[key] = obj[()]
            f[name].visititems(visit)
            return out

        t["inputs"] = group("inputs")
        t["llm"] = group("llm") if "llm" in f else {}
        prefill = group("prefill")
        decisions = []
        for g in sorted(f["prefill/decisions"].keys()):
            d = f[f"prefill/decisions/{g}"]
            decisions.append({"layer": int(d.attrs["layer"]), "budget": int(d.attrs["budget"]),
                              **{k: d[k][()] for k in DECISION_COMPARE}})
        t["prefill"] = {k: v for k, v in prefill.items() if not k.startswith("decisions")}
        t["prefill"]["decisions"] = decisions
        t["decode"] = group("decode")
        t["budget"] = group("budget")
        t["budget_attrs"] = {k: (_str(v) if isinstance(v, (str, bytes)) else v.item() if hasattr(v, "item") else v)
                             for k, v in f["budget"].attrs.items()}
    _validate(path, t)
    return t


def _validate(path: str, t: dict) -> None:
    cfg = json.loads(t["attrs"]["model_config"])
    L, d, V = cfg["layers"], cfg["hiddenSize"], cfg["vocabSize"]
    hs = t["prefill"]["hidden_states"]
    if hs.ndim != 3 or hs.shape[0] != L + 1 or hs.shape[2] != d:
        raise TraceError(f"{path}: /prefill/hidden_states: shape {hs.shape}, expected ({L + 1}, S, {d})")
    S = hs.shape[1]
    axes = t["inputs"]["positions"].shape[0] if t["inputs"]["positions"].ndim == 2 else 1
    positions_shape = (L, S) if axes == 1 else (L, axes, S)
    for key, shape in [("processed", (L, S)), ("positions", positions_shape), ("decode_positions", (L,)), ("kv_length", (L,)),
                       ("logits", (V,))]:
        if t["prefill"][key].shape != shape:
            raise TraceError(f"{path}: /prefill/{key}: shape {t['prefill'][key].shape}, expected {shape}")
    for key in ["hidden_states", "logits"]:
        if np.isnan(t["prefill"][key]).any():
            raise TraceError(f"{path}: /prefill/{key}: contains NaN")


def write_trace(path: str, t: dict, overwrite: bool = False) -> None:
    """Writes atomically: a temporary file next to `path`, renamed into place at the end.
    Strings are variable-length UTF-8; h5py's default libver keeps HDF5 1.10 able to read it."""
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True")
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=os.path.dirname(os.path.abspath(path)))
    os.close(fd)
    try:
        with h5py.File(tmp, "w", track_order=False) as f:
            for k in ROOT_ATTRS + [k for k in OPTIONAL_ROOT_ATTRS if k in t["attrs"]]:
                v = t["attrs"][k]
                f.attrs[k] = np.int64(v) if isinstance(v, (int, np.integer)) else str(v)

            def put(name, value, compare):
                ds = f.create_dataset(name, data=value)
                ds.attrs["compare"] = compare

            for k, v in t["inputs"].items():
                put(f"inputs/{k}", v, "bitwise")
            f.require_group("llm")
            for k, v in t["llm"].items():
                put(f"llm/{k}", v, "exact")
            for k, v in t["prefill"].items():
                if k != "decisions":
                    put(f"prefill/{k}", v, COMPARE[f"prefill/{k}"])
            f.require_group("prefill/decisions")
            for i, d in enumerate(t["prefill"]["decisions"]):
                g = f.create_group(f"prefill/decisions/{i:02d}")
                g.attrs["layer"] = np.int64(d["layer"])
                g.attrs["budget"] = np.int64(d["budget"])
                for k, kind in DECISION_COMPARE.items():
                    ds = g.create_dataset(k, data=np.asarray(d[k], dtype=np.float64 if k == "scores" else np.int64))
                    ds.attrs["compare"] = kind
            for k, v in t["decode"].items():
                put(f"decode/{k}", v, COMPARE[f"decode/{k}"])
            for k, v in t["budget"].items():
                put(f"budget/{k}", v, "exact")
            for k, v in t["budget_attrs"].items():
                f["budget"].attrs[k] = str(v) if isinstance(v, str) else v
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main(argv):
    if len(argv) >= 2 and argv[0] == "check":
        bad = 0
        for p in argv[1:]:
            try:
                t = read_trace(p)
                print(f"ok    {p}: {json.loads(t['attrs']['policy'])['name']}, {len(t['prefill']['decisions'])} decision(s)")
            except TraceError as e:
                print(f"ERROR {e}")
                bad += 1
        print(f"{len(argv) - 1 - bad} passed, {bad} failed")
        return 1 if bad else 0
    if len(argv) == 3 and argv[0] == "copy":
        write_trace(argv[2], read_trace(argv[1]))
        print(f"wrote {argv[2]}")
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
