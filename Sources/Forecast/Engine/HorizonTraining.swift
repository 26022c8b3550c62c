/// How a horizon model is trained beyond the plain next-step one: where its seasonal skip
/// starts, and how the loss is shared among the steps.
extension StreamingEngine {
    /// A seasonal skip that has never been used (all zero: no season was found before) starts
    /// at the weight the season earns beyond what the window itself says: per step, the
    /// least-squares coefficient of the target on its seasonal input, fitted together with the
    /// window's last value and mean (the persistence and the level a window-only model already
    /// has). A pattern that repeats exactly gets 1; a series whose "season" is only mean
    /// reversion, which the window's mean explains as well, gets about 0. Left at zero, the skip
    /// would take thousands of Adam steps to reach its weight.
    static func startSeasonalSkip(_ model: inout Model, windows x: [Float], seasonal s: [Float], targets y: [Float],
                                  horizon H: Int, seqLength L: Int) {
        guard let sw = model.layout.seasonalWeight, s.count == y.count, !s.isEmpty, x.count == (y.count / H) * L,
              model.parameters[sw..<(sw + H)].allSatisfy({ $0 == 0 }) else { return }
        // Normal equations of y ≈ a·s + b·last + c·mean, per step.
        var A = [[Double]](repeating: [Double](repeating: 0, count: 9), count: H)
        var r = [[Double]](repeating: [Double](repeating: 0, count: 3), count: H)
        var v = [0.0, 0.0, 0.0]  // (seasonal input, last, mean) of one target, reused
        for w in 0..<(y.count / H) {
            var mean = 0.0
            for k in 0..<L { mean += Double(x[w * L + k]) }
            mean /= Double(L)
            let last = Double(x[w * L + L - 1])
            for h in 0..<H {
                v[0] = Double(s[w * H + h]); v[1] = last; v[2] = mean
                let t = Double(y[w * H + h])
                for a in 0..<3 {
                    r[h][a] += v[a] * t
                    for b in 0..<3 { A[h][a * 3 + b] += v[a] * v[b] }
                }
            }
        }
        for h in 0..<H where A[h][0] > 0 {
            // A little ridge keeps the solve defined when last or mean is constant (last-value
            // windows end at 0).
            for a in 0..<3 { A[h][a * 3 + a] += 1e-6 * max(1, A[h][0]) }
            guard let coef = solve3(A[h], r[h]) else { continue }
            model.parameters[sw + h] = Float(min(1, max(0, coef[0])))
        }
    }

    /// Solves the 3×3 system m·x = b (row-major m) by Cramer's rule; nil when singular.
    fileprivate static func solve3(_ m: [Double], _ b: [Double]) -> [Double]? {
        func det(_ a: [Double]) -> Double {
            a[0] * (a[4] * a[8] - a[5] * a[7]) - a[1] * (a[3] * a[8] - a[5] * a[6]) + a[2] * (a[3] * a[7] - a[4] * a[6])
        }
        let d = det(m)
        guard abs(d) > 1e-12, d.isFinite else { return nil }
        var out = [Double](repeating: 0, count: 3)
        for c in 0..<3 {
            var mc = m
            for row in 0..<3 { mc[row * 3 + c] = b[row] }
            out[c] = det(mc) / d
        }
        return out
    }

    /// Loss weights per step: 1 / mean square of each step's training targets (set from the
    /// series' own targets), so that a step's share of the loss does not grow with how far its
    /// targets spread; then half of the loss goes to step 1 and half to the other steps. Step 1
    /// is the next-step forecast — forecast.latest and every anomaly score — and with an equal
    /// share of 1/H it came out worse than a next-step model's (NAB, H = 12: +2 % MASE in the
    /// median; H = 288: +6 %).
    static func stepWeights(_ y: [Float], horizon H: Int) -> [Float] {
        let equal = equalStepWeights(y, horizon: H)
        guard H > 1 else { return equal }
        return equal.enumerated().map { k, w in
            k == 0 ? w * Float(H) / 2 : w * Float(H) / Float(2 * (H - 1))
        }
    }

    static func equalStepWeights(_ y: [Float], horizon H: Int) -> [Float] {
        var ms = [Double](repeating: 0, count: H)
        for i in y.indices { ms[i % H] += Double(y[i]) * Double(y[i]) }
        let n = Double(y.count / H)
        let inv = ms.map { $0 > 0 && n > 0 ? n / $0 : 0 }
        let positive = inv.filter { $0 > 0 }
        guard !positive.isEmpty else { return Array(repeating: 1, count: H) }
        let mean = positive.reduce(0, +) / Double(positive.count)
        // A step whose targets are all zero (a constant series) keeps weight 1.
        return inv.map { Float($0 > 0 ? $0 / mean : 1) }
    }
}
