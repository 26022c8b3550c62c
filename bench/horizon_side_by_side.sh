#!/usr/bin/env bash
# Multi-step forecasts side by side (issue 17): forecastd and the PyTorch reference
# (bench/torch_horizon.py) under RP-1's walk-forward protocol with the same direct H-output head
# and seasonal skip, per step, with persistence and the seasonal naive on the same targets.
#
# Usage: bench/horizon_side_by_side.sh CSV TIME_COLUMN VALUE_COLUMN H
#        (build first: swift build -c release; PY=python with torch, see shared/anchors/README.md)
set -euo pipefail
cd "$(dirname "$0")/.."
csv=$1 tcol=$2 vcol=$3 H=$4
PY=${PY:-../.venv-torch/bin/python}
out=$(mktemp -d)
.build/release/forecastd replay --csv "$csv" --time-column "$tcol" --value-column "$vcol" --rp1 \
    --horizon "$H" --seasonal on --quiet --report "$out/ours.json" >/dev/null
"$PY" bench/torch_horizon.py "$csv" "$vcol" --time-column "$tcol" --horizon "$H" --out "$out/torch.json" >/dev/null 2>&1
python3 - "$out" "$H" <<'PY'
import json, sys
out, H = sys.argv[1], int(sys.argv[2])
ours = json.load(open(f"{out}/ours.json"))["horizons"]
ref = json.load(open(f"{out}/torch.json"))["steps"]
print("step | forecastd MASE | PyTorch MASE | ratio | persistence | seasonal naive")
for k in sorted({1, 2, max(1, H // 4), max(1, H // 2), H}):
    o, r = ours[k - 1], ref[k - 1]
    sn = r["seasonal_naive"]["mase"] if r["seasonal_naive"] else float("nan")
    print(f"{k} | {o['mase']:.4f} | {r['model']['mase']:.4f} | {o['mase'] / r['model']['mase']:.3f} | "
          f"{r['persistence']['mase']:.4f} | {sn:.4f}")
PY
rm -rf "$out"
