#!/usr/bin/env bash
# Runs every libFuzzer target in BUILD_DIR for SECONDS each, seeded from fuzz/corpus/<target>/.
set -euo pipefail
build=$1; secs=${2:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
shopt -s nullglob
n=0
for src in "$root"/fuzz/*.cpp; do
  name=$(basename "$src" .cpp)
  bin="$build/$name"
  [[ -x "$bin" ]] || { echo "run_fuzzers: $bin missing"; exit 1; }
  work=$(mktemp -d)
  seeds=()
  [[ -d "$root/fuzz/corpus/$name" ]] && seeds=("$root/fuzz/corpus/$name")
  echo "run_fuzzers: $name for ${secs}s"
  "$bin" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      "$work" "${seeds[@]}" 2>"$work.log" || { tail -50 "$work.log"; exit 1; }
  grep -E "stat::number_of_executed_units" "$work.log" || true
  rm -rf "$work" "$work.log"
  n=$((n+1))
done
echo "run_fuzzers: $n targets clean"
