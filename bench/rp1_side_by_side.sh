#!/usr/bin/env bash
# RP-1 on a CSV column, forecastd vs PyTorch's walk_forward.py, alternating runs, medians.
# Usage: bench/rp1_side_by_side.sh [CSV=../shared/data/ETTh1.csv] [COLUMN=OT] [TIME=date] [ROUNDS=3]
# Needs a release build (swift build -c release) and a Python with torch (PY=..., see
# ../shared/anchors/README.md). Prints one line per run and a summary table.
set -euo pipefail
cd "$(dirname "$0")/.."
csv=${1:-../shared/data/ETTh1.csv}; column=${2:-OT}; time=${3:-date}; rounds=${4:-3}
BIN=${BIN:-.build/release/forecastd}
PY=${PY:-../.venv-torch/bin/python}
out=$(mktemp -d)
for i in $(seq 1 "$rounds"); do
  "$PY" ../shared/anchors/walk_forward.py "$csv" "$column" --time-column "$time" --out-dir "$out/torch$i" >/dev/null 2>&1
  python3 -c "import json,glob; m=json.load(open(glob.glob('$out/torch$i/*_metrics.json')[0])); print('torch', m['mae'], m['mase'], m['wall_s'])"
  s=$(date +%s.%N)
  "$BIN" replay --csv "$csv" --time-column "$time" --value-column "$column" --rp1 --report "$out/fd$i.json" --quiet >/dev/null
  e=$(date +%s.%N)
  python3 -c "import json; m=json.load(open('$out/fd$i.json')); print('forecastd', m['mae'], m['mase'], $e - $s)"
done | tee "$out/runs.txt"
python3 - "$out/runs.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for who in ("torch", "forecastd"):
    r = [list(map(float, x[1:])) for x in rows if x[0] == who]
    print(f"{who:10s} runs={len(r)} MAE={statistics.median(a[0] for a in r):.4f} MASE={statistics.median(a[1] for a in r):.4f} wall_s={statistics.median(a[2] for a in r):.1f}")
t = statistics.median(float(x[3]) for x in rows if x[0] == "torch")
f = statistics.median(float(x[3]) for x in rows if x[0] == "forecastd")
print(f"wall-time ratio forecastd/torch = {f / t:.3f}")
PY
