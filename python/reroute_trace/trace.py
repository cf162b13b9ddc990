"""Reading and writing ``reroute.trace`` v1 files (SPEC.md §9.1) with h5py.

The reader applies the Swift reader's rules in the Swift reader's order, with its messages
(``FILE: OBJECT: KIND: DETAIL``): schema and version, the model configuration and the policy,
the case in ``/inputs``, every dataset's shape before its data is read, NaN, every integer
within its limit (SPEC.md §12), decision indices in the visual span without repeats. The
writer writes atomically and reads its own output back before it is renamed into place, so
no file it leaves is one the readers refuse.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from typing import Any, TypedDict

import h5py
import numpy as np

from . import schema as S
from .errors import TraceError


class Decision(TypedDict):
    """One routing decision: visual-span indices (cells of the original grid) and scores."""
    layer: int
    budget: int
    candidates: np.ndarray  # int64 [C]
    kept: np.ndarray        # int64, ascending
    deferred: np.ndarray    # int64, ascending
    scores: np.ndarray      # float64 [C], one per candidate


class TraceDict(TypedDict, total=False):
    """A trace as plain data: the groups of the file, one dictionary each.

    ``attrs`` the root attributes (``model_config`` and ``policy`` as JSON text); ``inputs``
    the case (SPEC.md §6); ``llm`` optional ``visual_grid_indices``; ``prefill``
    ``hidden_states [L+1, S, d]`` (a compact trace: ``[L+1, R, d]`` of the sequence rows in
    ``hidden_state_rows [R]``), ``processed [L, S]``, ``positions [L, S]`` or ``[L, 3, S]``
    (−1 where not processed), ``decode_positions [L]``, ``kv_length [L]``, ``logits [V]`` and
    ``decisions`` (a list of `Decision`); ``decode`` ``tokens [T]``, ``step_logits [T, V]``,
    ``kv_length [L]``; ``budget`` the per-layer counts and FLOPs ``[L]`` and ``budget_attrs``
    its attributes.
    """
    attrs: dict[str, Any]
    inputs: dict[str, np.ndarray]
    llm: dict[str, np.ndarray]
    prefill: dict[str, Any]
    decode: dict[str, np.ndarray]
    budget: dict[str, np.ndarray]
    budget_attrs: dict[str, Any]


def _fmt(shape: Any) -> str:
    return "[" + ", ".join(str(int(x)) for x in shape) + "]"


def _fmt_expected(shape: list[int | None]) -> str:
    return "[" + ", ".join("*" if x is None else str(x) for x in shape) + "]"


def _num(x: float) -> str:
    """A Double as Swift prints it."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(float(x))


class _File:
    """An open HDF5 file read as RerouteHDF5.HDF5File reads it (same checks, same messages)."""

    def __init__(self, path: str) -> None:
        self.path = path
        if not os.path.exists(path):
            raise TraceError(path, None, "cannot open", "no such file")
        if not os.path.isfile(path):
            raise TraceError(path, None, "cannot open", "not a regular file")
        try:
            self.f = h5py.File(path, "r")
        except OSError:
            raise TraceError(path, None, "cannot open", "not a readable HDF5 file") from None

    def close(self) -> None:
        self.f.close()

    def exists(self, p: str) -> bool:
        try:
            return p in self.f
        except (KeyError, ValueError, RuntimeError):
            return False

    def children(self, p: str) -> list[str]:
        if not self.exists(p):
            raise TraceError(self.path, p, "missing", "no such group")
        g = self.f[p]
        if not isinstance(g, h5py.Group):
            raise TraceError(self.path, p, "cannot open", "not a group")
        if len(g) >= 1 << 20:
            raise TraceError(self.path, p, "too large", f"{len(g)} members")
        return sorted(g.keys())

    def dataset(self, p: str) -> h5py.Dataset:
        if not self.exists(p):
            raise TraceError(self.path, p, "missing", "no such dataset")
        d = self.f[p]
        if not isinstance(d, h5py.Dataset):
            raise TraceError(self.path, p, "cannot open", "not a dataset")
        return d

    def shape(self, p: str) -> list[int]:
        d = self.dataset(p)
        if d.shape is None:
            raise TraceError(self.path, p, "wrong shape", "null dataspace (no elements)")
        return list(d.shape)

    @staticmethod
    def _kind(dtype: np.dtype) -> str:
        return {"f": "float", "i": "integer", "u": "integer", "S": "string", "O": "string", "U": "string"}.get(dtype.kind, "other")

    def read(self, p: str, expect: str, max_elements: int = S.MAX_ELEMENTS) -> np.ndarray:
        d = self.dataset(p)
        kind = self._kind(d.dtype)
        if kind != expect:
            raise TraceError(self.path, p, "wrong type", f"holds {kind} elements, expected {expect}")
        shape = self.shape(p)
        count = 1
        for x in shape:
            count *= x
            if count > max_elements:
                raise TraceError(self.path, p, "too large", f"shape {_fmt(shape)} exceeds {max_elements} elements")
        try:
            v = d[()]
        except OSError:
            raise TraceError(self.path, p, "I/O failed", "read failed (corrupt or truncated file?)") from None
        return np.asarray(v, dtype=np.float64 if expect == "float" else np.int64)

    def _attr(self, name: str, obj: str) -> tuple[Any, str]:
        obj_name = f"/@{name}" if obj == "/" else f"{obj}@{name}"
        if obj != "/" and not self.exists(obj):
            raise TraceError(self.path, obj, "missing", "no such object")
        attrs = self.f[obj].attrs
        if name not in attrs:
            raise TraceError(self.path, obj_name, "missing", "no such attribute")
        return attrs[name], obj_name

    def has_attr(self, name: str, obj: str = "/") -> bool:
        return (obj == "/" or self.exists(obj)) and name in self.f[obj].attrs

    def str_attr(self, name: str, obj: str = "/") -> str:
        v, obj_name = self._attr(name, obj)
        if isinstance(v, np.ndarray) and v.dtype.kind in "SOU":
            if v.size != 1:
                raise TraceError(self.path, obj_name, "wrong shape", "not a scalar")
            v = v.reshape(-1)[0]
        if isinstance(v, bytes):
            return v.decode("utf-8", errors="replace")
        if isinstance(v, str):
            return v
        raise TraceError(self.path, obj_name, "wrong type", "attribute is not a string")

    def _scalar_attr(self, name: str, obj: str, kinds: str, what: str) -> Any:
        v, obj_name = self._attr(name, obj)
        a = np.asarray(v)
        if a.dtype.kind not in kinds:
            raise TraceError(self.path, obj_name, "wrong type", f"attribute is not {what}")
        if a.size != 1:
            raise TraceError(self.path, obj_name, "wrong shape", "not a scalar")
        return a.reshape(-1)[0]

    def int_attr(self, name: str, obj: str = "/") -> int:
        return int(self._scalar_attr(name, obj, "iu", "an integer").astype(np.int64))

    def float_attr(self, name: str, obj: str = "/") -> float:
        return float(self._scalar_attr(name, obj, "iuf", "a number"))


# ---------------------------------------------------------------------------------------
# The model configuration and the policy in /@model_config and /@policy (Swift's Codable form)

_CONFIG_KEYS = {"family": str, "hiddenSize": int, "layers": int, "heads": int, "kvHeads": int, "headDim": int,
                "intermediateSize": int, "rmsNormEps": float, "ropeTheta": float, "vocabSize": int,
                "tieWordEmbeddings": bool, "attentionBias": bool, "maxPositionEmbeddings": int}


def _is(v: Any, t: type) -> bool:
    if t is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if t is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return isinstance(v, t)


def parameter_count(c: dict[str, Any]) -> float:
    """Language-model parameters of a configuration (ModelConfig.parameterCount)."""
    d, dh, h, kv, m = (float(c[k]) for k in ["hiddenSize", "headDim", "heads", "kvHeads", "intermediateSize"])
    attention = (h + 2 * kv) * dh * d + h * dh * d + ((h + 2 * kv) * dh if c["attentionBias"] else 0)
    layer = attention + 3 * m * d + 2 * d
    return float(c["vocabSize"]) * d * (1 if c["tieWordEmbeddings"] else 2) + float(c["layers"]) * layer + d


def validate_config(c: Any, path: str) -> dict[str, Any]:
    """/@model_config: the keys ModelConfig encodes, then ModelConfig.validate's rules."""
    def bad_json(why: str) -> TraceError:
        return TraceError(path, "/@model_config", "bad case", f"not a valid ModelConfig JSON: {why}")
    if not isinstance(c, dict):
        raise bad_json("not an object")
    for k, t in _CONFIG_KEYS.items():
        if k not in c:
            raise bad_json(f"missing key '{k}'")
        if not _is(c[k], t):
            raise bad_json(f"'{k}' is not a {t.__name__}")
    if c["family"] not in ("llama", "qwen2"):
        raise bad_json(f"family '{c['family']}'")
    ms = c.get("mropeSection")
    if ms is not None and not (isinstance(ms, list) and all(_is(x, int) for x in ms)):
        raise bad_json("'mropeSection' is not a list of integers")

    def bad(key: str, why: str) -> TraceError:
        return TraceError(path, key, "bad config", why)
    named = [(py, c[sw]) for py, sw, _ in S.CONFIG_CAPS]
    order = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "vocab_size"]
    for key in order:
        v = dict(named)[key]
        if v <= 0:
            raise bad(key, f"must be positive, got {v}")
    for py, sw, cap in S.CONFIG_CAPS:
        if c[sw] > cap:
            raise bad(py, f"{c[sw]} is larger than the supported maximum {cap}")
    if c["heads"] % c["kvHeads"] != 0:
        raise bad("num_key_value_heads", f"{c['kvHeads']} does not divide num_attention_heads {c['heads']}")
    if c["headDim"] % 2 != 0:
        raise bad("head_dim", f"RoPE needs an even head dimension, got {c['headDim']}")
    n = parameter_count(c)
    if n > S.MAX_PARAMETERS:
        raise bad("num_hidden_layers", f"the config describes {round(n):,} parameters; the supported maximum is 2^37")
    eps, theta = float(c["rmsNormEps"]), float(c["ropeTheta"])
    if not (eps > 0) or not math.isfinite(eps):
        raise bad("rms_norm_eps", f"must be positive and finite, got {_num(eps)}")
    if not (theta > 1) or not math.isfinite(theta):
        raise bad("rope_theta", f"must be finite and > 1, got {_num(theta)}")
    if c["maxPositionEmbeddings"] <= 0 or c["maxPositionEmbeddings"] > 1 << 30:
        raise bad("max_position_embeddings", f"must be 1…{1 << 30}, got {c['maxPositionEmbeddings']}")
    if ms is not None and (len(ms) != 3 or any(x < 0 for x in ms) or sum(ms) != c["headDim"] // 2):
        raise bad("rope_parameters.mrope_section", f"{_fmt(ms)} must be 3 non-negative sizes summing to head_dim/2 = {c['headDim'] // 2}")
    return c


def _case_name(v: Any) -> str | None:
    """The case of a Swift enum encoded by Codable ({"case": {...}} or "case")."""
    if isinstance(v, str):
        return v
    if isinstance(v, dict) and len(v) == 1:
        return next(iter(v))
    return None


_QUERIES = {"lastToken", "lastInstructionToken", "lastRows"}
_ATTENTION = {"producedByPreviousLayer", "decisionLayerInput"}
_SELECTIONS = {"divprune", "dart-embed", "dart", "evs", "cdpruner"}  # SelectionRule's cases


def _matching_ok(m: Any) -> bool:
    """BudgetMatching's Codable form: {"none":{}}, {"perLayer":{"base":…}}, {"averageTokens":{"base":…}}."""
    if not (isinstance(m, dict) and len(m) == 1):
        return False
    (k, v), = m.items()
    return isinstance(v, dict) and (k == "none" or (k in ("perLayer", "averageTokens") and isinstance(v.get("base"), str)))


def validate_policy(p: Any, path: str) -> dict[str, Any]:
    """/@policy: the keys RoutingPolicy encodes, then RoutingPolicy.validate's rules. A policy
    file (``reroute.policy`` v1, as ``reroute policy show NAME --json`` prints it) is also
    accepted; here only its schema and name are checked, ``reroute`` checks every field."""
    def bad_json(why: str) -> TraceError:
        return TraceError(path, "/@policy", "bad case", f"not a valid RoutingPolicy JSON: {why}")
    if not isinstance(p, dict):
        raise bad_json("not an object")
    if p.get("schema") == S.POLICY_SCHEMA:
        where = f"{path}: /@policy"
        if p.get("schema_version") != 1:
            raise TraceError(where, "schema_version", "bad value", f"version {p.get('schema_version')}; this build reads version 1")
        if not isinstance(p.get("name"), str):
            raise TraceError(where, "name", "bad value", "expected a string")
        return p
    for k, t in [("name", str), ("decisionLayers", list), ("referenceDepth", int), ("keepRatios", list), ("countRule", str),
                 ("positions", str), ("scorer", dict)]:
        if k not in p or not _is(p[k], t):
            raise bad_json(f"missing or mistyped key '{k}'")
    action = p.get("action")
    if not (isinstance(action, dict) and len(action) == 1 and next(iter(action)) in ("delete", "route")
            and isinstance(next(iter(action.values())), dict)):
        raise bad_json("missing or mistyped key 'action'")
    if not _matching_ok(p.get("budgetMatching")):
        raise bad_json("missing or mistyped key 'budgetMatching'")
    if p["countRule"] not in ("floor", "floorAtLeastOne", "round", "ceil", "dartPivotQuota", "roundHalfAway") or p["positions"] not in ("original", "reindexed", "textAfterGridWidth", "textAfterKeptMax"):
        raise bad_json("countRule or positions is not one of its cases")
    if not all(_is(x, int) for x in p["decisionLayers"]) or not all(_is(x, float) for x in p["keepRatios"]):
        raise bad_json("decisionLayers must be integers and keepRatios numbers")
    if p.get("selection") is not None and not (isinstance(p["selection"], str) and p["selection"] in _SELECTIONS):
        raise bad_json("selection is not one of its cases")
    counts = p.get("keepCounts")
    if counts is not None and not (isinstance(counts, list) and all(_is(x, int) for x in counts)):
        raise bad_json("keepCounts must be integers")
    scorer = p["scorer"]
    for k, cases in [("query", _QUERIES), ("attention", _ATTENTION)]:
        v = scorer.get(k)
        if not (isinstance(v, dict) and len(v) == 1 and next(iter(v)) in cases and isinstance(next(iter(v.values())), dict)):
            raise bad_json(f"missing or mistyped key 'scorer.{k}'")
    if scorer.get("domain") not in ("allTokens", "activeTokens") or scorer.get("heads") not in ("mean", "max"):
        raise bad_json("scorer.domain or scorer.heads is not one of its cases")
    rows = scorer["query"].get("lastRows")
    if rows is not None and not _is(rows.get("_0"), int):
        raise bad_json("scorer.query.lastRows needs an integer")
    stage = p.get("visionStage")
    if stage is not None and not (isinstance(stage, dict) and _is(stage.get("keepRatio"), float) and _is(stage.get("perRegion"), int)
                                  and _is(stage.get("penaltyQuantile"), float)):
        raise bad_json("visionStage needs keepRatio, perRegion and penaltyQuantile numbers")
    name, depth, layers, ratios = p["name"], p["referenceDepth"], p["decisionLayers"], p["keepRatios"]

    def bad(why: str) -> TraceError:
        return TraceError(path, "/@policy", "bad case", f"routing: bad schedule: {name}: {why}")
    query = scorer["query"]
    last_rows = query["lastRows"].get("_0") if isinstance(query, dict) and isinstance(query.get("lastRows"), dict) else None
    if not 1 <= depth <= S.MAX_DEPTH:
        raise bad(f"reference depth {depth} outside 1…{S.MAX_DEPTH}")
    for l in layers:
        if not 0 <= l < depth:
            raise bad(f"decision layer {l} outside 0 ..< {depth} (the reference depth)")
    if layers and layers[0] == 0 and p.get("selection") is None and _case_name(scorer["attention"]) == "producedByPreviousLayer":
        raise bad("a decision at layer 0 (the LLM input) has no previous layer whose attention it could read")
    for c in counts or []:
        if c > S.MAX_KEEP_COUNT:
            raise bad(f"keep count {c} above {S.MAX_KEEP_COUNT}")
    if last_rows is not None and last_rows > S.MAX_KEEP_COUNT:
        raise bad(f"lastRows({last_rows}) above {S.MAX_KEEP_COUNT}")
    v = p.get("visionStage")
    if v is not None:
        r, per, q = float(v.get("keepRatio", float("nan"))), v.get("perRegion", 0), float(v.get("penaltyQuantile", float("nan")))
        if not (0 < r <= 1) or not 1 <= per <= 4 or not (0 <= q <= 1):
            raise bad(f"vision stage keep ratio {_num(r)}, per region {per}, quantile {_num(q)} outside (0, 1], 1…4, [0, 1]")
    if counts is not None:
        if ratios:
            raise bad("both keep ratios and keep counts")
        if len(layers) != len(counts):
            raise bad(f"{len(layers)} decision layers, {len(counts)} keep counts")
        for c in counts:
            if c < 0:
                raise bad(f"keep count {c} below 0")
    elif len(layers) != len(ratios):
        raise bad(f"{len(layers)} decision layers, {len(ratios)} keep ratios")
    for a, b in zip(layers, layers[1:]):
        if b <= a:
            raise bad(f"decision layers {_fmt(layers)} are not strictly increasing")
    for r in ratios:
        if not 0 <= r <= 1:
            raise bad(f"keep ratio {_num(r)} outside [0, 1]")
    action = p["action"]
    route = _case_name(action) == "route"
    if p["positions"] != "original" and _case_name(action) != "delete":
        kind = "re-indexed" if p["positions"] == "reindexed" else "recomputed"
        raise bad(f"{kind} positions need the delete action (routed tokens keep theirs)")
    if last_rows is not None and last_rows < 1:
        raise bad(f"lastRows({last_rows})")
    monotonic = bool(action["route"].get("monotonic", False)) if route and isinstance(action, dict) else False
    if route and not monotonic and (_case_name(scorer["domain"]) == "activeTokens" or _case_name(scorer["attention"]) == "producedByPreviousLayer"):
        raise bad("non-monotonic routing re-scores deferred tokens, so its softmax must cover all tokens of the decision layer's input")
    return p


# ---------------------------------------------------------------------------------------
# The case in /inputs (PromptCaseIO.read + PromptCase.validate)

def _read_inputs(f: _File, g: str = "/inputs") -> dict[str, np.ndarray]:
    path = f.path

    def ints(p: str, rank: int, max_elements: int = S.MAX_SEQUENCE_LENGTH) -> np.ndarray:
        v = f.read(p, "integer", max_elements)
        if v.ndim != rank:
            raise TraceError(path, p, "bad case", f"rank {v.ndim}, expected {rank}")
        return v

    def matrix(p: str) -> np.ndarray:
        v = f.read(p, "float", S.MAX_VISUAL_ELEMENTS).astype(np.float32)  # as the Swift reader holds them
        if v.ndim != 2:
            raise TraceError(path, p, "bad case", f"shape {_fmt(v.shape)}, expected [rows, cols]")
        return v

    out: dict[str, np.ndarray] = {}
    out["prefix_ids"] = ints(f"{g}/prefix_ids", 1)
    out["suffix_ids"] = ints(f"{g}/suffix_ids", 1)
    grid = ints(f"{g}/grid", 1)
    if not (grid.size == 2 or (grid.size == 3 and int(grid[0]) > 1)):
        raise TraceError(path, f"{g}/grid", "bad case", "expected [rows, cols], or [frames, rows, cols] with frames > 1 for a video")
    if not all(1 <= int(x) <= S.MAX_GRID_SIDE for x in grid):
        raise TraceError(path, f"{g}/grid", "bad case", f"{_fmt(grid)} must be 1 ... {S.MAX_GRID_SIDE} frames, rows and columns")
    out["grid"] = grid
    if f.exists(f"{g}/visual_features"):
        out["visual_features"] = matrix(f"{g}/visual_features")
    elif f.exists(f"{g}/visual_embeddings"):
        out["visual_embeddings"] = matrix(f"{g}/visual_embeddings")
    else:
        raise TraceError(path, g, "bad case", "neither visual_features nor visual_embeddings")
    pos = ints(f"{g}/positions", 2, 3 * S.MAX_SEQUENCE_LENGTH)
    if pos.shape[0] not in (1, 3):
        raise TraceError(path, f"{g}/positions", "bad case", f"{pos.shape[0]} axes, expected 1 or 3")
    out["positions"] = pos
    out["decode_steps"] = ints(f"{g}/decode_steps", 0)
    if f.exists(f"{g}/vision_side"):
        cls = f.read(f"{g}/vision_side/cls_attention", "float", S.MAX_VISUAL_ELEMENTS).astype(np.float32)
        if cls.ndim != 1:
            raise TraceError(path, f"{g}/vision_side/cls_attention", "bad case", "expected [N]")
        out["vision_side/cls_attention"] = cls
        out["vision_side/similarity_features"] = matrix(f"{g}/vision_side/similarity_features")
        if f.exists(f"{g}/vision_side/cls_feature"):
            feature = f.read(f"{g}/vision_side/cls_feature", "float", S.MAX_VISUAL_ELEMENTS).astype(np.float32)
            if feature.ndim != 1:
                raise TraceError(path, f"{g}/vision_side/cls_feature", "bad case", "expected [d_vision]")
            out["vision_side/cls_feature"] = feature
    return out


def grid_indices_problem(cells: np.ndarray, grid_count: int, grid_name: str, has_cls: bool) -> str | None:
    """PromptCase.gridIndicesProblem: distinct cells of the grid, cell ``N`` (the CLS token)
    only when the case carries one."""
    limit = grid_count if has_cls else grid_count - 1
    out = [int(c) for c in cells if not 0 <= c <= limit]
    if out:
        return f"cell {out[0]} is outside the {grid_name} grid" + (f" and its CLS token ({grid_count})" if has_cls else "")
    if len(set(int(c) for c in cells)) != len(cells):
        return "lists a cell twice"
    return None


def grid_description(grid: np.ndarray) -> str:
    """ImageGrid.description: ``ROWSxCOLS``, or ``FRAMESxROWSxCOLS`` for a video."""
    return "x".join(str(int(x)) for x in grid)


def validate_case(inputs: dict[str, np.ndarray], cfg: dict[str, Any], path: str) -> None:
    """PromptCase.validate against the trace's own config (the projector is not known here)."""
    def bad(obj: str, why: str) -> TraceError:
        return TraceError(path, obj, "bad case", why)
    shape = [int(x) for x in inputs["grid"]]
    frames, rows, cols = (shape if len(shape) == 3 else [1] + shape)
    grid_name, cells = grid_description(inputs["grid"]), frames * rows * cols
    visual = inputs.get("visual_features", inputs.get("visual_embeddings"))
    assert visual is not None
    n = visual.shape[0]
    prefix, suffix = inputs["prefix_ids"], inputs["suffix_ids"]
    steps = int(inputs["decode_steps"])
    if not (1 <= rows <= S.MAX_GRID_SIDE and 1 <= cols <= S.MAX_GRID_SIDE and 1 <= frames <= S.MAX_GRID_SIDE):
        raise bad("grid", f"{grid_name} must be 1 ... {S.MAX_GRID_SIDE} frames, rows and columns")
    if cells > S.MAX_SEQUENCE_LENGTH:
        raise bad("grid", f"{grid_name} holds more than {S.MAX_SEQUENCE_LENGTH} tokens")
    if steps > S.MAX_DECODE_STEPS:
        raise bad("decode_steps", f"{steps} exceeds the supported {S.MAX_DECODE_STEPS}")
    if len(prefix) > S.MAX_SEQUENCE_LENGTH or len(suffix) > S.MAX_SEQUENCE_LENGTH or len(prefix) + len(suffix) + n > S.MAX_SEQUENCE_LENGTH:
        raise bad("prefix_ids", f"the sequence ({len(prefix)} + {n} + {len(suffix)} tokens) exceeds {S.MAX_SEQUENCE_LENGTH}")
    if n < 1:
        raise bad("visual", "a case needs at least one visual token")
    if len(suffix) == 0:
        raise bad("suffix_ids", "a case needs at least one text token after the image (the scoring query)")
    if cells != n:
        raise bad("grid", f"{grid_name} does not hold the {n} visual tokens")
    if "vision_side/cls_attention" in inputs:
        cls, sim = inputs["vision_side/cls_attention"], inputs["vision_side/similarity_features"]
        if len(cls) != cells or sim.shape[0] != cells:
            raise bad("vision_side", f"CLS attention and similarity features need one row per grid cell ({cells})")
        feature = inputs.get("vision_side/cls_feature")
        if not (np.isfinite(cls).all() and np.isfinite(sim).all() and (feature is None or np.isfinite(feature).all())):
            raise TraceError(path, "vision_side", "bad value", "contains NaN or Inf")
        if feature is not None and ("visual_features" not in inputs or len(feature) != inputs["visual_features"].shape[1]):
            raise bad("vision_side/cls_feature", f"{len(feature)} values; it needs the width of the case's visual_features")
    vocab = cfg["vocabSize"]
    for label, ids in [("prefix_ids", prefix), ("suffix_ids", suffix)]:
        out = [int(t) for t in ids if t < 0 or t >= vocab]
        if out:
            raise bad(label, f"token id {out[0]} is outside the vocabulary [0, {vocab})")
    pos = inputs["positions"]
    seq = len(prefix) + n + len(suffix)
    if pos.shape[1] != seq:
        raise bad("positions", f"{pos.shape[1]} position ids for {seq} tokens")
    if (pos < 0).any():
        raise bad("positions", "negative position id")
    if (pos > S.MAX_POSITION_ID).any():
        raise bad("positions", f"position id {int(pos.reshape(-1)[np.argmax(pos.reshape(-1) > S.MAX_POSITION_ID)])} exceeds {S.MAX_POSITION_ID}")
    if pos.shape[0] == 3 and cfg.get("mropeSection") is None:
        raise bad("positions", "3-D (t, h, w) positions need a model with M-RoPE (mrope_section); this one has 1-D RoPE")
    if steps < 0:
        raise bad("decode_steps", "negative")
    if "visual_features" in inputs:
        if not np.isfinite(visual).all():
            raise TraceError(path, "visual_features", "bad value", "contains NaN or Inf")
    else:
        if visual.shape[1] != cfg["hiddenSize"]:
            raise bad("visual_embeddings", f"width {visual.shape[1]}, the model's hidden size is {cfg['hiddenSize']}")
        if not np.isfinite(visual).all():
            raise TraceError(path, "visual_embeddings", "bad value", "contains NaN or Inf")


# ---------------------------------------------------------------------------------------
# Reading

def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # as Foundation's JSONDecoder: no NaN or Infinity


def read_trace(path: str) -> TraceDict:
    """Reads and validates a trace; raises `TraceError` naming the file and the object."""
    f = _File(path)
    try:
        return _read(f, path)
    finally:
        f.close()


def _read(f: _File, path: str) -> TraceDict:
    schema = f.str_attr("schema")
    if schema != S.SCHEMA:
        raise TraceError(path, "/@schema", "bad case", f"'{schema}', expected '{S.SCHEMA}'")
    version = f.int_attr("schema_version")
    if version != S.SCHEMA_VERSION:
        raise TraceError(path, "/@schema_version", "bad case", f"version {version}; this build reads version {S.SCHEMA_VERSION}")

    def decode(attr: str, obj: str = "/") -> Any:
        text = f.str_attr(attr, obj)
        try:
            return json.loads(text, parse_constant=_no_constant)
        except ValueError as e:
            name = "RoutingPolicy" if attr == "policy" else "ModelConfig" if attr == "model_config" else "BudgetMatching"
            raise TraceError(path, f"/@{attr}" if obj == "/" else f"{obj}@{attr}", "bad case", f"not a valid {name} JSON: {e}") from None
    cfg = validate_config(decode("model_config"), path)
    validate_policy(decode("policy"), path)
    attrs: dict[str, Any] = {"schema": schema, "schema_version": version}
    for k in ["producer", "producer_version", "producer_commit", "decoder", "mode", "model"]:
        attrs[k] = f.str_attr(k)
    attrs["seed"] = f.int_attr("seed")
    if attrs["mode"] not in S.MODES:
        raise TraceError(path, "/@mode", "bad case", f"'{attrs['mode']}'; expected {' or '.join(S.MODES)}")
    for k in S.OPTIONAL_ROOT_ATTRS:
        if f.has_attr(k):
            attrs[k] = f.str_attr(k)
    attrs["case"] = f.str_attr("case")
    attrs["model_config"] = f.str_attr("model_config")
    attrs["policy"] = f.str_attr("policy")
    inputs = _read_inputs(f)
    validate_case(inputs, cfg, path)
    L, d, V = cfg["layers"], cfg["hiddenSize"], cfg["vocabSize"]

    def check(p: str, actual: list[int], expected: list[int | None]) -> None:
        if len(actual) != len(expected) or any(e is not None and a != e for a, e in zip(actual, expected)):
            raise TraceError(path, p, "bad shape", f"shape {_fmt(actual)}, expected {_fmt_expected(expected)}")

    def floats(p: str, shape: list[int | None]) -> np.ndarray:
        check(p, f.shape(p), shape)
        v = f.read(p, "float")
        if np.isnan(v).any():
            raise TraceError(path, p, "bad value", "contains NaN")
        return v

    def ints(p: str, shape: list[int | None]) -> np.ndarray:
        check(p, f.shape(p), shape)
        return f.read(p, "integer")

    def bounded(p: str, v: np.ndarray | list[int], lo: int, hi: int) -> np.ndarray:
        a = np.asarray(v, dtype=np.int64).reshape(-1)
        out = (a < lo) | (a > hi)
        if out.any():
            raise TraceError(path, p, "bad value", f"{int(a[np.argmax(out)])} is outside {lo}…{hi}")
        return np.asarray(v, dtype=np.int64)

    def indices(p: str, hi: int) -> np.ndarray:
        v = bounded(p, ints(p, [None]), 0, hi)
        if len(set(v.tolist())) != len(v):
            raise TraceError(path, p, "bad value", "repeats an index")
        return v

    hidden_shape = f.shape("/prefill/hidden_states")
    if len(hidden_shape) != 3:
        raise TraceError(path, "/prefill/hidden_states", "bad shape", f"shape {_fmt(hidden_shape)}, expected [L+1, S, d]")
    prefill: dict[str, Any] = {}
    # A compact trace stores some rows only; S' is then the processed mask's width.
    if f.exists("/prefill/hidden_state_rows"):
        mask_shape = f.shape("/prefill/processed")
        if len(mask_shape) != 2:
            raise TraceError(path, "/prefill/processed", "bad shape", f"shape {_fmt(mask_shape)}, expected [L, S]")
        seq = mask_shape[1]
        rows = ints("/prefill/hidden_state_rows", [None])
        if len(rows) == 0 or (np.diff(rows) <= 0).any() or rows[0] < 0 or rows[-1] >= seq:
            raise TraceError(path, "/prefill/hidden_state_rows", "bad value",
                             f"must be strictly ascending sequence indices 0…{seq - 1}, at least one")
        prefill["hidden_state_rows"] = np.asarray(rows, dtype=np.int64)
        stored = len(rows)
    else:
        seq = stored = hidden_shape[1]
    prefill["hidden_states"] = floats("/prefill/hidden_states", [L + 1, stored, d]).astype(np.float32)
    mask = ints("/prefill/processed", [L, seq])
    A = inputs["positions"].shape[0]
    pos = ints("/prefill/positions", [L, seq] if A == 1 else [L, A, seq])
    for l in range(L):
        active = mask[l] != 0
        used = pos[l][active] if A == 1 else pos[l][:, active].reshape(-1)
        badp = (used < 0) | (used > S.MAX_POSITION_ID)
        if badp.any():
            raise TraceError(path, "/prefill/positions", "bad value", f"layer {l}: position {int(used[np.argmax(badp)])} for a processed token")
    prefill["processed"] = mask.astype(np.uint8)
    prefill["positions"] = pos
    grid_count = int(np.prod([int(x) for x in inputs["grid"]]))
    llm: dict[str, np.ndarray] = {}
    if f.exists("/llm/visual_grid_indices"):
        cells = ints("/llm/visual_grid_indices", [None])
        why = grid_indices_problem(cells, grid_count, grid_description(inputs["grid"]), "vision_side/cls_feature" in inputs)
        if why is not None:
            raise TraceError(path, "/llm/visual_grid_indices", "bad value", why)
        llm["visual_grid_indices"] = cells
    visual = inputs.get("visual_features", inputs.get("visual_embeddings"))
    assert visual is not None
    n_visual = visual.shape[0]
    llm_visual = len(llm["visual_grid_indices"]) if "visual_grid_indices" in llm else n_visual
    given = len(inputs["prefix_ids"]) + llm_visual + len(inputs["suffix_ids"])
    if seq != given:
        raise TraceError(path, "/prefill/hidden_states", "bad shape", f"{seq} sequence rows, the inputs give {given}")
    span_hi = max(n_visual, grid_count) - 1
    decisions: list[Decision] = []
    for g in f.children("/prefill/decisions"):
        p = f"/prefill/decisions/{g}"
        candidates = indices(f"{p}/candidates", span_hi)
        scores = floats(f"{p}/scores", [len(candidates)])
        layer = f.int_attr("layer", p)
        if not 0 <= layer < L:
            raise TraceError(path, f"{p}@layer", "bad case", f"{layer} is outside 0 ..< {L} (a decision layer of this model)")
        kept, deferred = indices(f"{p}/kept", span_hi), indices(f"{p}/deferred", span_hi)
        budget = int(bounded(f"{p}@budget", [f.int_attr("budget", p)], 0, span_hi + 1)[0])
        decisions.append({"layer": layer, "budget": budget, "candidates": candidates, "kept": kept, "deferred": deferred, "scores": scores})
    tokens = bounded("/decode/tokens", ints("/decode/tokens", [None]), 0, V - 1)
    if len(tokens) > S.MAX_DECODE_STEPS:
        raise TraceError(path, "/decode/tokens", "bad shape", f"{len(tokens)} tokens exceed {S.MAX_DECODE_STEPS} decode steps")
    step = floats("/decode/step_logits", [len(tokens), V])
    max_tokens = seq + len(tokens)
    prefill["decode_positions"] = bounded("/prefill/decode_positions", ints("/prefill/decode_positions", [L]), 0,
                                          S.MAX_POSITION_ID + S.MAX_DECODE_STEPS + 1)
    prefill["kv_length"] = bounded("/prefill/kv_length", ints("/prefill/kv_length", [L]), 0, seq)
    prefill["logits"] = floats("/prefill/logits", [V]).astype(np.float32)
    prefill["decisions"] = decisions
    kv_after = bounded("/decode/kv_length", ints("/decode/kv_length", [L]), 0, max_tokens)
    decode_group = {"tokens": tokens, "step_logits": step.astype(np.float32), "kv_length": kv_after}
    # Inputs are kept bit for bit as stored (the compare kind is bitwise).
    raw_inputs = {k: f.f[f"/inputs/{k}"][()] for k in inputs}
    out: TraceDict = {"attrs": attrs, "inputs": raw_inputs, "llm": llm, "prefill": prefill, "decode": decode_group}
    if not f.exists("/budget"):
        return out  # left to the suite: `reroute` computes it from the config and the processed sets
    bytes_per_element = int(bounded("/budget@bytes_per_element", [f.int_attr("bytes_per_element", "/budget")], 1, 16)[0])
    budget: dict[str, np.ndarray] = {}
    kv_width = cfg["kvHeads"] * cfg["headDim"]
    for k in S.BUDGET_INT:
        p = f"/budget/{k}"
        limit = max_tokens * 2 * kv_width * 16 if k == "kv_bytes" else max_tokens
        budget[k] = bounded(p, ints(p, [L]), 0, limit)
    for k in S.BUDGET_FLOAT:
        budget[k] = floats(f"/budget/{k}", [L])
    image_tokens = int(bounded("/budget@image_tokens", [f.int_attr("image_tokens", "/budget")], 0, span_hi + 1)[0])
    llm_visual_tokens = int(bounded("/budget@llm_visual_tokens", [f.int_attr("llm_visual_tokens", "/budget")], 0, span_hi + 1)[0])
    matching_text = f.str_attr("matching", "/budget")
    matching = decode("matching", "/budget")
    if not _matching_ok(matching):
        raise TraceError(path, "/budget@matching", "bad case", "not a valid BudgetMatching JSON")
    budget_attrs = {"image_tokens": image_tokens, "llm_visual_tokens": llm_visual_tokens,
                    "bytes_per_element": bytes_per_element, "matching": matching_text}
    if f.has_attr("avg_visual_tokens", "/budget"):  # derived; the Swift reader recomputes it
        budget_attrs["avg_visual_tokens"] = f.float_attr("avg_visual_tokens", "/budget")
    out["budget"], out["budget_attrs"] = budget, budget_attrs
    return out


# ---------------------------------------------------------------------------------------
# Writing

_LEFTOVER = re.compile(r"^\.reroute-(\d+)-\d+\.tmp$")


def _remove_leftovers(folder: str) -> None:
    """Temporary files of writers that were killed (their process is gone) are removed."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = _LEFTOVER.match(name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass
        except (PermissionError, OverflowError):
            pass


def _new_temporary(path: str) -> str:
    """The temporary name beside ``path`` (``.reroute-PID-N.tmp``, within NAME_MAX for any
    name), after removing those of killed writers in that folder."""
    folder = os.path.dirname(os.path.abspath(path))
    _remove_leftovers(folder)
    return os.path.join(folder, f".reroute-{os.getpid()}-{int.from_bytes(os.urandom(4), 'little')}.tmp")


def write_trace(path: str, t: TraceDict, overwrite: bool = False) -> None:
    """Writes `t` to `path` atomically: a temporary ``.reroute-PID-N.tmp`` in the same folder,
    read back with `read_trace` (so a trace the readers would refuse is never left), then
    renamed into place. An existing file is replaced only with ``overwrite``; a folder or
    special file never. Strings are variable-length UTF-8; h5py's default ``libver`` keeps
    HDF5 1.10 able to read the file."""
    if os.path.lexists(path) and (not overwrite or not os.path.isfile(path)):
        raise FileExistsError(f"{path}: exists; pass overwrite=True" if os.path.isfile(path) else f"{path}: exists and is not a regular file")
    tmp = _new_temporary(path)
    try:
        with h5py.File(tmp, "w", track_order=False) as f:
            for k in S.ROOT_ATTRS + [k for k in S.OPTIONAL_ROOT_ATTRS if k in t["attrs"]]:
                v = t["attrs"][k]
                f.attrs[k] = np.int64(v) if isinstance(v, (int, np.integer)) else str(v)

            def put(name: str, value: Any, compare: str) -> None:
                f.create_dataset(name, data=value).attrs["compare"] = compare

            for k, v in t["inputs"].items():
                put(f"inputs/{k}", v, "bitwise")
            f.require_group("llm")
            for k, v in t.get("llm", {}).items():
                put(f"llm/{k}", np.asarray(v, dtype=np.int64), "exact")
            types = {"hidden_states": np.float32, "logits": np.float32, "processed": np.uint8}
            for k, v in t["prefill"].items():
                if k != "decisions":
                    put(f"prefill/{k}", np.asarray(v, dtype=types.get(k, np.int64)), S.COMPARE[f"prefill/{k}"])
            f.require_group("prefill/decisions")
            for i, d in enumerate(t["prefill"]["decisions"]):
                g = f.create_group(f"prefill/decisions/{i:02d}")
                g.attrs["layer"] = np.int64(d["layer"])
                g.attrs["budget"] = np.int64(d["budget"])
                for k, kind in S.DECISION_COMPARE.items():
                    g.create_dataset(k, data=np.asarray(d[k], dtype=np.float64 if k == "scores" else np.int64)).attrs["compare"] = kind
            for k, v in t["decode"].items():
                put(f"decode/{k}", np.asarray(v, dtype=np.float32 if k == "step_logits" else np.int64), S.COMPARE[f"decode/{k}"])
            for k, v in t.get("budget", {}).items():
                put(f"budget/{k}", np.asarray(v, dtype=np.float64 if k in S.BUDGET_FLOAT else np.int64), "exact")
            for k, v in t.get("budget_attrs", {}).items():
                f["budget"].attrs[k] = str(v) if isinstance(v, str) else (np.float64(v) if k == "avg_visual_tokens" else np.int64(v))
        try:
            read_trace(tmp)
        except TraceError as e:
            raise TraceError(path, e.object, e.kind, e.detail + " (not written)") from None
        if not overwrite and os.path.lexists(path):
            raise FileExistsError(f"{path}: exists; pass overwrite=True")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
