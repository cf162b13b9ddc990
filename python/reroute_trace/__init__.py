"""reroute-trace: read, write and record Reroute traces (``reroute.trace`` v1, SPEC.md §9).

    from reroute_trace import read_trace, write_trace
    t = read_trace("golden/traces/tiny-llama/reroute-fastv-192.h5")
    t["prefill"]["hidden_states"].shape        # (L+1, S, d) float32
    write_trace("mine.h5", t)                  # atomic; refuses to overwrite unless overwrite=True

Every file the reader refuses is refused by ``reroute`` with the same message, and the
writer never leaves a file the readers refuse.
"""

__version__ = "0.1.0"

from .errors import TraceError
from .schema import SCHEMA, SCHEMA_VERSION
from .cases import build_case, case_span, model_inputs, read_case, write_case
from .trace import Decision, TraceDict, read_trace, validate_config, validate_policy, write_trace

__all__ = ["SCHEMA", "SCHEMA_VERSION", "Decision", "TraceDict", "TraceError", "build_case", "write_case", "case_span", "model_inputs", "read_case",
           "read_trace", "validate_config", "validate_policy", "write_trace", "Recorder", "RecorderError", "greedy_decode"]


def __getattr__(name: str):  # the recorder needs torch (the [torch] extra); imported on first use
    if name in ("Recorder", "RecorderError", "greedy_decode"):
        from . import recorder
        return getattr(recorder, name)
    raise AttributeError(name)
