"""The trace schema, ``reroute.trace`` version 1 (SPEC.md §9.1), and the input limits both
readers apply (SPEC.md §12). One table each; the reader, the writer and the recorder use them."""

from __future__ import annotations

SCHEMA = "reroute.trace"
SCHEMA_VERSION = 1
#: Policy files (SPEC.md §8.14); a trace's /@policy may hold one.
POLICY_SCHEMA = "reroute.policy"

#: How each dataset is compared (its ``compare`` attribute).
COMPARE = {
    "prefill/hidden_states": "float", "prefill/hidden_state_rows": "exact", "prefill/processed": "set", "prefill/positions": "exact",
    "prefill/decode_positions": "exact", "prefill/kv_length": "exact", "prefill/logits": "float",
    "decode/tokens": "exact", "decode/step_logits": "float", "decode/kv_length": "exact",
    "llm/visual_grid_indices": "exact",
}
DECISION_COMPARE = {"candidates": "set", "kept": "set", "deferred": "set", "scores": "float"}
ROOT_ATTRS = ["schema", "schema_version", "producer", "producer_version", "producer_commit", "decoder",
              "mode", "model", "case", "seed", "model_config", "policy"]
#: Optional root attributes: ``dtype``, the producer's arithmetic (chooses the comparison preset);
#: ``isa``, the vector path its kernels ran (informational).
OPTIONAL_ROOT_ATTRS = ["dtype", "isa"]
DTYPES = ["float64", "float32", "bfloat16", "float16"]
MODES = ["free", "lockstep"]
BUDGET_INT = ["text_tokens", "visual_tokens", "kv_entries", "kv_bytes"]
BUDGET_FLOAT = ["flops", "flops_fastv_paper", "flops_pdrop_paper"]
BUDGET_ATTRS = ["avg_visual_tokens", "image_tokens", "llm_visual_tokens", "bytes_per_element", "matching"]

# Input limits (SPEC.md §12), as the Swift reader has them.
MAX_ELEMENTS = 1 << 27            # any HDF5 dataset
MAX_SEQUENCE_LENGTH = 1 << 16     # prefix + visual + suffix, each token list
MAX_VISUAL_ELEMENTS = 1 << 28     # a case's visual matrix
MAX_GRID_SIDE = 4096
MAX_DECODE_STEPS = 1 << 16
MAX_POSITION_ID = 1 << 30
MAX_DEPTH = 1024                  # a policy's reference depth
MAX_KEEP_COUNT = 1 << 16
MAX_PARAMETERS = float(1 << 37)
CONFIG_CAPS = [("hidden_size", "hiddenSize", 1 << 16), ("num_hidden_layers", "layers", 1024),
               ("num_attention_heads", "heads", 1024), ("num_key_value_heads", "kvHeads", 1024),
               ("intermediate_size", "intermediateSize", 1 << 18), ("vocab_size", "vocabSize", 1 << 22),
               ("head_dim", "headDim", 4096)]
