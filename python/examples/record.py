"""Record an outside implementation (fastv_patch.py, pdrop_patch.py, reroute_patch.py) on a model and case of
the suite, and write its trace for `reroute diff GOLDEN TRACE`. The recorder glue is the
`with Recorder(...)` block and the loop over `routing_log`.

    python python/examples/record.py --model golden/models/tiny-llama --case golden/traces/tiny-llama/dense.h5 \\
        --policy reroute-fastv-64 --out /tmp/mine.h5
    reroute diff golden/traces/tiny-llama/reroute-fastv-64.h5 /tmp/mine.h5
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, LlavaForConditionalGeneration

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fastv_patch  # noqa: E402
import pdrop_patch  # noqa: E402
import reroute_patch  # noqa: E402

from reroute_trace import Recorder, case_span, greedy_decode, model_inputs, read_case, write_trace  # noqa: E402


def remap(layers, depth, L):
    """The schedule's decision layers at L layers (SPEC.md §8.3), as the research code's config would give them."""
    return [max(1, math.floor(l * L / depth + 0.5)) for l in layers]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--case", required=True, help="a case or trace file (its /inputs)")
    ap.add_argument("--policy", required=True, help="fastv-release-T, pdrop-release-T or reroute-fastv-T (T = 192, 128, 64)")
    ap.add_argument("--bug", action="append", default=[], choices=["previous_layer_scores", "span_off_by_one", "reindexed_positions"])
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--reroute", default="reroute", help="the reroute binary (for the policy file)")
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    policy_text = subprocess.run([a.reroute, "policy", "show", a.policy, "--json"], capture_output=True, text=True, check=True).stdout
    policy = json.loads(policy_text)
    arch = AutoConfig.from_pretrained(a.model).architectures[0]
    cls = LlavaForConditionalGeneration if arch.startswith("Llava") else AutoModelForCausalLM
    model = cls.from_pretrained(a.model, dtype=getattr(torch, a.dtype), attn_implementation="eager").eval()
    text = getattr(model.model, "language_model", model.model)
    case = read_case(a.case)
    P, N, _ = case_span(case)
    layers = remap(policy["schedule"]["decision_layers"], policy["schedule"]["reference_depth"], len(text.layers))
    ratio = policy["schedule"]["keep_ratios"][0]
    if a.policy.startswith("fastv-release"):
        fastv_patch.patch(text, K=layers[0], ratio=ratio, visual_start=P, visual_len=N, bugs=a.bug)
    elif a.policy.startswith("pdrop-release"):
        pdrop_patch.patch(text, layers=layers, ratios=policy["schedule"]["keep_ratios"], visual_start=P, visual_len=N)
    elif a.policy.startswith("reroute-fastv"):
        reroute_patch.patch(text, layers=layers, ratio=ratio, visual_start=P, visual_len=N)
    else:
        ap.error(f"no example implements {a.policy}")
    with torch.no_grad(), Recorder(model, case, policy_text, model_name=Path(a.model).name, case_name="trace-case") as rec:
        first = model(**model_inputs(model, case), use_cache=True)
        greedy_decode(model, case, first)
    for d in text.routing_log:
        rec.decision(**d)
    write_trace(a.out, rec.trace(), overwrite=True)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
