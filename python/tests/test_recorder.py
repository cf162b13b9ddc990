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

from reroute_trace import Recorder, RecorderError, case_span, greedy_decode, model_inputs, read_case, read_trace, write_trace  # noqa: E402
from reroute_trace.recorder import layout_positions  # noqa: E402

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


@pytest.mark.parametrize("name,policy_name", [("tiny-llama", "divprune-64"), ("tiny-qwen2-vl", "cdpruner-192")])
def test_a_reducer_at_the_llm_input_is_recorded_and_matches_the_golden(name, policy_name, tmp_path, reroute):
    """An engine's reducer hands the model only the kept rows with the positions it computed
    (CDPruner's recomputed M-RoPE ones on the Qwen2.5-VL model, whose layers never see them):
    the recorder fills the other rows' layer-0 state from the case and the trace diffs clean."""
    path = GOLDEN / "traces" / name / f"{policy_name}.h5"
    golden, case, model = read_trace(str(path)), read_case(str(path)), load(name)
    d = golden["prefill"]["decisions"][0]
    assert int(d["layer"]) == 0
    P, N, S = case_span(case)
    rows = list(range(P)) + [P + int(j) for j in d["kept"]] + list(range(P + N, S))
    engine_positions = np.asarray(golden["prefill"]["positions"])[0][..., rows]  # the engine's own layout
    position_ids = torch.from_numpy(engine_positions.reshape(-1, 1, len(rows)) if engine_positions.ndim == 2 else engine_positions[None])
    embeds = model_inputs(model, case)["inputs_embeds"][:, rows]
    with torch.no_grad(), Recorder(model, case, policy(reroute, policy_name), model_name=name) as rec:
        first = model(inputs_embeds=embeds, position_ids=position_ids, use_cache=True)
        greedy_decode(model, dict(case, positions=engine_positions.reshape(-1, len(rows))), first)
        rec.decision(layer=0, candidates=d["candidates"], kept=d["kept"], scores=d["scores"], budget=int(d["budget"]))
    out = tmp_path / "t.h5"
    write_trace(str(out), rec.trace())
    r = run(reroute, "diff", str(path), str(out))
    assert r.returncode == 0, r.stdout[-3000:]


def test_recomputed_positions_the_layers_never_see_are_recorded_as_the_model_was_called(reroute):
    """Qwen2.5-VL's layers see no 3-D positions: with the last grid column pruned, CDPruner's
    rule moves the text after the image, and the trace holds the moved positions the model
    was called with (not the case's), with the decode position after them."""
    name, path = "tiny-qwen2-vl", GOLDEN / "traces/tiny-qwen2-vl/dense.h5"
    case, model = read_case(str(path)), load(name)
    P, N, S = case_span(case)
    rows_, cols = (int(x) for x in np.asarray(case["grid"]))
    kept = [j for j in range(N) if j % cols < cols - 1 and j // cols < rows_ - 1]  # neither the last row nor column
    active = list(range(P)) + [P + j for j in kept] + list(range(P + N, S))
    moved, decode = layout_positions("text_after_kept_max", active, case["positions"], range(P, P + N), cols)
    assert decode < int(case["positions"].max()) + 1  # the rule really moved the text
    embeds = model_inputs(model, case)["inputs_embeds"][:, active]
    with torch.no_grad(), Recorder(model, case, policy(reroute, "cdpruner-192"), model_name=name) as rec:
        first = model(inputs_embeds=embeds, position_ids=torch.from_numpy(moved[:, None]), use_cache=True)
        greedy_decode(model, dict(case, positions=moved), first)
        rec.decision(layer=0, candidates=range(N), kept=kept, scores=np.zeros(N), budget=len(kept))
    t = rec.trace()
    assert t["prefill"]["positions"][0][:, active].tolist() == moved.tolist()
    assert t["prefill"]["decode_positions"].tolist() == [decode] * len(t["prefill"]["decode_positions"])


def test_positions_are_laid_out_by_the_rules_of_the_suite():
    """SPEC.md §8.6 by hand: a 2×3 image after 2 text tokens (ids (2, 2 + r, 2 + c)), then 2."""
    pos = np.array([[0, 1, 2, 2, 2, 2, 2, 2, 5, 6], [0, 1, 2, 2, 2, 3, 3, 3, 5, 6], [0, 1, 2, 3, 4, 2, 3, 4, 5, 6]])
    active, span = [0, 1, 2, 6, 8, 9], range(2, 8)  # cells 0 and 4 kept
    kept_max, decode = layout_positions("text_after_kept_max", active, pos, span, cols=3)
    assert kept_max.tolist() == [[0, 1, 2, 2, 4, 5], [0, 1, 2, 3, 4, 5], [0, 1, 2, 3, 4, 5]] and decode == 6
    grid_width, _ = layout_positions("text_after_grid_width", active, pos, span, cols=3)
    assert grid_width[:, 4:].tolist() == [[5, 6]] * 3  # base 2 + cols 3
    original, decode = layout_positions("original", active, pos, span, cols=3)
    assert original.tolist() == pos[:, active].tolist() and decode == 7
    assert layout_positions("reindexed", active, pos[:1], span, cols=3)[0].tolist() == [[0, 1, 2, 3, 4, 5]]
    # No token before the image: the base is where the grid's ids start, not 0.
    cut, _ = layout_positions("text_after_grid_width", [0, 6], pos[:, 2:], range(0, 6), cols=3)
    assert cut.tolist() == [[2, 5]] * 3
    with pytest.raises(RecorderError, match="'shuffled' is not a position rule"):
        layout_positions("shuffled", active, pos, span, cols=3)


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
