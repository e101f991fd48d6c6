#!/usr/bin/env bash
# Runs every benchmark of the workspace and prints one side-by-side table.
#
#   tests/bench.sh            # everything (under 5 minutes on 2 cores from a clean clone)
#   tests/bench.sh map/4k     # only cases whose name contains "map/4k" (timing and counts)
#
# Times come from criterion (`cargo bench`, default release profile with debug
# info); instruction counts from valgrind's callgrind, run twice: once
# counting everything, once without memset (the zeroing of new page tables).
# Needs: cargo, valgrind, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

filter=${1:-}
target=${CARGO_TARGET_DIR:-target}
ir_dir=$target/bench-ir
log=$target/bench-criterion.log

benches=(paging adapters)
[[ -f tests/benches/allocators.rs ]] && benches+=(allocators)
bench_args=()
for b in "${benches[@]}"; do bench_args+=(--bench "$b"); done
# allocators.rs keeps its own criterion directory and prints its own summary.
timed_args=(--bench paging --bench adapters)

for tool in valgrind python3; do
    command -v "$tool" >/dev/null || { echo "bench.sh: $tool is needed" >&2; exit 1; }
done

mkdir -p "$target"
echo "== building (${benches[*]})" >&2
cargo bench -p tests "${bench_args[@]}" --no-run --message-format=json-render-diagnostics \
    > "$target/bench-build.json"

rm -rf "$target/criterion" "$ir_dir" "$target/bench-allocators.log"
mkdir -p "$ir_dir/full" "$ir_dir/nozero"

echo "== timing with criterion (log: $log)" >&2
cargo bench -p tests "${timed_args[@]}" -- ${filter:+"$filter"} > "$log" 2>&1 \
    || { tail -n 40 "$log" >&2; exit 1; }
if [[ " ${benches[*]} " == *" allocators "* ]]; then
    cargo bench -p tests --bench allocators -- ${filter:+"$filter"} > "$target/bench-allocators.log" 2>&1 \
        || { tail -n 40 "$target/bench-allocators.log" >&2; exit 1; }
fi

python3 - "$target/bench-build.json" "${benches[@]}" > "$ir_dir/executables" <<'EOF'
import json, sys
want = set(sys.argv[2:])
for line in open(sys.argv[1]):
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] in want \
            and "bench" in msg["target"]["kind"] and msg.get("executable"):
        print(msg["target"]["name"], msg["executable"])
EOF

echo "== timing the target cases interleaved (ours, x86_64, hand-written)" >&2
paging_exe=$(awk '$1 == "paging" {print $2}' "$ir_dir/executables")
BENCH_MODE=pairs BENCH_FILTER="$filter" "$paging_exe" > "$ir_dir/pairs.txt"

echo "== counting instructions with callgrind" >&2
while read -r name exe; do
    # Only the binaries that speak the BENCH_MODE=ir protocol (support/valgrind.rs).
    [[ $name == paging || $name == adapters ]] || continue
    for run in full nozero; do
        extra=()
        [[ $run == nozero ]] && extra=(--toggle-collect='*memset*')
        BENCH_MODE=ir BENCH_FILTER="$filter" valgrind --tool=callgrind --collect-atstart=no \
            "${extra[@]}" --callgrind-out-file="$ir_dir/$run/$name.out" "$exe" \
            > "$ir_dir/$run/$name.log" 2>&1 || { tail -n 20 "$ir_dir/$run/$name.log" >&2; exit 1; }
    done
done < "$ir_dir/executables"

echo >&2
echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores;" \
    "$(rustc --version); profile: bench (release + debug info)"
python3 tests/bench_report.py "$target" "$ir_dir"
if [[ -f $target/bench-allocators.log ]]; then
    echo
    echo "Allocators (tests/benches/allocators.rs):"
    sed -n '/^per-frame cost/,$p' "$target/bench-allocators.log"
fi
