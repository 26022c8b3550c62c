#!/usr/bin/env python3
"""PyTorch reference for multi-step horizons (issue 17): RP-1's walk-forward
(shared/anchors/walk_forward.py) with forecastd's direct H-output head, side by side with the
seasonal-naive and persistence forecasts on the same target points.

Model     nn.LSTM(1, hidden [64], layers [2]) + Linear(hidden, H) on the last step, plus a
          per-step seasonal skip y_k += w_k * s_k (s_k: the value one season before target k,
          z-scored like the window; the last value where there is no season), as
          `ModelConfig(outputSize: H, seasonalSkip: true)` in forecastd. The season is found as
          forecastd finds it (Seasonality.detectPeriod: a day or a week of steps, first-difference
          autocorrelation above 1.96/sqrt(n), and the season beating persistence at steps 1..H)
          and the skip starts at forecastd's least-squares weight (startSeasonalSkip).
Windows   X[i] = x[i:i+L], Y[i] = x[i+L:i+L+H] (create_sequences with a horizon).
Loss      MSE with forecastd's per-step weights: 1 / mean square of each step's training
          targets, scaled to average 1, then half of the loss to step 1 and half to the others.
Protocol  RP-1: train at t = W on x[0:W] (E0 epochs), fine-tune every R points on the last
          `history` points (E epochs), one Adam for the whole run, MSE, clip_grad_norm_ 1.0.
          After each point x[t-1] (t in [W, N)) the path for x[t .. t+H-1] is issued.
Metrics   per step k: MAE, RMSE, MASE (MAE / the one-step naive MAE |x[t] - x[t-1]| of the same
          target points, as forecastd scales it) for the model, the seasonal naive (the value one
          day of steps before the target; the series' step read from the time column) and
          persistence (x[t-1] for every step).

Usage: torch_horizon.py CSV COLUMN --horizon H [--time-column C] [--out FILE.json] [--no-season]
Compare: forecastd replay --csv CSV --time-column C --value-column COLUMN --rp1 --horizon H \
             --seasonal on --report r.json     (its report's `horizons`)
"""
import argparse
import json
import math
import sys
import time

import numpy as np
import pandas as pd
import torch
import torch.nn as nn


class HorizonModel(nn.Module):
    def __init__(self, horizon, hidden=64, layers=2, seasonal=True):
        super().__init__()
        self.lstm = nn.LSTM(1, hidden, num_layers=layers, batch_first=True)
        self.fc = nn.Linear(hidden, horizon)
        self.seasonal = nn.Parameter(torch.zeros(horizon)) if seasonal else None

    def forward(self, x, s):
        out, _ = self.lstm(x)
        y = self.fc(out[:, -1, :])
        return y + self.seasonal * s if self.seasonal is not None else y


def detect_period(x, step, min_points, horizon):
    if step <= 0 or len(x) <= 2:
        return None
    d = np.diff(x)
    n = len(d)
    m = d.mean()
    var = float(((d - m) ** 2).sum())
    if not var > 0:
        return None
    best = None
    for seconds in (86400.0, 7 * 86400.0):
        exact = seconds / step
        p = int(round(exact))
        if p < 2 or abs(exact - p) >= 1e-6 * exact or 2 * p > n or n - p < min_points:
            continue
        r = float(((d[p:] - m) * (d[:-p] - m)).sum()) / var
        if r > 1.96 / math.sqrt(n - p) and (best is None or r > best[1]) and beats_persistence(x, p, horizon):
            best = (p, r)
    return best[0] if best else None


def beats_persistence(x, p, horizon):
    seasonal = persistence = 0.0
    for h in range(1, horizon + 1, max(1, horizon // 12)):
        lag = ((h + p - 1) // p) * p
        if lag >= len(x):
            continue
        seasonal += float(np.abs(x[lag:] - x[:-lag]).sum())
        persistence += float(np.abs(x[lag:] - x[lag - h:len(x) - h]).sum())
    return seasonal < persistence


def seasonal_inputs(z, last, period, H):
    """s[k] for target last+1+k: z[last + h - ceil(h/P)P], or z[last] without a period."""
    s = np.empty(H)
    for h in range(1, H + 1):
        i = last
        if period:
            j = last + h - ((h + period - 1) // period) * period
            if j >= 0:
                i = j
        s[h - 1] = z[i]
    return s


class Replayer:
    def __init__(self, a, H, step):
        self.a, self.H, self.step = a, H, step
        torch.manual_seed(a.seed)
        self.gen = torch.Generator().manual_seed(a.seed)
        self.model = HorizonModel(H, a.hidden, a.layers, seasonal=not a.no_season)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=a.lr)
        self.period = None

    def train(self, buf, epochs):
        a, H, L = self.a, self.H, self.a.seq_length
        self.mean = float(buf.mean())
        sd = float(buf.std())
        self.std = sd if sd > 0 else 1.0
        z = (buf - self.mean) / self.std
        if not a.no_season:
            self.period = detect_period(buf, self.step, L, H)
        n = len(z) - L - H + 1
        X = np.stack([z[i:i + L] for i in range(n)])
        Y = np.stack([z[i + L:i + L + H] for i in range(n)])
        S = np.stack([seasonal_inputs(z, i + L - 1, self.period, H) for i in range(n)])
        if self.model.seasonal is not None and float(self.model.seasonal.abs().sum()) == 0 and self.period:
            with torch.no_grad():
                last, mean = X[:, -1], X.mean(axis=1)
                for k in range(H):
                    V = np.stack([S[:, k], last, mean], axis=1)
                    A = V.T @ V + 1e-6 * max(1.0, float((S[:, k] ** 2).sum())) * np.eye(3)
                    coef = np.linalg.solve(A, V.T @ Y[:, k])
                    self.model.seasonal[k] = float(min(1.0, max(0.0, coef[0])))
        # forecastd's per-step loss weights (StreamingEngine.stepWeights): 1 / mean square of
        # each step's targets, scaled to average 1.
        ms = (Y ** 2).mean(axis=0)
        inv = np.where(ms > 0, 1 / np.where(ms > 0, ms, 1), 0)
        w = np.where(inv > 0, inv / inv[inv > 0].mean(), 1) if (inv > 0).any() else np.ones(H)
        if H > 1:  # half of the loss to step 1, half to the others
            w = w * np.where(np.arange(H) == 0, H / 2, H / (2 * (H - 1)))
        Wt = torch.from_numpy(w.astype(np.float32))
        Xt = torch.from_numpy(X.astype(np.float32)).unsqueeze(-1)
        Yt = torch.from_numpy(Y.astype(np.float32))
        St = torch.from_numpy(S.astype(np.float32))
        self.model.train()
        for _ in range(epochs):
            perm = torch.randperm(n, generator=self.gen)
            for b in range(0, n, a.batch):
                idx = perm[b:b + a.batch]
                self.opt.zero_grad(set_to_none=True)
                loss = (Wt * (self.model(Xt[idx], St[idx]) - Yt[idx]) ** 2).mean()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=a.clip)
                self.opt.step()

    @torch.inference_mode()
    def predict(self, x, t0, t1, out):
        """Paths issued after x[t-1] for t in [t0, t1): out[t] = H forecasts of x[t..t+H-1]."""
        L, H = self.a.seq_length, self.H
        self.model.eval()
        z = (x[:t1] - self.mean) / self.std
        ts = list(range(t0, t1))
        X = np.stack([z[t - L:t] for t in ts]).astype(np.float32)
        S = np.stack([seasonal_inputs(z, t - 1, self.period, H) for t in ts]).astype(np.float32)
        for b in range(0, len(ts), 2048):
            y = self.model(torch.from_numpy(X[b:b + 2048]).unsqueeze(-1), torch.from_numpy(S[b:b + 2048]))
            out[t0 + b:t0 + b + y.shape[0]] = y.double().numpy() * self.std + self.mean


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("column")
    ap.add_argument("--time-column", default=None)
    ap.add_argument("--horizon", type=int, required=True)
    ap.add_argument("--seq-length", type=int, default=48)
    ap.add_argument("--warmup", type=int, default=2000)
    ap.add_argument("--retrain-every", type=int, default=500)
    ap.add_argument("--history", type=int, default=4000)
    ap.add_argument("--initial-epochs", type=int, default=10)
    ap.add_argument("--finetune-epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-season", action="store_true", help="no seasonal skip (a plain direct head)")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    df = pd.read_csv(a.csv)
    tcol = a.time_column or next(c for c in df.columns if c != a.column)
    x = df[a.column].to_numpy(dtype=np.float64)
    step = float(pd.to_datetime(df[tcol]).diff().dt.total_seconds().median())
    N, W, R, HIST, H = len(x), a.warmup, a.retrain_every, a.history, a.horizon
    rp = Replayer(a, H, step)
    paths = np.full((N, H), np.nan)
    t0 = time.perf_counter()
    rp.train(x[:W], a.initial_epochs)
    t = W
    while t < N:
        t1 = min(N, t + R)
        rp.predict(x, t, t1, paths)
        t = t1
        if t < N:
            rp.train(x[max(0, t - HIST):t], a.finetune_epochs)
        print(f"\r t={t}/{N} {time.perf_counter() - t0:.0f}s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    day = int(round(86400 / step))
    steps = []
    for k in range(1, H + 1):
        ts = np.arange(W, N - k + 1)          # path issued after x[t-1], target x[t+k-1]
        tgt = ts + k - 1
        actual = x[tgt]
        naive1 = np.abs(actual - x[tgt - 1]).mean()
        def stats(pred):
            e = actual - pred
            return {"mae": float(np.abs(e).mean()), "rmse": float(np.sqrt((e * e).mean())),
                    "mase": float(np.abs(e).mean() / naive1) if naive1 > 0 else None}
        lag = ((k + day - 1) // day) * day
        steps.append({"step": k, "points": int(len(ts)), "model": stats(paths[ts, k - 1]),
                      "seasonal_naive": stats(x[tgt - lag]) if (tgt - lag >= 0).all() else None,
                      "persistence": stats(x[ts - 1])})
    res = {"csv": a.csv, "column": a.column, "horizon": H, "step_seconds": step, "period": rp.period,
           "seconds": time.perf_counter() - t0, "torch": torch.__version__, "steps": steps,
           "params": {k: v for k, v in vars(a).items() if k not in ("csv", "column")}}
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    for s in steps:
        if s["step"] in (1, 2, H // 4, H // 2, H) or H <= 4:
            sn = s["seasonal_naive"]["mase"] if s["seasonal_naive"] else float("nan")
            print(f"step {s['step']:4d}: MASE torch {s['model']['mase']:.4f}  seasonal-naive {sn:.4f}  "
                  f"persistence {s['persistence']['mase']:.4f}")


if __name__ == "__main__":
    main()
