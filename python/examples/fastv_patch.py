"""FastV as the Reroute release runs its baseline, written as research code writes it: a
replacement for the forward of a transformers LLaMA / Qwen2 text model that knows nothing of
the reroute suite. At layer K it scores the visual tokens with layer K's own input norm,
q/k projections and RoPE over the whole sequence (softmax over all tokens, head mean, last
query row), keeps the top max(1, floor(N * ratio)) and drops the rest for every later layer;
positions stay the original ones. Each decision is appended to `text_model.routing_log`.

    patch(model.model.language_model, K=1, ratio=0.01916, visual_start=P, visual_len=N)

`bugs` switches on a deliberate mistake (tests: the suite must catch each):
    "previous_layer_scores"  score with layer K-1's attention instead of layer K's own input
    "span_off_by_one"        the visual span starts one token late
    "reindexed_positions"    positions 0..n-1 of the kept sequence instead of the original ones
"""

from __future__ import annotations

import math
import sys
import types

import torch
from transformers import DynamicCache
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.llama.modeling_llama import repeat_kv


def attention_last_row(layer, rotary, h, pos):
    """Softmax of the last query row over all rows of `h` ([n, d]) at `layer`: its input norm,
    q/k projections and RoPE; head mean. float32 softmax, as eager attention."""
    attn = layer.self_attn
    rope = sys.modules[type(attn).__module__].apply_rotary_pos_emb
    x = layer.input_layernorm(h[None])
    n = x.shape[1]
    q = attn.q_proj(x[:, -1:]).view(1, 1, -1, attn.head_dim).transpose(1, 2)
    k = attn.k_proj(x).view(1, n, -1, attn.head_dim).transpose(1, 2)
    cos, sin = rotary(x, pos[None])
    q, _ = rope(q, q, cos[:, -1:], sin[:, -1:])
    _, k = rope(k, k, cos, sin)
    k = repeat_kv(k, attn.num_key_value_groups)
    w = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * attn.scaling, dim=-1, dtype=torch.float32)
    return w[0, :, 0, :].mean(dim=0)  # [n]


def decode_step(self, h, pos, cache):
    """A decode step (one token): every layer, attending to its whole cache."""
    x = h[None]
    pe = self.rotary_emb(x, pos[None])
    for layer in self.layers:
        x = layer(x, attention_mask=None, position_ids=pos[None], cache=cache, use_cache=True, position_embeddings=pe)
        x = x[0] if isinstance(x, tuple) else x
    return BaseModelOutputWithPast(last_hidden_state=self.norm(x), cache=cache)


def causal_mask(n, dtype):
    return torch.full((n, n), torch.finfo(dtype).min, dtype=dtype).triu(1)[None, None]


def run_layer(self, layer, h, active, positions, cache):
    """`layer` on the rows `active` of the full stream `h` at `positions`; the other rows keep their state."""
    x = h[active][None]
    out = layer(x, attention_mask=causal_mask(len(active), h.dtype), position_ids=positions[None], cache=cache, use_cache=True,
                position_embeddings=self.rotary_emb(x, positions[None]))
    out = out[0] if isinstance(out, tuple) else out
    h = h.clone()
    h[active] = out[0]
    return h


def patch(text_model, K, ratio, visual_start, visual_len, bugs=()):
    """Replaces `text_model.forward` with FastV's (prefill: seq_len > 1; decode steps run dense)."""
    text_model.routing_log = []
    start = visual_start + (1 if "span_off_by_one" in bugs else 0)

    def forward(self, inputs_embeds=None, position_ids=None, cache=None, use_cache=True, attention_mask=None, **kwargs):
        if cache is None and use_cache:
            cache = DynamicCache(config=self.config)
        h = inputs_embeds[0]
        pos = position_ids.reshape(-1, h.shape[0])[-1]  # [n] (1-D RoPE)
        S = h.shape[0]
        if S == 1:
            return decode_step(self, h, pos, cache)
        active = torch.arange(S)
        prev_input = None
        for i, layer in enumerate(self.layers):
            if i == K:
                if "previous_layer_scores" in bugs:
                    scores_all = attention_last_row(self.layers[i - 1], self.rotary_emb, prev_input, pos[active])
                else:
                    scores_all = attention_last_row(layer, self.rotary_emb, h[active], pos[active])
                visual = torch.arange(start, start + visual_len)
                column = {int(t): c for c, t in enumerate(active)}
                scores = torch.stack([scores_all[column[int(t)]] for t in visual]).double()
                keep = max(1, math.floor(visual_len * ratio))
                top = torch.topk(scores, keep).indices.sort().values
                self.routing_log.append(dict(layer=i, candidates=list(range(visual_len)), kept=top.tolist(), scores=scores.tolist()))
                kept_tokens = visual[top]
                active = torch.cat([torch.arange(start), kept_tokens, torch.arange(start + visual_len, S)])
            p = pos[active] if "reindexed_positions" not in bugs or i < K else torch.arange(len(active))
            prev_input = h[active]
            h = run_layer(self, layer, h, active, p, cache)
        return BaseModelOutputWithPast(last_hidden_state=self.norm(h[None]), cache=cache)

    text_model.forward = types.MethodType(forward, text_model)
