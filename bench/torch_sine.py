#!/usr/bin/env python3
"""PyTorch reference for forecastd's learning test (Tests/ForecastTests/LearningTests.swift).

Recipe (identical in both):
  series  Tests/ForecastTests/Fixtures/sine_noise.csv (1000 points, x_t = sin(2 pi t/50) + 0.1 N(0,1),
          made by bench/make_sine_fixture.py)
  scale   z-score with mean / population std of the first 800 points (float64), values float32
  windows L = 50; train: windows fully inside points 0..799 (750 windows, targets 50..799);
          test: targets 800..999 (200 windows, inputs from points 750..998), chronological
  model   nn.LSTM(1, 32, num_layers=2, batch_first=True) -> nn.Linear(32, 1) on the last step
  train   Adam(lr=1e-3), MSELoss, clip_grad_norm_(1.0), batch 32, shuffled every epoch,
          last partial batch kept, EPOCHS epochs
  metric  test MSE in z units
Runs several seeds (init + shuffle differ per seed) and prints each MSE and the median.

Usage: ../.venv-torch/bin/python bench/torch_sine.py [--epochs 20] [--seeds 5] [--threads 1]
"""
import argparse
import os
import statistics

import numpy as np
import torch
import torch.nn as nn

ap = argparse.ArgumentParser()
ap.add_argument("--epochs", type=int, default=20)
ap.add_argument("--seeds", type=int, default=5)
ap.add_argument("--threads", type=int, default=1)
args = ap.parse_args()
torch.set_num_threads(args.threads)

path = os.path.join(os.path.dirname(__file__), "..", "Tests", "ForecastTests", "Fixtures", "sine_noise.csv")
raw = np.loadtxt(path, skiprows=1, dtype=np.float32)
L, split = 50, 800
mean = float(np.mean(raw[:split].astype(np.float64)))
std = float(np.std(raw[:split].astype(np.float64)))
z = ((raw.astype(np.float64) - mean) / std).astype(np.float32)


def windows(series):
    xs = np.stack([series[i:i + L] for i in range(len(series) - L)])
    ys = series[L:]
    return torch.from_numpy(xs).unsqueeze(-1), torch.from_numpy(ys.copy()).unsqueeze(-1)


xtr, ytr = windows(z[:split])
xte, yte = windows(z[split - L:])
assert xtr.shape[0] == 750 and xte.shape[0] == 200


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(1, 32, num_layers=2, batch_first=True)
        self.fc = nn.Linear(32, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])


results = []
for seed in range(args.seeds):
    torch.manual_seed(seed)
    net = Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    lossf = nn.MSELoss()
    for _ in range(args.epochs):
        perm = torch.randperm(xtr.shape[0])
        for s in range(0, xtr.shape[0], 32):
            idx = perm[s:s + 32]
            opt.zero_grad()
            loss = lossf(net(xtr[idx]), ytr[idx])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
    with torch.no_grad():
        mse = float(((net(xte) - yte) ** 2).mean())
    results.append(mse)
    print(f"seed {seed}: test MSE {mse:.5f}", flush=True)
persistence = float(np.mean((z[split - 1:-1].astype(np.float64) - z[split:]) ** 2))
print(f"epochs {args.epochs}: median test MSE {statistics.median(results):.5f} "
      f"(min {min(results):.5f}, max {max(results):.5f}); persistence {persistence:.5f}")
