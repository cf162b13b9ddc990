"""Reroute on FastV ("Reroute, Don't Remove"), written as research code writes it: a
replacement for the forward of a transformers LLaMA / Qwen2 text model that knows nothing of
the reroute suite. At each decision layer every visual token competes again: scores from
that layer's own input norm, q/k and RoPE over the text and *all* visual tokens (a deferred
token is keyed from its stale state, the last one it had), head mean, last query row; the
top max(1, floor(N * ratio)) are processed until the next decision and the others bypass
those layers unchanged (no KV entries there). Positions stay the original ones. Decisions
are appended to `text_model.routing_log`.

    patch(model.model.language_model, layers=[1, 2, 4, 6], ratio=0.01916, visual_start=P, visual_len=N)
"""

from __future__ import annotations

import math
import types

import torch
from transformers import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast

from fastv_patch import attention_last_row, decode_step, run_layer


def patch(text_model, layers, ratio, visual_start, visual_len):
    text_model.routing_log = []
    decision_layers = set(layers)

    def forward(self, inputs_embeds=None, position_ids=None, cache=None, use_cache=True, attention_mask=None, **kwargs):
        if cache is None and use_cache:
            cache = DynamicCache(config=self.config)
        h = inputs_embeds[0]
        pos = position_ids.reshape(-1, h.shape[0])[-1]
        S = h.shape[0]
        if S == 1:
            return decode_step(self, h, pos, cache)
        visual = torch.arange(visual_start, visual_start + visual_len)
        text_before, text_after = torch.arange(visual_start), torch.arange(visual_start + visual_len, S)
        everyone = torch.arange(S)
        active = everyone
        for i, layer in enumerate(self.layers):
            if i in decision_layers:
                w = attention_last_row(layer, self.rotary_emb, h, pos)  # all tokens, stale rows for the deferred
                scores = w[visual].double()
                top = torch.topk(scores, max(1, math.floor(visual_len * ratio))).indices.sort().values
                self.routing_log.append(dict(layer=i, candidates=list(range(visual_len)), kept=top.tolist(), scores=scores.tolist()))
                active = torch.cat([text_before, visual[top], text_after])
            h = run_layer(self, layer, h, active, pos[active], cache)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(h[None]), cache=cache)

    text_model.forward = types.MethodType(forward, text_model)
