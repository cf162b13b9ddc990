"""PyramidDrop as the Reroute release runs its baseline, written as research code writes it: a
replacement for the forward of a transformers LLaMA / Qwen2 text model that knows nothing of
the reroute suite. At each stage boundary the remaining visual tokens are scored with that
layer's own input norm, q/k and RoPE over the current (already shrunken) sequence, head mean,
last query row; the top max(1, floor(N * ratio_i)) of the original N stay, the rest are
dropped for good. Positions stay the original ones. Decisions go to `text_model.routing_log`.

    patch(model.model.language_model, layers=[1, 2, 4, 6], ratios=[0.2789, 0.0937, 0.0315, 0.0106], visual_start=P, visual_len=N)
"""

from __future__ import annotations

import math
import types

import torch
from transformers import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast

from fastv_patch import attention_last_row, decode_step, run_layer


def patch(text_model, layers, ratios, visual_start, visual_len):
    text_model.routing_log = []
    keep_at = {l: max(1, math.floor(visual_len * r)) for l, r in zip(layers, ratios)}

    def forward(self, inputs_embeds=None, position_ids=None, cache=None, use_cache=True, attention_mask=None, **kwargs):
        if cache is None and use_cache:
            cache = DynamicCache(config=self.config)
        h = inputs_embeds[0]
        pos = position_ids.reshape(-1, h.shape[0])[-1]
        S = h.shape[0]
        if S == 1:
            return decode_step(self, h, pos, cache)
        alive = list(range(visual_len))  # visual-span indices still in the sequence
        active = torch.arange(S)
        for i, layer in enumerate(self.layers):
            if i in keep_at:
                w = attention_last_row(layer, self.rotary_emb, h[active], pos[active])
                column = {int(t): c for c, t in enumerate(active)}
                scores = torch.stack([w[column[visual_start + j]] for j in alive]).double()
                top = torch.topk(scores, min(keep_at[i], len(alive))).indices.sort().values
                kept = [alive[int(t)] for t in top]
                self.routing_log.append(dict(layer=i, candidates=list(alive), kept=kept, scores=scores.tolist()))
                alive = kept
                active = torch.cat([torch.arange(visual_start), visual_start + torch.tensor(alive, dtype=torch.long),
                                    torch.arange(visual_start + visual_len, S)])
            h = run_layer(self, layer, h, active, pos[active], cache)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(h[None]), cache=cache)

    text_model.forward = types.MethodType(forward, text_model)
