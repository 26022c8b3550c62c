import Foundation

/// Settings of the anomaly likelihood.
public struct AnomalyConfig: Sendable, Equatable {
    /// Points averaged for the "recent" residual level.
    public var shortWindow = 10
    /// Points of history the recent level is judged against.
    public var longWindow = 1000
    /// Scores needed before a series is scored at all.
    public var minHistory = 100
    /// Flag when the score reaches this. The score is −log10(1 − likelihood) / 10, so 0.5 means
    /// a recent residual level this high happens once in 100,000 under the long-run history.
    public var threshold = 0.5
    /// After a flag, no new flag for this many points: one incident pages once.
    public var cooldown = 100

    public init() {}

    func validate() throws {
        func bad(_ name: String, _ why: String) -> ForecastError { .invalidSetting("anomaly.\(name): \(why)") }
        if shortWindow < 1 { throw bad("short_window", "must be at least 1 (got \(shortWindow))") }
        if longWindow <= shortWindow { throw bad("long_window", "must be greater than short_window (got \(longWindow))") }
        if minHistory < 2 { throw bad("min_history", "must be at least 2 (got \(minHistory))") }
        if !(threshold > 0 && threshold <= 1) { throw bad("threshold", "must be in (0, 1] (got \(threshold))") }
        if cooldown < 0 { throw bad("cooldown", "must not be negative (got \(cooldown))") }
    }
}

/// Anomaly likelihood of a stream of prediction residuals, after HTM's: the raw score is the
/// residual's size relative to the series' recent residual scale; the likelihood is how unusual
/// the mean raw score of the last few points is against the long-run distribution of raw
/// scores. Measuring residuals in units of their own recent spread makes it robust to changes
/// of scale; averaging a few points keeps single noisy points from paging.
public struct AnomalyScorer: Sendable {
    let config: AnomalyConfig
    private var recent: [Double] = []      // last shortWindow raw scores (ring)
    private var recentHead = 0
    private var recentSum = 0.0
    private var history: [Double] = []     // long-run raw scores of points not flagged (ring)
    private var historyHead = 0
    private var historySum = 0.0
    private var historySumSq = 0.0
    private var sinceFlag = Int.max

    init(config: AnomalyConfig) { self.config = config }

    /// Scores one residual; `scale` is a robust spread of recent residuals (> 0).
    /// Returns the score in [0, 1] and whether this point is flagged.
    mutating func score(residual: Double, scale: Double) -> (score: Double, flagged: Bool) {
        let raw = min(abs(residual) / max(scale, 1e-12), 1e6)
        guard raw.isFinite else { return (0, false) }
        pushRecent(raw)
        if sinceFlag < Int.max { sinceFlag += 1 }
        var score = 0.0
        if history.count >= config.minHistory {
            let n = Double(history.count)
            let mean = historySum / n
            let variance = max(historySumSq / n - mean * mean, 0)
            // A floor on the spread: a flat, perfectly predicted stretch must not turn the first
            // ordinary wiggle into a one-in-a-billion event.
            let std = max(variance.squareRoot(), 0.05 * mean, 1e-6)
            let shortMean = recentSum / Double(recent.count)
            let z = (shortMean - mean) / std
            let tail = 0.5 * erfc(z / 2.0.squareRoot())   // P(Z > z)
            score = min(1, max(0, -log10(max(tail, 1e-10)) / 10))
        }
        let flagged = score >= config.threshold && sinceFlag > config.cooldown
        if flagged { sinceFlag = 0 }
        // Flagged points stay out of the long-run history, so an incident does not teach the
        // detector that incidents are normal.
        if !flagged && sinceFlag > config.shortWindow { pushHistory(raw) }
        return (score, flagged)
    }

    var state: State {
        State(recent: Array(recent[recentHead...] + recent[..<recentHead]),
              history: Array(history[historyHead...] + history[..<historyHead]),
              sinceFlag: sinceFlag)
    }

    init(config: AnomalyConfig, state: State) {
        self.init(config: config)
        for v in state.recent.suffix(config.shortWindow) { pushRecent(v) }
        for v in state.history.suffix(config.longWindow) { pushHistory(v) }
        sinceFlag = state.sinceFlag
    }

    private mutating func pushRecent(_ v: Double) {
        if recent.count < config.shortWindow {
            recent.append(v)
        } else {
            recentSum -= recent[recentHead]
            recent[recentHead] = v
            recentHead = (recentHead + 1) % config.shortWindow
        }
        recentSum += v
    }

    private mutating func pushHistory(_ v: Double) {
        if history.count < config.longWindow {
            history.append(v)
        } else {
            let old = history[historyHead]
            historySum -= old
            historySumSq -= old * old
            history[historyHead] = v
            historyHead = (historyHead + 1) % config.longWindow
        }
        historySum += v
        historySumSq += v * v
    }
}
