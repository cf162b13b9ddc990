#!/usr/bin/env python3
"""The outside implementations (python/examples) in bfloat16 PyTorch against the float64
reference decoder on the trained SmolLM2-135M-Instruct (tools/make_smollm2.py): for each
policy, the reference trace (`reroute run --decoder reference`), the example recorded in
bfloat16 (python/examples/record.py --dtype bfloat16), and `reroute diff --json`; prints one
Markdown row per policy: decisions, the first diverging one, whether the difference is a
near-tie the bf16 preset accepts (and the score gap at the cut against its ε), the verdict.

    python3 tools/measure_trained.py [--model .build-models/smollm2-135m-instruct] [--reroute .build/release/reroute]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from reroute_trace import read_trace

POLICIES = ["fastv-release-192", "fastv-release-128", "fastv-release-64", "pdrop-release-192", "pdrop-release-128", "pdrop-release-64",
            "reroute-fastv-192", "reroute-fastv-128", "reroute-fastv-64"]
REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(REPO / ".build-models/smollm2-135m-instruct"))
    ap.add_argument("--reroute", default=str(REPO / ".build/release/reroute"))
    ap.add_argument("--work", default=str(REPO / ".build-models/measure"))
    ap.add_argument("--policy", action="append", help="only these policies")
    a = ap.parse_args()
    model, work = Path(a.model), Path(a.work)
    case = model / "case-12x12.h5"
    work.mkdir(parents=True, exist_ok=True)
    print("| policy | decisions | kept per decision | first divergence | at the cut | verdict |")
    print("|---|---|---|---|---|---|")
    status = 0
    for p in a.policy or POLICIES:
        ref = work / f"{p}-reference.h5"
        if not ref.exists():
            t0 = time.time()
            subprocess.run([a.reroute, "run", "--model", str(model), "--case", str(case), "--policy", p, "--decoder", "reference",
                            "--out", str(ref)], check=True, capture_output=True)
            print(f"reference {p}: {time.time() - t0:.0f} s", file=sys.stderr)
        bf16 = work / f"{p}-torch-bf16.h5"
        subprocess.run([sys.executable, str(REPO / "python/examples/record.py"), "--model", str(model), "--case", str(case),
                        "--policy", p, "--dtype", "bfloat16", "--reroute", a.reroute, "--out", str(bf16)], check=True, capture_output=True)
        r = subprocess.run([a.reroute, "diff", "--json", str(ref), str(bf16)], capture_output=True, text=True)
        if r.returncode not in (0, 1):
            print(r.stderr, file=sys.stderr)
            return 2
        d = json.loads(r.stdout)
        decisions = [f for f in d["findings"] if f["object"].endswith("/{kept,deferred}")]
        first = d["first_divergence"] or "-"
        cut = "-"
        for f in decisions:
            if f["status"] != "passed" and f["route"]:
                rt = f["route"]
                cut = (f"layer {rt['layer']}: kept only by reference {rt['only_expected']}, only by bf16 {rt['only_actual']}; "
                       f"score gap {rt['score_gap']:.3g} vs ε {rt['epsilon']:.3g} ({f['status']})")
                break
        t = read_trace(str(ref))
        kept = ",".join(str(len(x["kept"])) for x in t["prefill"]["decisions"])
        verdict = "same" if r.returncode == 0 and d["counts"]["accepted"] == 0 else ("accepted near-tie" if r.returncode == 0 else "DIFFERS")
        status |= r.returncode
        print(f"| {p} | {len(t['prefill']['decisions'])} | {kept} | {first} | {cut} | {verdict} ({d['counts']['failed']} failed, "
              f"{d['counts']['accepted']} accepted, {d['counts']['skipped']} skipped of {d['counts']['compared']}) |")
        sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main())
