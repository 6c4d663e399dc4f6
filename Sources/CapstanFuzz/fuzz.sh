#!/usr/bin/env bash
# Runs every fuzz target under libFuzzer, RUNS executions each (default 1,000,000), and prints
# executions, time and crashes per target. Benchmark-style: run it by hand, not in CI.
#   Sources/CapstanFuzz/fuzz.sh [RUNS] [TARGET…]
# A crashing input is kept as .build-fuzz/crashes/<target>/crash-*; replay it with
#   CAPSTAN_FUZZ_TARGET=<target> .build/debug/capstan-fuzz <file>
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-1000000}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(manifest-yaml manifest-json quantity label-selector config runtime-record)

# The whole graph with coverage instrumentation; -D FUZZING hands main to libFuzzer's driver.
# lld links it (gold fails on the instrumented objects).
swift build -c release --product capstan-fuzz --scratch-path .build-fuzz \
    -Xswiftc -sanitize=fuzzer -Xswiftc -D -Xswiftc FUZZING -Xswiftc -parse-as-library -Xswiftc -use-ld=lld >/dev/null
fuzzer=.build-fuzz/release/capstan-fuzz
swift build --product capstan-fuzz >/dev/null
.build/debug/capstan-fuzz seeds .build-fuzz/seeds

printf '%-16s %12s %10s %8s\n' TARGET EXECUTIONS SECONDS CRASHES
total_crashes=0
for target in "${targets[@]}"; do
    corpus=.build-fuzz/corpus/$target; crashes=.build-fuzz/crashes/$target
    mkdir -p "$corpus" "$crashes"
    cp -n .build-fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true
    start=$(date +%s)
    log=.build-fuzz/$target.log
    status=0
    # libFuzzer, not Swift's backtracer, must see a crash, to save the input that caused it.
    SWIFT_BACKTRACE=enable=no CAPSTAN_FUZZ_TARGET=$target "$fuzzer" -runs="$runs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$crashes/" "$corpus" >"$log" 2>&1 || status=$?
    seconds=$(( $(date +%s) - start ))
    executions=$(grep -o 'Done [0-9]* runs' "$log" | grep -o '[0-9]*' || echo "?")
    count=$(ls "$crashes" | wc -l)
    # A run that died without leaving an input still counts as a crash.
    if [ "$status" -ne 0 ] && [ "$count" -eq 0 ]; then count=1; fi
    total_crashes=$((total_crashes + count))
    printf '%-16s %12s %10s %8s\n' "$target" "$executions" "$seconds" "$count"
done
echo "crashes: $total_crashes"
[ "$total_crashes" -eq 0 ]
