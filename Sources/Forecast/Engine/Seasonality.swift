import Foundation

/// The season of a series, found in its own data: the candidates are the calendar periods its
/// step implies (a day and a week of points), and one is kept when the series repeats at it.
///
/// The test is on first differences, so a trend (whose levels correlate at every lag) is not
/// mistaken for a season, and its bar is the white-noise 95 % bound 1.96/√n: nothing here is a
/// tuned constant. A wrongly kept season costs little — the model's seasonal skip starts at zero
/// and training sets how much of it to use — while a missed one costs what issue 17 measured
/// (a daily pattern forecast no better than the last value).
public enum Seasonality {
    /// Calendar periods tried, in seconds.
    static let calendar: [Double] = [86_400, 7 * 86_400]

    /// The detected period in points, or nil. `values` oldest first; `step` in seconds.
    /// A period needs two full seasons of history (and at least `minimumPoints` differences)
    /// to be tested.
    public static func detectPeriod(_ values: [Double], step: Double, minimumPoints: Int = 0, horizon: Int = 1) -> Int? {
        guard step > 0, step.isFinite, values.count > 2 else { return nil }
        var d = [Double](repeating: 0, count: values.count - 1)
        for i in 1..<values.count { d[i - 1] = values[i] - values[i - 1] }
        let n = d.count
        let mean = d.reduce(0, +) / Double(n)
        var variance = 0.0
        for v in d { variance += (v - mean) * (v - mean) }
        guard variance > 0, variance.isFinite else { return nil }
        var best: (period: Int, r: Double)?
        for seconds in calendar {
            let exact = seconds / step
            let p = Int(exact.rounded())
            // Only periods the step divides: a 7-minute series has no whole day of points.
            guard p >= 2, abs(exact - Double(p)) < 1e-6 * exact, 2 * p <= n, n - p >= minimumPoints else { continue }
            var s = 0.0
            for i in p..<n { s += (d[i] - mean) * (d[i - p] - mean) }
            let r = s / variance
            let bound = 1.96 / Double(n - p).squareRoot()
            if r > bound, r > (best?.r ?? -.infinity), beatsPersistence(values, period: p, horizon: horizon) { best = (p, r) }
        }
        return best?.period
    }

    /// Whether, over the history, the value one season before each target forecasts steps
    /// 1...horizon with a smaller mean absolute error than the last value does. A season that
    /// repeats but is buried in noise at this horizon (a noisy CPU series at one step ahead)
    /// would only add a distraction to the model's inputs; at a day ahead the same season
    /// usually wins.
    static func beatsPersistence(_ x: [Double], period p: Int, horizon: Int) -> Bool {
        let stride = max(1, horizon / 12)
        var seasonal = 0.0, persistence = 0.0
        for h in Swift.stride(from: 1, through: horizon, by: stride) {
            let seasons = (h + p - 1) / p
            let lag = seasons * p
            guard lag < x.count else { continue }
            for t in lag..<x.count {
                seasonal += abs(x[t] - x[t - lag])
                persistence += abs(x[t] - x[t - h])
            }
        }
        return seasonal < persistence
    }

    /// Index (into a buffer whose last observed value is at `last`) of the value one season
    /// before the target `h` steps ahead: the latest t ≡ last + h (mod period) not after `last`.
    /// nil without a period or before the buffer's start.
    @inline(__always)
    static func laggedIndex(last: Int, step h: Int, period: Int?) -> Int? {
        guard let p = period, p > 0 else { return nil }
        let seasons = (h + p - 1) / p
        let i = last + h - seasons * p
        return i >= 0 ? i : nil
    }
}
