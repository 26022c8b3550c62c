#!/usr/bin/env python3
"""Writes Tests/ForecastTests/Fixtures/sine_noise.csv: the series of the learning test.

x_t = sin(2*pi*t/50) + 0.1*N(0,1), t = 0..999, noise from numpy default_rng(20240601).
Committed as a file so the Swift test and bench/torch_sine.py read the identical series.
Usage: python3 bench/make_sine_fixture.py
"""
import math
import os

import numpy as np

rng = np.random.default_rng(20240601)
n = 1000
noise = rng.standard_normal(n)
out = os.path.join(os.path.dirname(__file__), "..", "Tests", "ForecastTests", "Fixtures", "sine_noise.csv")
with open(out, "w") as f:
    f.write("value\n")
    for t in range(n):
        v = np.float32(math.sin(2 * math.pi * t / 50) + 0.1 * noise[t])
        f.write(f"{float(v):.9g}\n")
print("wrote", out)
