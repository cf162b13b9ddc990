"""The recorder: a trace of a run of an unmodified transformers model, whatever pruning or
routing code drives it (SPEC.md §9.5).

    from reroute_trace import Recorder, read_case, model_inputs, write_trace
    case = read_case("golden/traces/tiny-llama/dense.h5")
    with Recorder(model, case, policy=open("fastv.json").read(), model_name="tiny-llama") as rec:
        out = model(**model_inputs(model, case), use_cache=True)   # the prefill
        ...                                                         # greedy decode steps, one model call each
        rec.decision(layer=3, candidates=c, kept=k, scores=s)       # from the pruning code, at any time
    write_trace("mine.h5", rec.trace())

Hooks on the text model's decoder layers record each layer's input rows, output rows and
``position_ids``; a hook on the model records the last-position logits and the cache's
per-layer lengths of each call. The first call is the prefill, each later one a decode step.
Nothing is changed: the hooks read tensors and copy them (a recorded run's logits are bit
for bit an unrecorded run's).

The rows a layer receives are mapped to sequence indices by the reported decisions: before
the first decision every token; from a decision's layer on, the text tokens and that
decision's kept visual tokens, in sequence order (as FastV, PyramidDrop and Reroute
implementations keep them); a layer whose row count disagrees is an error naming the layer.
Rows a layer did not process keep their last state. A reducer at the LLM input (a decision
at layer 0) calls the model with the kept rows only: the others' state entering layer 0 is
the case's, embedded as ``model_inputs`` embeds it. Positions are the ``position_ids`` a
layer was called with when it has the case's axes (LLaMA, Qwen2), else the ``position_ids``
the model was called with when they cover the layer's rows (Qwen2.5-VL's layers receive only
text positions), else SPEC.md §8.6's layout of the policy's rule (`layout_positions`).
"""

from __future__ import annotations

import json
import math
from functools import partial
from typing import Any

import numpy as np

from . import __version__
from .cases import case_span, model_inputs
from .trace import Decision, TraceDict

#: The architectures the recorder attaches to, as transformers ships them.
SUPPORTED = ("LlamaForCausalLM", "Qwen2ForCausalLM", "LlavaForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration")


class RecorderError(ValueError):
    """The model is not supported, or the run does not fit the case and the decisions."""


def text_model(model: Any) -> Any:
    """The decoder stack (``model.model``, or its ``language_model`` for VLMs)."""
    inner = model.model
    return getattr(inner, "language_model", inner)


def _json(v: Any) -> str:
    """Compact JSON with sorted keys, integral doubles without ``.0`` (Foundation's style)."""
    def norm(x: Any) -> Any:
        if isinstance(x, float) and x.is_integer() and abs(x) < 2 ** 53:
            return int(x)
        if isinstance(x, dict):
            return {k: norm(x[k]) for k in x}
        if isinstance(x, list):
            return [norm(y) for y in x]
        return x
    return json.dumps(norm(v), sort_keys=True, separators=(",", ":"))


def model_config_json(model: Any) -> str:
    """``/@model_config`` of a transformers model: its text configuration in the suite's terms."""
    name = type(model).__name__
    if name not in SUPPORTED:
        raise RecorderError(f"{name} is not supported; the recorder attaches to {', '.join(SUPPORTED)}")
    c = model.config.get_text_config()
    family = {"llama": "llama", "qwen2": "qwen2", "qwen2_5_vl_text": "qwen2", "qwen2_5_vl": "qwen2"}.get(c.model_type)
    if family is None:
        raise RecorderError(f"{name}: text model type '{c.model_type}' is not supported (llama, qwen2)")
    rope = dict(getattr(c, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        raise RecorderError(f"{name}: RoPE type '{rope.get('rope_type')}' is not supported (SPEC.md §2: default RoPE only)")
    hd = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    tie = getattr(c, "tie_word_embeddings", None)
    if tie is None:
        tie = model.config.tie_word_embeddings
    cfg: dict[str, Any] = {
        "attentionBias": True if family == "qwen2" else bool(getattr(c, "attention_bias", False)),
        "family": family, "headDim": int(hd), "heads": int(c.num_attention_heads), "hiddenSize": int(c.hidden_size),
        "intermediateSize": int(c.intermediate_size), "kvHeads": int(c.num_key_value_heads), "layers": int(c.num_hidden_layers),
        "maxPositionEmbeddings": int(c.max_position_embeddings), "rmsNormEps": float(c.rms_norm_eps),
        "ropeTheta": float(rope.get("rope_theta", getattr(c, "rope_theta", 10000.0))), "tieWordEmbeddings": bool(tie),
        "vocabSize": int(c.vocab_size)}
    if "mrope_section" in rope:
        cfg["mropeSection"] = [int(x) for x in rope["mrope_section"]]
    return _json(cfg)


def policy_json(policy: str | dict[str, Any]) -> str:
    """A policy for ``/@policy``: a policy file's text or path (``reroute policy show NAME
    --json > NAME.json``), or a dict of either JSON form."""
    if isinstance(policy, dict):
        return _json(policy)
    text = policy
    if not policy.lstrip().startswith("{"):
        with open(policy, encoding="utf-8") as f:
            text = f.read()
    json.loads(text)
    return text


#: The position rules of SPEC.md §8.6, by their policy-file names.
POSITION_RULES = ("original", "reindexed", "text_after_grid_width", "text_after_kept_max")


def layout_positions(rule: str, active: list[int], positions: np.ndarray, span: range, cols: int) -> tuple[np.ndarray, int]:
    """SPEC.md §8.6's positions ``[A, len(active)]`` of the processed sequence indices
    ``active`` (ascending) after a decision, and the first decode position, for the case's
    ``positions [A, S]``, its visual ``span`` and its grid's ``cols`` (the suite's
    ``PositionPolicy.layout``)."""
    positions = np.asarray(positions, dtype=np.int64)
    a = np.asarray(active, dtype=np.int64)
    if rule == "original":
        return positions[:, a], int(positions.max()) + 1
    if rule == "reindexed":
        return np.arange(len(a), dtype=np.int64)[None].repeat(positions.shape[0], 0), len(a)
    if rule not in POSITION_RULES:
        raise RecorderError(f"positions '{rule}' is not a position rule ({', '.join(POSITION_RULES)})")
    # One past the token before the span, or where the grid's ids start when none is before it.
    base = int(positions[0, span.start - 1]) + 1 if span.start > 0 else int(positions[:, span.start:span.stop].min())
    if rule == "text_after_grid_width":
        start = base + cols
    else:
        visual = a[(a >= span.start) & (a < span.stop)]
        start = int(positions[:, visual].max()) + 1 if visual.size else base
    after = np.maximum(a - span.stop, 0)
    out = np.where(a < span.stop, positions[:, a], start + after)
    return out, int(out.max()) + 1


class Recorder:
    """Records one prefill and its greedy decode steps of ``model`` on ``case`` into a trace.

    ``case``: the case's ``/inputs`` arrays (`read_case`); ``policy``: what the run
    implements (`policy_json`); ``model_name``, ``case_name``: the trace's ``/@model`` and
    ``/@case`` (``reroute diff`` finds the model folder by name). The budget is left to the
    suite (the trace has no ``/budget``; ``reroute`` computes it from the processed sets).
    """

    def __init__(self, model: Any, case: dict[str, np.ndarray], policy: str | dict[str, Any], *, model_name: str,
                 case_name: str = "case", decoder: str = "torch", producer: str = "reroute-trace recorder",
                 producer_commit: str = "unknown", seed: int = 0) -> None:
        self.config_json = model_config_json(model)  # refuses an unsupported model before anything runs
        self.model = model
        self.policy = policy_json(policy)
        self.case = {k: np.asarray(v) for k, v in case.items()}
        self.P, self.N, self.S = case_span(self.case)
        self.positions = np.asarray(self.case["positions"], dtype=np.int64)
        self.layers = list(text_model(model).layers)
        self.L = len(self.layers)
        self.attrs = {"model": model_name, "case": case_name, "decoder": decoder, "producer": producer,
                      "producer_commit": producer_commit, "seed": int(seed)}
        self.calls: list[dict[str, Any]] = []
        self.decisions: list[Decision] = []
        self._hooks: list[Any] = []

    @property
    def visual_span(self) -> range:
        """Sequence indices of the visual tokens; decisions give indices into this span."""
        return range(self.P, self.P + self.N)

    # -- hooks ---------------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        for l, layer in enumerate(self.layers):
            self._hooks.append(layer.register_forward_pre_hook(partial(self._layer_input, l), with_kwargs=True))
            self._hooks.append(layer.register_forward_hook(partial(self._layer_output, l), with_kwargs=True))
        self._hooks.append(self.model.register_forward_pre_hook(self._call_start, with_kwargs=True))
        self._hooks.append(self.model.register_forward_hook(self._call_end, with_kwargs=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def _call_start(self, module: Any, args: Any, kwargs: Any) -> None:
        self.calls.append({"inputs": {}, "outputs": {}, "positions": {}, "model_positions": self._axes(kwargs.get("position_ids"))})

    def _axes(self, pos: Any) -> np.ndarray | None:
        """``position_ids`` as ``[A, n]`` when they have the case's axes (the last three of
        Qwen2.5-VL's ``[4, 1, n]``), else None."""
        if pos is None:
            return None
        p = pos.detach().cpu().numpy().astype(np.int64)
        p = p.reshape(1, -1) if p.ndim == 2 else p[-3:].reshape(3, -1) if p.ndim == 3 else None
        return p if p is not None and p.shape[0] == self.positions.shape[0] else None

    def _rows(self, h: Any, where: str) -> np.ndarray:
        if h.ndim != 3 or h.shape[0] != 1:
            raise RecorderError(f"{where}: hidden states of shape {tuple(h.shape)}; the recorder records batch size 1")
        return h[0].detach().float().cpu().numpy().copy()

    def _layer_input(self, l: int, module: Any, args: Any, kwargs: Any) -> None:
        if not self.calls:
            raise RecorderError(f"layer {l} ran outside a call of the model; run the model itself (model(...))")
        call = self.calls[-1]
        h = args[0] if args else kwargs["hidden_states"]
        call["inputs"][l] = self._rows(h, f"layer {l}")
        p = self._axes(kwargs.get("position_ids"))
        if p is not None:
            call["positions"][l] = p

    def _layer_output(self, l: int, module: Any, args: Any, kwargs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        self.calls[-1]["outputs"][l] = self._rows(out, f"layer {l}")

    def _call_end(self, module: Any, args: Any, kwargs: Any, output: Any) -> None:
        call = self.calls[-1]
        call["logits"] = output.logits[0, -1].detach().float().cpu().numpy().copy()
        cache = getattr(output, "cache", None) or getattr(output, "past_key_values", None)
        call["kv"] = [int(cache.get_seq_length(l)) for l in range(self.L)] if cache is not None else None

    # -- decisions -----------------------------------------------------------------------
    def decision(self, layer: int, candidates: Any, kept: Any, scores: Any, budget: int | None = None) -> None:
        """A routing decision at ``layer``: ``candidates`` (visual-span indices, one per
        scored token), their ``scores`` and the ``kept`` subset, which the layers from
        ``layer`` until the next decision process; the rest are deferred (or deleted)."""
        c = [int(x) for x in np.asarray(candidates).reshape(-1)]
        k = sorted(int(x) for x in np.asarray(kept).reshape(-1))
        s = [float(x) for x in np.asarray(scores, dtype=np.float64).reshape(-1)]
        if len(s) != len(c):
            raise RecorderError(f"decision at layer {layer}: {len(s)} scores for {len(c)} candidates")
        if not set(k) <= set(c):
            raise RecorderError(f"decision at layer {layer}: kept tokens {sorted(set(k) - set(c))[:8]} are not candidates")
        self.decisions.append({"layer": int(layer), "budget": len(k) if budget is None else int(budget),
                               "candidates": np.asarray(c, dtype=np.int64), "kept": np.asarray(k, dtype=np.int64),
                               "deferred": np.asarray(sorted(set(c) - set(k)), dtype=np.int64),
                               "scores": np.asarray(s, dtype=np.float64)})

    # -- the trace -----------------------------------------------------------------------
    def processed(self) -> list[list[int]]:
        """Sequence indices each layer processed, from the decisions (see the module doc)."""
        by_layer = {d["layer"]: d for d in self.decisions}
        text = list(range(self.P)) + list(range(self.P + self.N, self.S))
        visual = list(range(self.N))
        out = []
        for l in range(self.L):
            if l in by_layer:
                visual = [int(j) for j in by_layer[l]["kept"]]
            out.append(sorted(text + [self.P + j for j in visual]))
        return out

    def trace(self) -> TraceDict:
        """The trace of the recorded run (no ``/budget``: the suite computes it)."""
        if not self.calls:
            raise RecorderError("nothing was recorded: run the model inside `with Recorder(...)`")
        steps = int(self.case["decode_steps"])
        prefill = self.calls[0]
        if len(self.calls) < steps:
            raise RecorderError(f"{len(self.calls) - 1} decode step(s) were run; the case asks for {steps} tokens "
                                f"(the prefill and {max(0, steps - 1)} steps)")
        processed = self.processed()
        A = self.positions.shape[0]
        rule = json.loads(self.policy).get("positions", "original")
        span = self.visual_span
        cols = int(np.asarray(self.case["grid"]).reshape(-1)[-1])
        first_decision = min((d["layer"] for d in self.decisions), default=self.L)
        # Not observed (layers called without position_ids of the case's axes, as Qwen2.5-VL's
        # are): the positions the model was called with when they cover the layer's rows, else
        # SPEC.md §8.6's layout of the policy's rule.
        def layout(l: int) -> tuple[np.ndarray, int]:
            if l < first_decision:
                return self.positions[:, processed[l]], int(self.positions.max()) + 1
            return layout_positions(rule, processed[l], self.positions, span, cols)
        state = None
        if first_decision == 0:
            # A reducer at the LLM input hands layer 0 only the kept rows: the whole sequence's
            # embeddings come from the case, as the model embeds it, so that every row has a state.
            import torch

            with torch.no_grad():
                state = model_inputs(self.model, self.case)["inputs_embeds"][0].float().cpu().numpy().copy()
        mask = np.zeros((self.L, self.S), dtype=np.uint8)
        positions = np.full((self.L, A, self.S), -1, dtype=np.int64)
        snapshots = []
        for l, rows in enumerate(processed):
            if l not in prefill["inputs"]:
                raise RecorderError(f"layer {l} did not run in the prefill")
            x, y = prefill["inputs"][l], prefill["outputs"][l]
            if state is None:
                if x.shape[0] != self.S:
                    raise RecorderError(f"layer 0 received {x.shape[0]} rows; the case has {self.S} tokens")
                state = x.copy()
            if x.shape[0] != len(rows):
                raise RecorderError(f"layer {l} received {x.shape[0]} rows; the decisions reported give {len(rows)} "
                                    f"({self.S - self.N} text + {len(rows) - self.S + self.N} visual)")
            state[rows] = x
            snapshots.append(state.copy())
            state[rows] = y
            mask[l, rows] = 1
            used = prefill["positions"].get(l)
            if used is None and prefill["model_positions"] is not None and prefill["model_positions"].shape[1] == len(rows):
                used = prefill["model_positions"]
            positions[l][:, rows] = used if used is not None else layout(l)[0]
        snapshots.append(state.copy())
        hidden = np.stack(snapshots).astype(np.float32)
        logits = [prefill["logits"]] + [self.calls[t]["logits"] for t in range(1, steps)]
        tokens = [int(np.argmax(z)) for z in logits[:steps]]  # first maximum on ties, as torch.argmax
        first = self.calls[1] if steps > 1 and len(self.calls) > 1 else None
        # Not observed (one token only, or layers called without position_ids): the first decode
        # step's model positions, else SPEC.md §8.6's decode position of the policy's rule.
        def decode_position(l: int) -> int:
            if first and l in first["positions"]:
                return int(first["positions"][l][0, 0])
            if first and first["model_positions"] is not None:
                return int(first["model_positions"][0, 0])
            return layout(l)[1]
        decode_positions = [decode_position(l) for l in range(self.L)]
        if prefill["kv"] is None:
            raise RecorderError("the model returned no cache; run it with use_cache=True")
        last = self.calls[steps - 1] if steps > 1 else prefill
        dtype = str(next(self.model.parameters()).dtype).replace("torch.", "")
        V = prefill["logits"].shape[0]
        return {
            "attrs": {"schema": "reroute.trace", "schema_version": 1, "producer": self.attrs["producer"],
                      "producer_version": __version__, "producer_commit": self.attrs["producer_commit"],
                      "decoder": self.attrs["decoder"], "dtype": dtype, "mode": "free", "model": self.attrs["model"],
                      "case": self.attrs["case"], "seed": self.attrs["seed"], "model_config": self.config_json,
                      "policy": self.policy},
            "inputs": self.case,
            "llm": {},
            "prefill": {"hidden_states": hidden, "processed": mask, "positions": positions[:, 0] if A == 1 else positions,
                        "decode_positions": np.asarray(decode_positions, dtype=np.int64),
                        "kv_length": np.asarray(prefill["kv"], dtype=np.int64), "logits": prefill["logits"].astype(np.float32),
                        "decisions": sorted(self.decisions, key=lambda d: d["layer"])},
            "decode": {"tokens": np.asarray(tokens, dtype=np.int64),
                       "step_logits": np.stack(logits[:steps]).astype(np.float32) if steps else np.zeros((0, V), np.float32),
                       "kv_length": np.asarray(last["kv"], dtype=np.int64)},
        }


def greedy_decode(model: Any, case: dict[str, np.ndarray], first: Any) -> list[int]:
    """The case's greedy decode steps after a prefill whose output is ``first``: step ``t``
    feeds the token of step ``t − 1`` at position ``max(prefill positions) + t`` on every
    axis (SPEC.md §4), one model call each, through the prefill's cache."""
    import torch

    steps = int(np.asarray(case["decode_steps"]))
    axes = np.asarray(case["positions"]).shape[0]
    top = int(np.asarray(case["positions"]).max()) + 1
    cache = getattr(first, "cache", None) or getattr(first, "past_key_values", None)
    tokens = [int(torch.argmax(first.logits[0, -1]))] if steps else []
    emb = text_model(model).embed_tokens
    for t in range(1, steps):
        pos = torch.tensor([[top + t - 1]])
        out = model(inputs_embeds=emb(torch.tensor([[tokens[-1]]])), position_ids=pos if axes == 1 else pos[None].expand(3, 1, 1),
                    cache=cache, use_cache=True)
        cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
        tokens.append(int(torch.argmax(out.logits[0, -1])))
    return tokens
