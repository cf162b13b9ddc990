"""The recorder on unmodified transformers models, and the outside implementations in
examples/ checked end to end against the goldens (torch extra)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import GOLDEN, REPO, run

torch = pytest.importorskip("torch")
from transformers import LlavaForConditionalGeneration, Qwen2_5_VLForConditionalGeneration  # noqa: E402

from reroute_trace import Recorder, RecorderError, greedy_decode, model_inputs, read_case, write_trace  # noqa: E402

CLASSES = {"tiny-llama": LlavaForConditionalGeneration, "tiny-qwen2": LlavaForConditionalGeneration,
           "tiny-qwen2-vl": Qwen2_5_VLForConditionalGeneration}


def load(name):
    return CLASSES[name].from_pretrained(str(GOLDEN / "models" / name), dtype=torch.float32, attn_implementation="eager").eval()


def policy(reroute, name):
    return run(reroute, "policy", "show", name, "--json").stdout


@pytest.mark.parametrize("name", sorted(CLASSES))
def test_a_recorded_dense_run_is_the_unrecorded_run_and_matches_the_golden(name, tmp_path, reroute):
    model, case = load(name), read_case(str(GOLDEN / "traces" / name / "dense.h5"))
    with torch.no_grad():
        plain = model(**model_inputs(model, case), use_cache=True).logits
        with Recorder(model, case, policy(reroute, "dense"), model_name=name, case_name="c") as rec:
            recorded = model(**model_inputs(model, case), use_cache=True)
            greedy_decode(model, case, recorded)
    assert torch.equal(plain, recorded.logits)  # recording changes nothing, bit for bit
    assert all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in rec.layers)
    out = tmp_path / "t.h5"
    write_trace(str(out), rec.trace())
    r = run(reroute, "diff", str(GOLDEN / "traces" / name / "dense.h5"), str(out))
    assert r.returncode == 0, r.stdout[-3000:]
    assert "has no /budget; computed" in r.stderr


def test_an_unsupported_model_is_refused_by_name_before_anything_runs(reroute):
    case = read_case(str(GOLDEN / "traces/tiny-llama/dense.h5"))
    layer = torch.nn.Linear(2, 2)
    with pytest.raises(RecorderError, match="Linear is not supported; the recorder attaches to LlamaForCausalLM"):
        Recorder(layer, case, policy(reroute, "dense"), model_name="x")
    assert not layer._forward_hooks and not layer._forward_pre_hooks


def test_rows_that_disagree_with_the_decisions_are_named(reroute):
    model, case = load("tiny-llama"), read_case(str(GOLDEN / "traces/tiny-llama/dense.h5"))
    with torch.no_grad(), Recorder(model, case, policy(reroute, "fastv-release-64"), model_name="tiny-llama") as rec:
        greedy_decode(model, case, model(**model_inputs(model, case), use_cache=True))
    rec.decision(layer=1, candidates=range(100), kept=[5, 6], scores=np.zeros(100))  # the dense run processed all rows
    with pytest.raises(RecorderError, match=r"layer 1 received 108 rows; the decisions reported give 10 \(8 text \+ 2 visual\)"):
        rec.trace()


def test_a_decision_at_the_llm_input_is_refused(reroute):
    model, case = load("tiny-llama"), read_case(str(GOLDEN / "traces/tiny-llama/dense.h5"))
    with Recorder(model, case, policy(reroute, "divprune-64"), model_name="tiny-llama") as rec:
        with pytest.raises(RecorderError, match=r"decision at layer 0 \(the LLM input\): not supported by the recorder"):
            rec.decision(layer=0, candidates=range(100), kept=[5, 6], scores=np.zeros(100))


def record_example(reroute, tmp_path, model, policy_name, bug=None):
    out = tmp_path / f"{model}-{policy_name}-{bug}.h5"
    args = [sys.executable, str(REPO / "python/examples/record.py"), "--model", str(GOLDEN / "models" / model),
            "--case", str(GOLDEN / "traces" / model / "dense.h5"), "--policy", policy_name, "--reroute", reroute, "--out", str(out)]
    if bug:
        args += ["--bug", bug]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return run(reroute, "diff", str(GOLDEN / "traces" / model / f"{policy_name}.h5"), str(out))


@pytest.mark.parametrize("model", ["tiny-llama", "tiny-qwen2"])
@pytest.mark.parametrize("policy_name", ["fastv-release-64", "pdrop-release-64", "pdrop-release-192", "reroute-fastv-64"])
def test_outside_implementations_make_the_reference_decisions(model, policy_name, tmp_path, reroute):
    r = record_example(reroute, tmp_path, model, policy_name)
    assert r.returncode == 0, r.stdout[-3000:]
    assert "0 differ" in r.stdout


# Each deliberate mistake is caught, and the verdict names where the runs part: the decision
# (its kept set at the decision layer, tiny-llama's layer 1) or the layer whose positions differ.
@pytest.mark.parametrize("bug, first", [
    ("previous_layer_scores", "first divergence: /prefill/decisions/00/{kept,deferred}"),
    ("span_off_by_one", "first divergence: /prefill/hidden_states[1]"),
    ("reindexed_positions", "first divergence: /prefill/positions[1]"),
])
def test_wrong_variants_are_caught_at_their_decision_and_layer(bug, first, tmp_path, reroute):
    r = record_example(reroute, tmp_path, "tiny-llama", "fastv-release-64", bug)
    assert r.returncode == 1, r.stdout[-3000:]
    assert first in r.stdout, r.stdout[-3000:]
    if bug != "reindexed_positions":
        assert "DIFF /prefill/decisions/00/{kept,deferred} (set)" in r.stdout
