#!/usr/bin/env bash
# forecastd vs PyTorch (shared/anchors/torch_lstm_bench.py), alternating round by round so both
# see the same machine conditions; each run starts only when the CPUs are quiet (< 15 % busy
# from other processes, waiting at most 90 s, as the PyTorch script does before its repeats).
# Prints every run and a table of medians and ratios.
# Usage: bench/side_by_side.sh [rounds=5]   (build first: swift build -c release; PY=python with torch)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}
BIN=${BIN:-.build/release/forecastd}
PY=${PY:-../.venv-torch/bin/python}   # a venv with torch (../shared/anchors/README.md)
out=$(mktemp -d)
busy() {  # percent of CPU busy over 0.5 s
  read -r _ a b c d e f g h _ < /proc/stat; t0=$((a+b+c+d+e+f+g+h)); i0=$((d+e))
  sleep 0.5
  read -r _ a b c d e f g h _ < /proc/stat; t1=$((a+b+c+d+e+f+g+h)); i1=$((d+e))
  echo $(( 100 - 100 * (i1 - i0) / (t1 - t0 > 0 ? t1 - t0 : 1) ))
}
wait_quiet() {
  local start=$SECONDS
  while [ "$(busy)" -gt 15 ] && [ $((SECONDS - start)) -lt 90 ]; do sleep 2; done
}
for i in $(seq 1 "$rounds"); do
  wait_quiet; "$BIN" bench train --seconds 3 --repeats 1 --json | tail -1 > "$out/train$i.json"
  wait_quiet; "$BIN" bench infer --seconds 3 --repeats 1 --json | tail -1 > "$out/infer$i.json"
  "$PY" ../shared/anchors/torch_lstm_bench.py --threads 2 --repeats 1 --out "$out/torch$i.json" >/dev/null 2>&1
  python3 - "$out" "$i" <<'PY'
import json, sys
out, i = sys.argv[1], sys.argv[2]
t = json.load(open(f"{out}/train{i}.json")); n = json.load(open(f"{out}/infer{i}.json"))
p = json.load(open(f"{out}/torch{i}.json"))
ref = lambda rows, **kw: next(r["median"] for r in rows if all(r.get(k) == v for k, v in kw.items()))
pt = ref(p["train"], hidden=64, batch=32, mkldnn=True)
pl = ref(p["inference"], kind="latency_us_batch1", mode="inference_mode", mkldnn=True)
pb = ref(p["inference"], kind="throughput_win_per_s_batch1024", mkldnn=True)
print(f"round {i}: train {t['windows_per_second']:.0f} vs {pt:.0f} w/s | latency {n['latency_us_batch1']:.1f} "
      f"(one thread {n['latency_us_batch1_one_thread']:.1f}) vs {pl:.1f} us | batch-1024 "
      f"{n['windows_per_second_batch1024']:.0f} vs {pb:.0f} w/s", flush=True)
with open(f"{out}/rounds.txt", "a") as f:
    f.write(json.dumps([t["windows_per_second"], pt, n["latency_us_batch1"], n["latency_us_batch1_one_thread"],
                        pl, n["windows_per_second_batch1024"], pb]) + "\n")
PY
done
python3 - "$out/rounds.txt" <<'PY'
import json, statistics, sys
r = [json.loads(l) for l in open(sys.argv[1])]
m = [statistics.median(x[k] for x in r) for k in range(7)]
print(f"medians of {len(r)} alternating rounds          forecastd    PyTorch    ratio")
print(f"training windows/s (h64, 2 layers, T50, B32)  {m[0]:9.0f}  {m[1]:9.0f}    {m[0] / m[1]:.2f}x")
print(f"latency, one window, us (2 threads)           {m[2]:9.1f}  {m[4]:9.1f}    {m[4] / m[2]:.1f}x faster"
      f"   (one thread: {m[3]:.1f})")
print(f"batch-1024 windows/s                          {m[5]:9.0f}  {m[6]:9.0f}    {m[5] / m[6]:.2f}x")
print("per-round ratios: train " + " ".join(f"{x[0] / x[1]:.2f}" for x in r)
      + " | batch-1024 " + " ".join(f"{x[5] / x[6]:.2f}" for x in r))
PY
