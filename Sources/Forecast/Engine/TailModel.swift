import Foundation

/// How often a value at least this far from the middle of a history occurs in that history:
/// the empirical share up to the history's 90th percentile of distances, a generalized Pareto
/// tail fitted to the distances beyond it (peaks over threshold, as in SPOT) further out.
/// A Gaussian tail calls the ordinary bursts of a heavy-tailed statistic one-in-a-million
/// events; the fitted tail follows each series' own distribution, so a score built on it
/// means about the same on calm and on bursty series. The shape is kept ≥ 0 (an exponential
/// tail at the lightest): a bounded tail fitted to a hundred points would put an end to the
/// values that can occur that the data cannot show.
struct TailModel: Sendable {
    private(set) var median = 0.0
    private var threshold = 0.0        // distance at the `level` quantile
    private var shareBeyond = 0.0      // share of distances above it
    private var shape = 0.0            // γ ≥ 0
    private var scale = 0.0            // σ > 0 once fitted
    /// Whether any history was fitted (an empty one leaves every value unremarkable).
    private var fitted = false
    /// Distances up to this count as none: what the values compared cannot resolve (see
    /// `HalfRing.resolution`). A perfectly periodic series then has a history of zeros, as it
    /// would with exact values, not one of rounding noise to fit a tail to.
    private var floor = 0.0

    /// Distances above this quantile of the history's distances form the fitted tail.
    static let level = 0.9

    /// Fits the model to a history (at least a few values).
    init(fitting history: [Double], floor: Double = 0) {
        self.floor = floor.isFinite ? max(floor, 0) : 0
        guard !history.isEmpty else { return }
        let sorted = history.sorted()
        let n = sorted.count
        median = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2])
        // The distances in order without a second sort: those of the values below the median
        // ascend walking down from it, those above walking up; merge the two walks.
        var distances: [Double] = []
        distances.reserveCapacity(n)
        var up = sorted.firstIndex { $0 >= median } ?? n, down = up - 1
        while down >= 0 || up < n {
            if up >= n || (down >= 0 && distance(sorted[down]) <= distance(sorted[up])) {
                distances.append(distance(sorted[down]))
                down -= 1
            } else {
                distances.append(distance(sorted[up]))
                up += 1
            }
        }
        fitted = true
        let k = min(n - 1, Int(Double(n) * Self.level))
        threshold = distances[k]
        let excesses = distances[(k + 1)...].map { $0 - threshold }.filter { $0 > 0 }
        // Too few points beyond the threshold to fit a tail: the empirical share alone.
        guard excesses.count >= 5 else { return }
        shareBeyond = Double(excesses.count) / Double(n)
        // Probability-weighted moments (Hosking & Wallis 1987): stable for small samples and
        // heavy tails, no iterations. Excesses are ascending.
        let m = Double(excesses.count)
        var a0 = 0.0, a1 = 0.0
        for (i, y) in excesses.enumerated() {
            a0 += y
            a1 += y * (m - 1 - Double(i)) / (m - 1)
        }
        a0 /= m
        a1 /= m
        let denominator = a0 - 2 * a1
        if denominator > 1e-300 {
            let k = a0 / denominator - 2      // Hosking's k = −γ
            shape = max(-k, 0)
            scale = shape > 0 ? 2 * a0 * a1 / denominator : a0
        } else {
            shape = 0
            scale = a0
        }
        if !(scale > 0 && scale.isFinite) { scale = max(a0, 1e-300) }
    }

    /// P(|X − median| ≥ |x − median|) under the history (never 0: floored at 1e-10). Up to the
    /// threshold that is the share of `history` (the check's history now, which the model was
    /// fitted to up to `refitEvery` points ago) at least this far out, counted afresh: a sorted
    /// copy of the distances was a tenth of a series' memory, for a share that only decides
    /// scores far below any flag.
    func tail(_ x: Double, history: SpacedHistory) -> Double {
        let n = history.count
        guard fitted, n > 0 else { return 1 }
        let distance = distance(x)
        if distance <= threshold || shareBeyond == 0 || scale <= 0 {
            // Compared in Float32, as the distances were held.
            let atLeast = history.count(fartherFrom: median, than: Float(distance), floor: floor)
            return max(Double(atLeast) / Double(n), distance > threshold ? 1 / Double(n) : 1e-10, 1e-10)
        }
        let y = distance - threshold
        let survival = shape > 1e-9 ? pow(1 + shape * y / scale, -1 / shape) : exp(-y / scale)
        return max(shareBeyond * survival, 1e-10)
    }

    private func distance(_ x: Double) -> Double { max(abs(x - median) - floor, 0) }

    /// The tail on the anomaly score's scale: −log10(tail) / 10, in [0, 1].
    func score(_ x: Double, history: SpacedHistory) -> Double {
        min(1, max(0, -log10(tail(x, history: history)) / 10))
    }
}
