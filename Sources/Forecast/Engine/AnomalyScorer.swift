import Foundation

/// Settings of the anomaly likelihood.
public struct AnomalyConfig: Sendable, Equatable {
    /// Points averaged for the "recent" residual level.
    public var shortWindow = 10
    /// Points of history the recent level is judged against.
    public var longWindow = 1000
    /// History each check needs before it can flag: residual scores for the likelihood, values
    /// for the range check (which also waits for a day of them), differences for a level-shift
    /// check (which also waits for a window of them, so they span the window's own cycle).
    public var minHistory = 100
    /// Flag when the score reaches this. The score is −log10(1 − likelihood) / 10, so 0.5 means
    /// a recent residual level this high happens once in 100,000 under the long-run history.
    public var threshold = 0.5
    /// After a flag, no new flag for this many points: one incident pages once.
    public var cooldown = 100
    /// Residual size, in robust standard deviations, that maps to a raw score of about 0.68:
    /// raw = erf(|z| / (rawScale·√2)). Bounding the raw score keeps one huge residual from
    /// dominating the short-window mean (and so the score) for `shortWindow` points.
    public var rawScale = 3.0
    /// Floor on the spread of the long-run raw scores (HTM uses a variance floor of 0.0003).
    public var minSpread = 0.0173
    /// A value outside the range of the values seen so far by more than this share of the
    /// range scores 1 (HTM's "spatial anomaly"); 0 turns it off. Scale-free by construction.
    public var rangeTolerance = 0.05
    /// The range check counts only when the model did not expect the value either: its
    /// residual is at least this many robust standard deviations. A trend the model follows
    /// out of the old range, or a new extreme of plain noise, is not an anomaly.
    public var rangeMinResidual = 4.0
    /// Level-shift check: d = mean of the last `shiftWindow` values − mean of the
    /// `shiftWindow` values before them, judged against the mean and spread of the last
    /// `longWindow` such d (two-sided Gaussian tail, same log scale as the likelihood). It
    /// catches pattern changes the forecast follows (a missing daily peak, a flat day, a lower
    /// plateau) that leave no single large residual. Over a whole day a seasonal series' mean
    /// is steady, so d stays near 0 until the pattern changes. nil (the default): a day at the
    /// series' own step (288 for 5-minute data, 144 for 10-minute, 24 for hourly), kept
    /// between 24 and 1440 points; 0 turns the check off. After a shift flag the check rests
    /// for a window (the shift stays inside the window that long).
    public var shiftWindow: Int?
    /// Share of each level-shift window left out at either end before averaging (a trimmed
    /// mean): with 0.025 of 288, the 7 highest and 7 lowest values of each day. A short burst
    /// or a daily spike that drifts by a few points then does not move the level, while a
    /// change of the bulk of the values does. 0 is the plain mean.
    public var shiftTrim = 0.025
    /// A second level-shift check over this many points, for changes that last hours rather
    /// than a day: a hump or a dip that the forecast follows, which the day-long window
    /// averages away. Its differences are judged against their own history, so a daily swing
    /// the short window does see counts as normal. nil (the default): a quarter of the day
    /// window (six hours; 72 points of 5-minute data); 0 turns it off.
    public var shortShiftWindow: Int?
    /// Contextual check: the last quarter of a day against the same hours of this many seasons
    /// before (their median), where a season is a day or a week found in the series' own data
    /// (`SeasonalContextDetector`). 3 is the fewest whose median ignores one unusual season;
    /// 0 turns the check off.
    public var contextSeasons = 3

    /// Without a known step (e.g. scoring without timestamps), a day is taken as 288 points.
    static let defaultDayPoints = 288
    static let dayPointsRange = 24...1440

    /// A day in points at this step (seconds; 0 or nil: unknown), kept within `dayPointsRange`.
    static func dayPoints(step: Double?) -> Int {
        guard let step, step > 0, step.isFinite else { return defaultDayPoints }
        let points = (86_400 / step).rounded()
        return Int(min(max(points, Double(dayPointsRange.lowerBound)), Double(dayPointsRange.upperBound)))
    }

    /// The level-shift windows for a series whose observations come every `step` seconds
    /// (0 or nil: unknown). A window of 0 is a check turned off.
    public func shiftWindows(step: Double?) -> (day: Int, short: Int) {
        let autoDay = Self.dayPoints(step: step)
        let day = shiftWindow ?? autoDay
        let short = shortShiftWindow ?? max(1, (day > 0 ? day : autoDay) / 4)
        return (day, short)
    }

    public init() {}

    func validate() throws {
        func bad(_ name: String, _ why: String) -> ForecastError { .invalidSetting("anomaly.\(name): \(why)") }
        if shortWindow < 1 { throw bad("short_window", "must be at least 1 (got \(shortWindow))") }
        if longWindow <= shortWindow { throw bad("long_window", "must be greater than short_window (got \(longWindow))") }
        if minHistory < 2 { throw bad("min_history", "must be at least 2 (got \(minHistory))") }
        if !(threshold > 0 && threshold <= 1) { throw bad("threshold", "must be in (0, 1] (got \(threshold))") }
        if cooldown < 0 { throw bad("cooldown", "must not be negative (got \(cooldown))") }
        if !(rawScale > 0 && rawScale.isFinite) { throw bad("raw_scale", "must be positive (got \(rawScale))") }
        if !(minSpread > 0 && minSpread < 1) { throw bad("min_spread", "must be in (0, 1) (got \(minSpread))") }
        if !(rangeTolerance >= 0 && rangeTolerance.isFinite) { throw bad("range_tolerance", "must not be negative (got \(rangeTolerance))") }
        if !(rangeMinResidual >= 0 && rangeMinResidual.isFinite) { throw bad("range_min_residual", "must not be negative (got \(rangeMinResidual))") }
        if let w = shiftWindow, w < 0 { throw bad("shift_window", "must not be negative (got \(w))") }
        if let w = shortShiftWindow, w < 0 { throw bad("short_shift_window", "must not be negative (got \(w))") }
        if !(shiftTrim >= 0 && shiftTrim < 0.5) { throw bad("shift_trim", "must be in [0, 0.5) (got \(shiftTrim))") }
        if !(0...52).contains(contextSeasons) { throw bad("context_seasons", "must be between 0 and 52 (got \(contextSeasons))") }
    }
}

/// Anomaly likelihood of a stream of prediction residuals, after HTM's (NAB's "numenta"
/// detector):
/// - raw score: the residual's size in robust standard deviations of recent residuals, mapped
///   into [0, 1) by erf(|z| / (rawScale·√2)), so the raw score does not depend on the series'
///   scale and a single huge residual counts as "fully surprising", not as a thousand points;
/// - likelihood: how unusual the mean raw score of the last `shortWindow` points is against
///   the mean and spread of the last `longWindow` raw scores (Gaussian tail, spread floored);
///   score = −log10(tail) / 10, i.e. HTM's log-likelihood;
/// - HTM's filter: a red score (≥ threshold) right after a red score is lowered to the
///   "yellow" level (tail 1e-3, score 0.3), so a sustained incident scores high once;
/// - HTM's spatial check: a value outside the range of the values seen so far (widened by
///   `rangeTolerance` of the range on each side) scores 1, if its residual is also at least
///   `rangeMinResidual` robust standard deviations and at least a day of values has been seen;
/// - level shift: the trimmed mean of the last day of values against that of the day before,
///   judged against the history of that difference (see `AnomalyConfig.shiftWindow` and
///   `shiftTrim`); the same over a quarter of a day for shorter changes. The windows are
///   fixed at the first score, from the series' step;
/// - context: the last quarter of a day against the same hours of earlier days or weeks, when
///   the series has such a season (`SeasonalContextDetector`), with a tail fitted to its own
///   history of such departures;
/// - flags: score ≥ threshold and more than `cooldown` points since the last flag. A point
///   that reaches the threshold but is not flagged (inside the cooldown) reports the yellow
///   score, like HTM's filter: the reported score is red exactly where a flag is raised, so a
///   threshold chosen on the score alone selects the same incidents as the flags. Flagged
///   points (and the `shortWindow` points after a flag) stay out of the long-run history, and
///   flagged values stay out of the value range, so an incident does not teach the detector
///   that incidents are normal.
/// Which check decided a point's score: the `reason` of a flagged point in forecast.predictions
/// and in replay's output.
public enum AnomalyReason: String, Sendable, CaseIterable {
    /// The recent forecast errors are unusual against the series' own error history.
    case residuals
    /// The last day's level differs from the day before.
    case levelShiftDay = "level_shift_day"
    /// The last quarter day's level differs from the one before.
    case levelShiftHours = "level_shift_hours"
    /// The value is well outside every value seen so far, and the forecast did not expect it.
    case outOfRange = "out_of_range"
    /// The last hours are unlike the same hours of the days (or weeks) before.
    case unlikeSeason = "unlike_season"
}

public struct AnomalyScorer: Sendable {
    let config: AnomalyConfig
    /// The check that gave the last scored point its score (nil when every check scored 0).
    public private(set) var lastReason: AnomalyReason?
    private var recent: RollingStats<Float>       // last shortWindow raw scores
    // Raw scores lie in [0, 1): Float16 keeps them to 1/2048, far finer than the spread floor.
    private var history: RollingStats<Float16>    // long-run raw scores of points not flagged
    private var sinceFlag = Int.max
    private var previousRed = false
    private var valueMin = Double.infinity
    private var valueMax = -Double.infinity
    private var valueCount = 0
    private var shift: LevelShiftDetector?       // over a day
    private var shortShift: LevelShiftDetector?  // over a quarter of a day
    private var context: SeasonalContextDetector?
    /// Whether the windows are fixed (they are set at the first value, from the step).
    private var windowsFixed = false
    /// Values the range check needs to have seen: at least a day's (set with the windows), so
    /// that a pattern that comes once a day, such as a nightly batch spike, is in the range
    /// before the check can call it new.
    private var rangeMinValues = Int.max
    /// Restored level-shift states (empty for a new scorer), kept until the windows are fixed.
    private var restoredShift = (LevelShiftDetector.State(), LevelShiftDetector.State())
    private var restoredContext = SeasonalContextDetector.State()

    static let yellowScore = 0.3   // −log10(1e-3) / 10

    init(config: AnomalyConfig) {
        self.config = config
        recent = RollingStats(capacity: config.shortWindow)
        history = RollingStats(capacity: config.longWindow)
    }

    /// Creates the level-shift checks for a series with this step (seconds; nil: unknown),
    /// continuing restored ones. A restored check keeps the window it was saved with unless
    /// the settings name a window.
    private mutating func fixWindows(step: Double?) {
        windowsFixed = true
        let (day, short) = config.shiftWindows(step: step)
        let dayPoints = AnomalyConfig.dayPoints(step: step)
        rangeMinValues = max(config.minHistory, day > 0 ? day : dayPoints)
        // The history of a windowed check spans several windows and several days, so that its
        // spread is not that of a few overlapping windows and a daily cycle is remembered when
        // a day has missed it (1-minute data: 1440-point days, three days of differences, kept
        // as 864 samples: `SpacedHistory`).
        func historyLength(_ window: Int) -> Int { max(config.longWindow, 3 * window, 3 * dayPoints) }
        func make(_ configured: Int?, _ window: Int, _ saved: LevelShiftDetector.State) -> LevelShiftDetector? {
            let w = configured == nil && saved.window > 0 ? saved.window : window
            guard w > 0 else { return nil }
            return LevelShiftDetector(window: w, trim: config.shiftTrim, historyLength: historyLength(w), state: saved)
        }
        shift = make(config.shiftWindow, day, restoredShift.0)
        shortShift = make(config.shortShiftWindow, short, restoredShift.1)
        restoredShift = (.init(), .init())
        if config.contextSeasons > 0 {
            let window = max(1, dayPoints / 4)
            context = SeasonalContextDetector(dayPoints: dayPoints, window: window, seasons: config.contextSeasons,
                                              historyLength: historyLength(window),
                                              state: restoredContext)
        }
        restoredContext = .init()
    }

    /// A restored scorer builds its checks from the saved state once the series' step is known
    /// (a restart's history gives it): until then that state is held as `Double`s, at steady
    /// state about 60 KB a series more than the checks themselves. A new scorer waits for its
    /// first score, which also learns the history.
    mutating func settleRestored(step: Double?) {
        guard !windowsFixed, valueCount > 0 || history.count > 0 else { return }
        fixWindows(step: step)
    }

    /// Whether the level-shift windows still wait for the series' step: a new or restored
    /// scorer, before `learn(history:step:)` or its first score.
    var needsStep: Bool { !windowsFixed }

    /// Fixes the level-shift windows from the series' step (seconds; nil: unknown). A new
    /// scorer also learns the value-based checks (the value range and the level-shift windows)
    /// from the series' values before its first forecast, so that a series that starts with
    /// days of history has checks that know it; the residual checks need forecasts and start
    /// empty. A scorer that has scored, learnt or been restored keeps its own memory.
    mutating func learn(history values: [Double], step: Double?) {
        let isNew = !windowsFixed && valueCount == 0 && history.count == 0
        if !windowsFixed { fixWindows(step: step) }
        guard isNew else { return }
        for v in values where v.isFinite {
            shift?.learn(v)
            shortShift?.learn(v)
            context?.learn(v)
            valueMin = min(valueMin, v)
            valueMax = max(valueMax, v)
            valueCount += 1
        }
    }

    /// Scores one residual; `scale` is a robust spread of recent residuals (> 0), `value` the
    /// observed value (for the range and level-shift checks; pass nil to skip them) and `step`
    /// the series' usual seconds between observations (sets the level-shift windows).
    /// Returns the score in [0, 1] and whether this point is flagged.
    /// A flag raised `k` scored points ago that the stored state may predate (a restart from an
    /// older checkpoint): the cooldown counts from it, so an incident does not page twice.
    mutating func noteFlag(pointsAgo k: Int) {
        sinceFlag = min(sinceFlag, k)
    }

    mutating func score(residual: Double, scale: Double, value: Double? = nil, step: Double? = nil) -> (score: Double, flagged: Bool) {
        if !windowsFixed { fixWindows(step: step) }
        let z = min(abs(residual) / max(scale, 1e-12), 1e6)
        guard z.isFinite else { return (0, false) }
        let raw = erf(z / (config.rawScale * 2.0.squareRoot()))
        recent.push(raw)
        if sinceFlag < Int.max { sinceFlag += 1 }
        var score = 0.0
        var red = false
        lastReason = nil
        if history.count >= config.minHistory {
            let mean = history.mean
            // A floor on the spread: a flat, perfectly predicted stretch must not turn the first
            // ordinary wiggle into a one-in-a-billion event.
            let std = max(history.variance.squareRoot(), 0.05 * mean, config.minSpread)
            let shortMean = recent.mean
            let zMean = (shortMean - mean) / std
            let tail = 0.5 * erfc(zMean / 2.0.squareRoot())   // P(Z > zMean)
            score = min(1, max(0, -log10(max(tail, 1e-10)) / 10))
            if score > 0 { lastReason = .residuals }
            red = score >= config.threshold
            if red && previousRed { score = min(score, Self.yellowScore) }
        }
        previousRed = red
        var shiftDiff: Double?, shortShiftDiff: Double?, contextDiff: Double?
        if let v = value, v.isFinite {
            let level = max(abs(valueMin), abs(valueMax), valueMax - valueMin)
            func check(_ detector: inout LevelShiftDetector?, _ reason: AnomalyReason) -> Double? {
                guard detector != nil else { return nil }
                let (d, shiftScore) = detector!.push(v, level: level, threshold: config.threshold, minHistory: max(config.minHistory, detector!.window))
                if let s = shiftScore, s > score {
                    score = s
                    lastReason = reason
                }
                return d
            }
            shiftDiff = check(&shift, .levelShiftDay)
            shortShiftDiff = check(&shortShift, .levelShiftHours)
            if context != nil {
                let (d, contextScore) = context!.score(v, threshold: config.threshold, minHistory: config.minHistory)
                contextDiff = d
                if let s = contextScore, s > score {
                    score = s
                    lastReason = .unlikeSeason
                }
            }
        }
        if let v = value, v.isFinite, config.rangeTolerance > 0 {
            if valueCount >= rangeMinValues && z >= config.rangeMinResidual {
                let tol = config.rangeTolerance * (valueMax - valueMin)
                if valueMax > valueMin && (v > valueMax + tol || v < valueMin - tol) {
                    score = 1
                    lastReason = .outOfRange
                    previousRed = true
                }
            }
        }
        let flagged = score >= config.threshold && sinceFlag > config.cooldown
        if flagged { sinceFlag = 0 }
        // Red but not flagged (cooldown): report yellow, so the score ranks like the flags.
        if !flagged && score >= config.threshold { score = min(score, Self.yellowScore) }
        // Flagged points stay out of the long-run history, so an incident does not teach the
        // detector that incidents are normal.
        if !flagged && sinceFlag > config.shortWindow {
            history.push(raw)
            if let d = shiftDiff { shift?.record(d) }
            if let d = shortShiftDiff { shortShift?.record(d) }
            if let d = contextDiff { context?.record(d) }
        }
        if !flagged, let v = value, v.isFinite {
            valueMin = min(valueMin, v)
            valueMax = max(valueMax, v)
            valueCount += 1
        }
        return (score, flagged)
    }

    /// Bytes of element storage held by the checks (see `StreamingEngine.seriesStateBytes`).
    var bytesHeld: Int {
        recent.bytesHeld + history.bytesHeld + (shift?.bytesHeld ?? 0) + (shortShift?.bytesHeld ?? 0) + (context?.bytesHeld ?? 0)
    }

    var state: State {
        State(recent: recent.values,
              history: history.values,
              sinceFlag: sinceFlag,
              previousRed: previousRed, valueMin: valueMin, valueMax: valueMax, valueCount: valueCount,
              shift: shift?.state ?? restoredShift.0,
              shortShift: shortShift?.state ?? restoredShift.1,
              context: context?.state ?? restoredContext)
    }

    init(config: AnomalyConfig, state: State) {
        self.init(config: config)
        for v in state.recent.suffix(config.shortWindow) { recent.push(v) }
        for v in state.history.suffix(config.longWindow) { history.push(v) }
        sinceFlag = state.sinceFlag
        previousRed = state.previousRed
        valueMin = state.valueMin
        valueMax = state.valueMax
        valueCount = state.valueCount
        restoredShift = (state.shift, state.shortShift)
        restoredContext = state.context
    }
}
