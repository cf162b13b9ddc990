"""``reroute-trace check FILE…`` and ``reroute-trace copy IN OUT`` (also ``python -m reroute_trace``).

Exit codes as ``reroute``'s: 0 all valid (or written), 1 some file invalid, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import TraceError
from .trace import read_trace, write_trace


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="reroute-trace", description="Validate and copy Reroute traces (reroute.trace v1).")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser("check", help="validate files against the schema (the Swift reader's rules); exit 1 if any is invalid")
    c.add_argument("files", nargs="+")
    p = sub.add_parser("copy", help="read IN and write it again as OUT (atomic; never replaces OUT without --overwrite)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--overwrite", action="store_true")
    a = ap.parse_args(argv)
    if a.command == "check":
        bad = 0
        for f in a.files:
            try:
                t = read_trace(f)
                print(f"ok    {f}: {json.loads(t['attrs']['policy'])['name']}, {len(t['prefill']['decisions'])} decision(s)")
            except TraceError as e:
                print(f"ERROR {e}")
                bad += 1
        print(f"{len(a.files) - bad} passed, {bad} failed")
        return 1 if bad else 0
    try:
        write_trace(a.output, read_trace(a.input), overwrite=a.overwrite)
    except (TraceError, FileExistsError, OSError) as e:
        print(f"reroute-trace: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {a.output}")
    return 0
