#!/usr/bin/env bash
# forecastd vs PyTorch, alternating, each run started only when the CPUs are quiet
# (< 15 % busy from other processes, waiting at most 90 s, like torch_lstm_bench.py).
# Usage: bench/side_by_side.sh [rounds=5]   (build first: swift build -c release)
set -u
cd "$(dirname "$0")/.."
rounds=${1:-5}
BIN=${BIN:-.build/release/forecastd}
PY=${PY:-../.venv-torch/bin/python}   # a venv with torch (../shared/anchors/README.md)
busy() {  # fraction of CPU busy over 0.5 s
  read -r _ a b c d e f g h _ < /proc/stat; t0=$((a+b+c+d+e+f+g+h)); i0=$((d+e))
  sleep 0.5
  read -r _ a b c d e f g h _ < /proc/stat; t1=$((a+b+c+d+e+f+g+h)); i1=$((d+e))
  echo $(( 100 - 100 * (i1 - i0) / (t1 - t0 > 0 ? t1 - t0 : 1) ))
}
wait_quiet() {
  local start=$SECONDS
  while [ "$(busy)" -gt 15 ] && [ $((SECONDS - start)) -lt 90 ]; do sleep 2; done
  echo "# busy before run: $(busy)% (waited $((SECONDS - start)) s)"
}
for i in $(seq 1 "$rounds"); do
  wait_quiet; "$BIN" bench train --seconds 3 --repeats 1 --json | tail -1
  wait_quiet; "$BIN" bench infer --seconds 3 --repeats 1 --json | tail -1
done
"$PY" ../shared/anchors/torch_lstm_bench.py --threads 2 --out "${TORCH_OUT:-/tmp/torch_bench.json}" 2>/dev/null | grep -E "median|win/s"
