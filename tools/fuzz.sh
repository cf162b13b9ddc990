#!/usr/bin/env bash
# Build and run the libFuzzer targets (Swift's -sanitize=fuzzer) for a given time each.
#
#   tools/fuzz.sh [SECONDS] [TARGET...]      default: 600 s each for FuzzSafeTensors,
#                                            FuzzModelConfig, FuzzTraceReader, FuzzPolicyFile,
#                                            FuzzPromptCase, FuzzCommandLine
#
# Builds in .build-fuzz (.build only for `reroute` itself when missing: it prints the policy
# seeds). Seed corpora come from the shipped files
# (golden/models, golden/configs, golden/traces); the working corpus grows in
# .build-fuzz/corpus/<target>, crashes land in .build-fuzz/artifacts/<target>/. Prints one
# summary line per target (executions, coverage, corpus, crashes) and exits 1 if any crashed.
# Every crash found is to be turned into a regression test in Tests/RerouteTests/FuzzRegressionTests.swift.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(FuzzSafeTensors FuzzModelConfig FuzzTraceReader FuzzPolicyFile FuzzPromptCase FuzzCommandLine)
tools/bootstrap.sh
export REROUTE_FUZZ=1
# Let libFuzzer, not Swift's backtracer, handle traps (SIGILL), so it saves the crashing input.
export SWIFT_BACKTRACE=enable=no
root=.build-fuzz
mkdir -p "$root"
[ -x .build/debug/reroute ] || swift build --product reroute  # writes the policy seeds
status=0
for t in "${targets[@]}"; do
    echo "== building $t"
    if ! swift build --build-path "$root" --product "$t" -Xswiftc -sanitize=fuzzer > "$root/$t.build.log" 2>&1; then
        tail -n 20 "$root/$t.build.log"; exit 2
    fi
    corpus="$root/corpus/$t" seeds="$root/seeds/$t" artifacts="$root/artifacts/$t"
    mkdir -p "$corpus" "$seeds" "$artifacts"
    extra_dict=()
    case "$t" in
        FuzzSafeTensors) for f in golden/models/*/*.safetensors; do head -c 16384 "$f" > "$seeds/head-$(basename "$(dirname "$f")")-$(basename "$f")"; done ;;
        FuzzModelConfig) for f in golden/models/*/config.json golden/configs/*.json; do cp "$f" "$seeds/$(echo "$f" | tr / _)"; done ;;
        FuzzPolicyFile) for p in dense fastv reroute-fastv-64 reroute-nuwa-64 pdrop-release-64; do .build/debug/reroute policy show "$p" --json > "$seeds/$p.json"; done ;;
        FuzzCommandLine)
            # Seeds: real command lines (NUL between arguments); dictionary: every subcommand and option.
            printf 'budget\0--grid\00024x24\0--policy\0fastv' > "$seeds/budget"
            printf 'budget\0--text-tokens\00036\0--kv-bytes\0002\0--json' > "$seeds/budget-json"
            printf 'policy\0show\0reroute-fastv-64\0--json' > "$seeds/policy-show"
            printf 'inspect\0golden/models/tiny-llama' > "$seeds/inspect"
            printf 'time\0--model\0golden/models/tiny-llama\0--threads\0002\0--repeats\0003' > "$seeds/time"
            printf 'run\0--model\0golden/models/tiny-llama\0--case\0c.h5\0--out\0t.h5\0--policy\0fastv' > "$seeds/run"
            printf 'diff\0a.h5\0b.h5\0--max-reported\00010' > "$seeds/diff"
            dict="$root/FuzzCommandLine.dict"
            subcommands() { .build/debug/reroute "$@" --help | awk '/^SUBCOMMANDS:/{s=1;next} s && /^  [a-z][a-z-]* /{print $1}'; }
            words() {  # a command's options, its subcommands, and theirs
                .build/debug/reroute "$@" --help 2>/dev/null | grep -oE -- '--[a-z0-9][a-z0-9-]*' || true
                for c in $(subcommands "$@"); do echo "$c"; [ $# -ge 2 ] || words "$@" "$c"; done
            }
            { words; printf '%s\n' all 0 -1 2147483648 -9223372036854775808 9223372036854775807 4000000000x4000000000 1/2; } |
                sort -u | sed 's/.*/"&"/' > "$dict"
            extra_dict=(-dict="$dict") ;;
        FuzzTraceReader) for m in tiny-llama tiny-qwen2-vl; do cp "golden/traces/$m/dense.h5" "$seeds/$m-dense.h5"; cp "golden/traces/$m/reroute-fastv-64.h5" "$seeds/$m-reroute.h5"; done ;;
    esac
    echo "== fuzzing $t for $seconds s"
    log="$root/$t.log"
    set +e
    extra=("${extra_dict[@]}")
    "$root/debug/$t" "${extra[@]}" "$corpus" "$seeds" -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 > "$log" 2>&1
    rc=$?
    set -e
    crashes=$(find "$artifacts" -type f ! -name 'slow-unit-*' | wc -l)  # a slow unit is reported, not a finding
    # A run that ends without final stats has only its status lines.
    last=$(grep -E "^#[0-9]+" "$log" | tail -n 1 || true)
    execs=$(grep -E "stat::number_of_executed_units" "$log" | awk '{print $2}' || true)
    [ -n "$execs" ] || execs=$(printf '%s\n' "$last" | sed -E 's/^#([0-9]+).*/\1/')
    echo "$t: exit $rc, $execs executions in $seconds s; last: $last; crash/leak/timeout artifacts: $crashes"
    [ "$rc" = 0 ] && [ "$crashes" = 0 ] || status=1
done
exit $status
