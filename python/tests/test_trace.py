"""The Python reader and writer against the shipped goldens and the Swift reader."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import GOLDEN, run
from reroute_trace import TraceError, read_trace, write_trace

TRACES = sorted(str(p.relative_to(GOLDEN)) for p in (GOLDEN / "traces").glob("*/*.h5"))
COMPACT = sorted(str(p.relative_to(GOLDEN)) for p in (GOLDEN / "trained").glob("*/*.h5"))


def test_every_golden_reads_with_consistent_shapes():
    assert len(TRACES) >= 40
    for rel in TRACES:
        t = read_trace(str(GOLDEN / rel))
        cfg = json.loads(t["attrs"]["model_config"])
        hs = t["prefill"]["hidden_states"]
        assert hs.shape[0] == cfg["layers"] + 1 and hs.shape[2] == cfg["hiddenSize"], rel
        assert hs.shape[1] == t["prefill"]["processed"].shape[1] and "hidden_state_rows" not in t["prefill"], rel
        for d in t["prefill"]["decisions"]:
            # The trace laws the Swift side also checks: kept and deferred split the candidates.
            assert set(d["kept"]) | set(d["deferred"]) <= set(d["candidates"]), rel
            assert not set(d["kept"]) & set(d["deferred"]), rel


def test_compact_goldens_store_the_first_and_last_rows_at_every_layer():
    assert len(COMPACT) >= 3
    for rel in COMPACT:
        t = read_trace(str(GOLDEN / rel))
        seq = t["prefill"]["processed"].shape[1]
        assert t["prefill"]["hidden_state_rows"].tolist() == [0, seq - 1], rel
        assert t["prefill"]["hidden_states"].shape == (json.loads(t["attrs"]["model_config"])["layers"] + 1, 2, 576), rel


@pytest.mark.parametrize("rel", ["traces/tiny-llama/reroute-fastv-64.h5", "traces/tiny-qwen2/reroute-nuwa-64.h5",
                                 "traces/tiny-qwen2-vl/reroute-fastv-64.h5", "trained/smollm2-135m-instruct/pdrop-release-192.h5",
                                 "traces/tiny-qwen2-vl/evs-50.h5"])
def test_copy_is_identical_for_both_readers(rel, tmp_path, reroute):
    out = tmp_path / "copy.h5"
    write_trace(str(out), read_trace(str(GOLDEN / rel)))
    a, b = read_trace(str(GOLDEN / rel)), read_trace(str(out))
    for group in ["prefill", "decode", "budget", "inputs", "llm"]:
        for k, v in a[group].items():
            if k != "decisions":
                assert np.array_equal(np.asarray(v), np.asarray(b[group][k])), f"{group}/{k}"
    assert a["attrs"] == b["attrs"] and a["budget_attrs"] == b["budget_attrs"]
    r = run(reroute, "diff", str(GOLDEN / rel), str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["copy.h5"]  # no temporary file left


def test_writer_never_replaces_without_overwrite_and_never_writes_an_invalid_trace(tmp_path):
    t = read_trace(str(GOLDEN / "traces/tiny-llama/dense.h5"))
    out = tmp_path / "t.h5"
    out.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        write_trace(str(out), t)
    assert out.read_bytes() == b"keep me"
    t["prefill"]["kv_length"] = t["prefill"]["kv_length"] + 10_000
    with pytest.raises(TraceError, match=r"/prefill/kv_length: bad value: .* \(not written\)"):
        write_trace(str(out), t, overwrite=True)
    assert out.read_bytes() == b"keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.h5"]


def test_writer_removes_temporary_files_of_killed_writers(tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = tmp_path / f".reroute-{dead.pid}-7.tmp", tmp_path / f".reroute-{os.getpid()}-8.tmp"
    stale.write_bytes(b"x")
    live.write_bytes(b"x")
    write_trace(str(tmp_path / "t.h5"), read_trace(str(GOLDEN / "traces/tiny-llama/dense.h5")))
    assert not stale.exists() and live.exists()


# ---------------------------------------------------------------------------------------
# Malformed traces: both readers refuse each with the same message.

def _json_attr(f, name, edit):
    v = json.loads(f.attrs[name])
    edit(v)
    f.attrs[name] = json.dumps(v, separators=(",", ":"), sort_keys=True)


def _replace(f, name, data):
    attrs = dict(f[name].attrs)
    del f[name]
    ds = f.create_dataset(name, data=data)
    for k, v in attrs.items():
        ds.attrs[k] = v


def _set(f, name, edit):
    v = f[name][()]
    v = np.array(v)
    edit(v)
    _replace(f, name, v)


MUTATIONS = {
    "schema": lambda f: f.attrs.__setitem__("schema", "reroute.other"),
    "schema_version": lambda f: f.attrs.__setitem__("schema_version", np.int64(2)),
    "missing_producer": lambda f: f.attrs.__delitem__("producer"),
    "seed_as_string": lambda f: f.attrs.__setitem__("seed", "seven"),
    "mode": lambda f: f.attrs.__setitem__("mode", "replayed"),
    "policy_as_string_array": lambda f: f.attrs.__setitem__("policy", np.array([f.attrs["policy"]] * 2, dtype=h5py.string_dtype())),
    "config_hidden_zero": lambda f: _json_attr(f, "model_config", lambda c: c.__setitem__("hiddenSize", 0)),
    "config_head_dim_odd": lambda f: _json_attr(f, "model_config", lambda c: c.__setitem__("headDim", 15)),
    "config_kv_heads": lambda f: _json_attr(f, "model_config", lambda c: c.__setitem__("kvHeads", c["heads"] + 1)),
    "config_eps": lambda f: _json_attr(f, "model_config", lambda c: c.__setitem__("rmsNormEps", -1.0)),
    "config_huge": lambda f: _json_attr(f, "model_config", lambda c: c.update(layers=1024, hiddenSize=65536, intermediateSize=262144)),
    "policy_not_increasing": lambda f: _json_attr(f, "policy", lambda p: p.__setitem__("decisionLayers", [3, 3, 15, 23])),
    "policy_depth": lambda f: _json_attr(f, "policy", lambda p: p.__setitem__("referenceDepth", 0)),
    "policy_ratio": lambda f: _json_attr(f, "policy", lambda p: p.__setitem__("keepRatios", [0.5, 1.5, 0.5, 0.5])),
    "policy_layer_zero_previous_attention": lambda f: _json_attr(
        f, "policy", lambda p: (p.__setitem__("decisionLayers", [0, 7, 15, 23]),
                                p["scorer"].__setitem__("attention", {"producedByPreviousLayer": {}}))),
    "grid_zero": lambda f: _set(f, "inputs/grid", lambda v: v.__setitem__(0, 0)),
    "grid_mismatch": lambda f: _set(f, "inputs/grid", lambda v: v.__setitem__(0, v[0] + 1)),
    "prefix_token": lambda f: _set(f, "inputs/prefix_ids", lambda v: v.__setitem__(0, 99999)),
    "input_position_negative": lambda f: _set(f, "inputs/positions", lambda v: v.__setitem__((0, 0), -4)),
    "visual_nan": lambda f: _set(f, "inputs/" + next(k for k in f["inputs"] if k.startswith("visual_")), lambda v: v.__setitem__((0, 0), np.nan)),
    "hidden_rank": lambda f: _replace(f, "prefill/hidden_states", f["prefill/hidden_states"][0]),
    "hidden_rows": lambda f: _replace(f, "prefill/hidden_states", f["prefill/hidden_states"][:, :-1]),
    "hidden_nan": lambda f: _set(f, "prefill/hidden_states", lambda v: v.__setitem__((2, 3, 4), np.nan)),
    "hidden_as_ints": lambda f: _replace(f, "prefill/hidden_states", f["prefill/hidden_states"][()].astype(np.int64)),
    "processed_shape": lambda f: _replace(f, "prefill/processed", f["prefill/processed"][:-1]),
    "position_of_processed": lambda f: _set(f, "prefill/positions", lambda v: v.__setitem__((1, 0), -1)),
    "kept_outside_span": lambda f: _set(f, "prefill/decisions/00/kept", lambda v: v.__setitem__(0, 100000)),
    "candidates_repeated": lambda f: _set(f, "prefill/decisions/00/candidates", lambda v: v.__setitem__(1, v[0])),
    "scores_length": lambda f: _replace(f, "prefill/decisions/00/scores", f["prefill/decisions/00/scores"][:-1]),
    "decision_layer": lambda f: f["prefill/decisions/00"].attrs.__setitem__("layer", np.int64(1000)),
    "decision_budget": lambda f: f["prefill/decisions/00"].attrs.__setitem__("budget", np.int64(-1)),
    "no_decisions_group": lambda f: f.__delitem__("prefill/decisions"),
    "token_outside_vocabulary": lambda f: _set(f, "decode/tokens", lambda v: v.__setitem__(0, 1 << 40)),
    "step_logits_shape": lambda f: _replace(f, "decode/step_logits", f["decode/step_logits"][:-1]),
    "bytes_per_element": lambda f: f["budget"].attrs.__setitem__("bytes_per_element", np.int64(0)),
    "kv_entries": lambda f: _set(f, "budget/kv_entries", lambda v: v.__setitem__(0, 1 << 62)),
    "kv_length": lambda f: _set(f, "prefill/kv_length", lambda v: v.__setitem__(0, 1 << 20)),
    "decode_position": lambda f: _set(f, "prefill/decode_positions", lambda v: v.__setitem__(0, -1)),
    "logits_missing": lambda f: f.__delitem__("prefill/logits"),
    "logits_null_dataspace": lambda f: _replace(f, "prefill/logits", h5py.Empty("f4")),
    "decode_kv_length": lambda f: _set(f, "decode/kv_length", lambda v: v.__setitem__(0, -5)),
}


#: Mutations of a video trace's grid (`[frames, rows, cols]`).
VIDEO_MUTATIONS = {
    "video_one_frame": lambda f: _set(f, "inputs/grid", lambda v: v.__setitem__(0, 1)),
    "video_frames_mismatch": lambda f: _set(f, "inputs/grid", lambda v: v.__setitem__(0, v[0] + 1)),
    "video_frames_too_many": lambda f: _set(f, "inputs/grid", lambda v: v.__setitem__(0, 5000)),
    "video_grid_four_numbers": lambda f: _replace(f, "inputs/grid", np.array([2, 2, 3, 4], dtype=np.int64)),
}


@pytest.mark.parametrize("name", sorted(VIDEO_MUTATIONS))
def test_malformed_video_grids_are_refused_by_both_readers_with_one_message(name, copy_of, reroute):
    _refused_alike(copy_of("traces/tiny-qwen2-vl/evs-50.h5"), VIDEO_MUTATIONS[name], reroute)


#: Mutations of a compact trace (hidden states of some rows only).
COMPACT_MUTATIONS = {
    "rows_descending": lambda f: _set(f, "prefill/hidden_state_rows", lambda v: v.__setitem__(slice(None), v[::-1].copy())),
    "rows_outside": lambda f: _set(f, "prefill/hidden_state_rows", lambda v: v.__setitem__(-1, 1 << 20)),
    "rows_negative": lambda f: _set(f, "prefill/hidden_state_rows", lambda v: v.__setitem__(0, -1)),
    "rows_empty": lambda f: _replace(f, "prefill/hidden_state_rows", np.zeros(0, dtype=np.int64)),
    "rows_more_than_stored": lambda f: _replace(f, "prefill/hidden_state_rows", np.array([0, 1, 2], dtype=np.int64)),
    "rows_as_matrix": lambda f: _replace(f, "prefill/hidden_state_rows", np.array([[0, 1]], dtype=np.int64)),
    "rows_with_processed_rank": lambda f: _replace(f, "prefill/processed", f["prefill/processed"][0]),
    "rows_on_a_full_shape": lambda f: _replace(f, "prefill/hidden_states", np.zeros((31, 205, 576), dtype=np.float32)),
}


def _refused_alike(path: Path, mutate, reroute: str) -> None:
    """The mutated trace is refused by the Python reader and by reroute with one message."""
    with h5py.File(path, "r+") as f:
        mutate(f)
    with pytest.raises(TraceError) as e:
        read_trace(str(path))
    assert str(e.value) == _swift_message(reroute, path)


def _swift_message(reroute: str, path: Path) -> str:
    r = run(reroute, "show", str(path))
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.startswith("reroute: error: "), r.stderr
    return r.stderr[len("reroute: error: "):].strip()


@pytest.mark.parametrize("name", sorted(MUTATIONS))
@pytest.mark.parametrize("rel", ["traces/tiny-llama/reroute-fastv-64.h5", "traces/tiny-qwen2-vl/reroute-fastv-64.h5"])
def test_malformed_traces_are_refused_by_both_readers_with_one_message(name, rel, copy_of, reroute):
    _refused_alike(copy_of(rel), MUTATIONS[name], reroute)


@pytest.mark.parametrize("name", sorted(COMPACT_MUTATIONS))
def test_malformed_compact_traces_are_refused_by_both_readers_with_one_message(name, copy_of, reroute):
    _refused_alike(copy_of("trained/smollm2-135m-instruct/fastv-release-192.h5"), COMPACT_MUTATIONS[name], reroute)


def test_rows_added_to_a_full_trace_must_match_its_hidden_states(copy_of, reroute):
    path = copy_of("traces/tiny-llama/dense.h5")
    with h5py.File(path, "r+") as f:
        f.create_dataset("prefill/hidden_state_rows", data=np.array([0, 5], dtype=np.int64)).attrs["compare"] = "exact"
    with pytest.raises(TraceError, match=r"/prefill/hidden_states: bad shape: shape \[9, \d+, 64\], expected \[9, 2, 64\]") as e:
        read_trace(str(path))
    assert str(e.value) == _swift_message(reroute, path)


@pytest.mark.parametrize("content", [b"", b"not an HDF5 file\n"])
def test_unreadable_files_are_refused_by_both_readers_with_one_message(content, tmp_path, reroute):
    path = tmp_path / "t.h5"
    path.write_bytes(content)
    with pytest.raises(TraceError) as e:
        read_trace(str(path))
    assert str(e.value) == _swift_message(reroute, path)
    with pytest.raises(TraceError, match="no such file"):
        read_trace(str(tmp_path / "absent.h5"))


# ---------------------------------------------------------------------------------------
# What an outside producer may leave to the suite

def test_a_trace_without_budget_is_read_by_both_and_the_suite_computes_it(copy_of, reroute):
    rel = "traces/tiny-llama/reroute-fastv-64.h5"
    path = copy_of(rel)
    with h5py.File(path, "r+") as f:
        del f["budget"]
    t = read_trace(str(path))
    assert "budget" not in t
    shown = run(reroute, "show", str(path))
    assert shown.returncode == 0 and "has no /budget; computed from its config and processed sets" in shown.stderr, shown.stderr
    # The computed budget is the one the suite wrote: the diff against the golden finds nothing.
    r = run(reroute, "diff", str(GOLDEN / rel), str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = path.with_name("copy.h5")
    write_trace(str(out), t)
    with h5py.File(out) as f:
        assert "budget" not in f


def test_a_policy_file_may_stand_in_for_the_policy_json(copy_of, reroute):
    rel = "traces/tiny-qwen2/reroute-nuwa-64.h5"
    path = copy_of(rel)
    policy_file = run(reroute, "policy", "show", "reroute-nuwa-64", "--json").stdout
    with h5py.File(path, "r+") as f:
        f.attrs["policy"] = policy_file
    assert json.loads(read_trace(str(path))["attrs"]["policy"])["schema"] == "reroute.policy"
    r = run(reroute, "diff", str(GOLDEN / rel), str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    with h5py.File(path, "r+") as f:
        f.attrs["policy"] = policy_file.replace('"schema_version": 1', '"schema_version": 2')
    with pytest.raises(TraceError) as e:
        read_trace(str(path))
    assert str(e.value) == _swift_message(reroute, path)


@pytest.mark.parametrize("attr, edit", [
    ("model_config", lambda c: c.__setitem__("rmsNormEps", float("nan"))),  # NaN is not JSON (Foundation's decoder refuses it)
    ("model_config", lambda c: c.__setitem__("family", "gpt2")),
    ("policy", lambda p: p.__setitem__("action", "delete")),
    ("policy", lambda p: p.__setitem__("visionStage", 5)),
    ("policy", lambda p: p["scorer"].__setitem__("heads", {"mean": {}})),
    ("policy", lambda p: p.__setitem__("countRule", "ceiling")),
    ("policy", lambda p: p.__setitem__("selection", "diverse")),
])
def test_json_the_swift_decoder_refuses_is_refused_under_the_same_object(attr, edit, copy_of, reroute):
    path = copy_of("traces/tiny-llama/reroute-fastv-64.h5")
    with h5py.File(path, "r+") as f:
        v = json.loads(f.attrs[attr])
        edit(v)
        f.attrs[attr] = json.dumps(v)
    with pytest.raises(TraceError) as e:
        read_trace(str(path))
    swift = _swift_message(reroute, path)
    kind = "ModelConfig" if attr == "model_config" else "RoutingPolicy"
    prefix = f"{path}: /@{attr}: bad case: not a valid {kind} JSON"  # the rest is each decoder's own wording
    assert str(e.value).startswith(prefix) and swift.startswith(prefix), (str(e.value), swift)


def test_visual_grid_indices_may_name_the_cls_token_only_with_its_feature(tmp_path, reroute):
    """VisionZip's golden lists the CLS cell N first and then cells out of grid order; the
    same file without the CLS feature, or with a cell listed twice, is refused as Swift refuses it."""
    src = GOLDEN / "traces/tiny-llama/visionzip-64.h5"
    t = read_trace(str(src))
    cells = t["llm"]["visual_grid_indices"]
    assert int(cells[0]) == 100 and list(cells[1:]) != sorted(cells[1:])
    no_cls = tmp_path / "no-cls.h5"
    no_cls.write_bytes(src.read_bytes())
    with h5py.File(no_cls, "r+") as f:
        del f["/inputs/vision_side/cls_feature"]
    with pytest.raises(TraceError, match="visual_grid_indices.*cell 100 is outside the 10x10 grid"):
        read_trace(str(no_cls))
    twice = tmp_path / "twice.h5"
    twice.write_bytes(src.read_bytes())
    with h5py.File(twice, "r+") as f:
        d = f["/llm/visual_grid_indices"]
        v = d[()]
        v[2] = v[1]
        d[...] = v
    with pytest.raises(TraceError, match="lists a cell twice"):
        read_trace(str(twice))
    for path in (no_cls, twice):
        r = run(reroute, "show", str(path))
        assert r.returncode == 2 and "visual_grid_indices" in r.stderr, r.stderr
