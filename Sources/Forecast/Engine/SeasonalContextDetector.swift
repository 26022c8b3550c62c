import Foundation

/// Contextual check: are the last hours unlike the same hours of the seasons before?
///
/// A one-step forecast follows a holiday, a storm or a flat day as it unfolds, so its errors
/// stay small; the day is anomalous only against other such days. For each value this check
/// forms the expectation "the median of the values at the same phase of the last `seasons`
/// seasons" and averages value − expectation over the last `window` points (a quarter of a
/// day). That average is judged against its own history with a fitted tail (`TailModel`), so
/// a series whose hours vary a lot from day to day needs a larger departure.
///
/// The season comes from the data, not from settings: a day and a week at the series' step
/// are candidates, and a candidate is used only when its expectation predicts the windows
/// clearly better than the level of the day before them does (the spread of its windowed
/// deviations is smaller, by more than chance at the 1 % level); a week wins over a day when
/// it predicts better still (weekdays and weekends differ). The choice is reviewed daily until
/// a season is found and weekly after that. A series without such a season gets no
/// contextual score.
public struct SeasonalContextDetector: Sendable {
    let dayPoints: Int
    let window: Int
    let seasons: Int
    let historyLength: Int
    /// The season in use (points), nil while none has shown itself.
    private(set) var period: Int?
    // Two bytes a value (`HalfRing`): three weeks of values were most of a series' memory.
    private var values: HalfRing               // last `capacity` values
    private var deviations: [Double] = []     // last `window` value − expectation (ring)
    private var deviationHead = 0
    private var deviationSum = 0.0
    private(set) var history: SpacedHistory   // past windowed deviations
    private var tail: TailModel?
    private var sinceFit = Int.max
    private var sinceReview = 0
    private var gate = IncidentGate()

    /// Points between refits of the tail: a fit sorts the history, and the tail of a
    /// thousand-point history does not move in a few points.
    static let refitEvery = 16

    /// The longest season considered, in points (a week of 5-minute steps): it bounds the
    /// values a series keeps (and checkpoints) to `seasons` times this plus a window. Finer
    /// data is judged against days only.
    static let maxSeasonPoints = 2016

    /// Candidate seasons: a day and a week at the series' step, within `maxSeasonPoints`.
    var candidates: [Int] { [dayPoints, 7 * dayPoints].filter { $0 <= Self.maxSeasonPoints } }

    /// Values kept: the seasons of the longest candidate, and a day and a window beyond them
    /// to judge that candidate on.
    var capacity: Int { seasons * (candidates.last ?? 0) + dayPoints + window }

    init(dayPoints: Int, window: Int, seasons: Int, historyLength: Int) {
        self.dayPoints = dayPoints
        self.window = max(1, window)
        self.seasons = seasons
        self.historyLength = historyLength
        history = SpacedHistory(span: historyLength, maxSamples: LevelShiftDetector.maxHistorySamples)
        values = HalfRing(capacity: 1)   // every stored property is set before `capacity` can be read
        values = HalfRing(capacity: max(1, capacity))
    }

    /// The detector's memory, oldest first.
    public struct State: Sendable, Codable, Equatable {
        public var period = 0
        /// The kept values. A state taken from a detector, or decoded from a checkpoint that
        /// stored them sealed, holds them in the ring's own form (`sealed`) and makes this list
        /// only when asked: a checkpoint and a restart pass them on without decoding and
        /// sealing each value again (that was most of their time).
        public var values: [Double] {
            get { sealed.map { $0.values.map(Double.init) } ?? plainValues }
            set { plainValues = newValue; sealed = nil }
        }
        private var plainValues: [Double] = []
        var sealed: HalfRing.Sealed?
        public var history: [Double] = []
        public var red = false
        public var sinceFlag = Int.max
        /// Points since the season was last reviewed and since the tail was last fitted, so a
        /// restored check reviews and refits where the original would have.
        public var sinceReview = 0
        public var sinceFit = Int.max

        public init(period: Int = 0, values: [Double] = [], history: [Double] = [], red: Bool = false,
                    sinceFlag: Int = .max, sinceReview: Int = 0, sinceFit: Int = .max) {
            self.period = period
            plainValues = values
            self.history = history
            self.red = red
            self.sinceFlag = sinceFlag
            self.sinceReview = sinceReview
            self.sinceFit = sinceFit
        }

        init(period: Int, sealed: HalfRing.Sealed, history: [Double], red: Bool, sinceFlag: Int, sinceReview: Int, sinceFit: Int) {
            self.init(period: period, history: history, red: red, sinceFlag: sinceFlag, sinceReview: sinceReview, sinceFit: sinceFit)
            self.sealed = sealed
        }

        private enum CodingKeys: String, CodingKey { case period, values, history, red, sinceFlag, sinceReview, sinceFit }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(period: try c.decode(Int.self, forKey: .period), values: try c.decode([Double].self, forKey: .values),
                      history: try c.decode([Double].self, forKey: .history), red: try c.decode(Bool.self, forKey: .red),
                      sinceFlag: try c.decode(Int.self, forKey: .sinceFlag), sinceReview: try c.decode(Int.self, forKey: .sinceReview),
                      sinceFit: try c.decode(Int.self, forKey: .sinceFit))
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(period, forKey: .period)
            try c.encode(values, forKey: .values)
            try c.encode(history, forKey: .history)
            try c.encode(red, forKey: .red)
            try c.encode(sinceFlag, forKey: .sinceFlag)
            try c.encode(sinceReview, forKey: .sinceReview)
            try c.encode(sinceFit, forKey: .sinceFit)
        }

        /// Equal when they hold the same values, in whichever form.
        public static func == (a: State, b: State) -> Bool {
            a.period == b.period && a.history == b.history && a.red == b.red && a.sinceFlag == b.sinceFlag
                && a.sinceReview == b.sinceReview && a.sinceFit == b.sinceFit
                && (a.sealed != nil && a.sealed == b.sealed || a.values == b.values)
        }
    }

    var state: State {
        State(period: period ?? 0, sealed: values.sealedForm, history: history.values,
              red: gate.red, sinceFlag: gate.sinceFlag, sinceReview: sinceReview, sinceFit: tail == nil ? Int.max : sinceFit)
    }

    /// Restores a detector; its deviations are recomputed from the values.
    init(dayPoints: Int, window: Int, seasons: Int, historyLength: Int, state: State) {
        self.init(dayPoints: dayPoints, window: window, seasons: seasons, historyLength: historyLength)
        let restoredPeriod = state.period > 0 ? state.period : nil
        // Everything a ring of this size saved, so its blocks are sealed where they were; a
        // longer save (other settings) is cut to the values this check keeps.
        if let form = state.sealed, let ring = HalfRing(capacity: max(1, capacity), restoring: form) {
            values = ring
        } else {
            let saved = state.values
            for v in saved.count <= values.maxHeld ? saved[...] : saved.suffix(capacity) { appendValue(v) }
        }
        period = restoredPeriod.flatMap { candidates.contains($0) ? $0 : nil }
        if period != nil {
            let n = values.count
            for back in stride(from: min(window, n) - 1, through: 0, by: -1) {
                if let e = deviation(at: n - 1 - back) { pushDeviation(e) }
            }
        }
        history.restore(state.history)
        gate = IncidentGate(red: state.red, sinceFlag: state.sinceFlag)
        sinceReview = state.sinceReview
        if state.sinceFit < Self.refitEvery && history.count > 0 {
            tail = TailModel(fitting: history.values, floor: values.resolution)
            sinceFit = state.sinceFit
        }
    }

    /// Takes a value from before scoring began: it fills the seasons and the history, and
    /// raises nothing.
    mutating func learn(_ v: Double) {
        if let d = push(v) { record(d) }
    }

    /// Takes the next value. Returns the windowed deviation (nil while there is none) and the
    /// score if this point raises a contextual flag. The caller `record`s the deviation into
    /// the history unless an incident is under way.
    mutating func score(_ v: Double, threshold: Double, minHistory: Int) -> (d: Double?, score: Double?) {
        gate.tick()
        guard let d = push(v) else { return (nil, nil) }
        // Three days of windows, as the day-long level-shift check waits for: windows a
        // quarter day long overlap, so a single day holds only four independent ones, too few
        // to fit a tail to.
        guard history.pointsCovered >= max(minHistory, 3 * dayPoints) else { return (d, nil) }
        if tail == nil || sinceFit >= Self.refitEvery {
            tail = TailModel(fitting: history.values, floor: values.resolution)
            sinceFit = 0
        }
        sinceFit += 1
        let s = tail!.score(d, history: history)
        return (d, gate.flags(s, threshold: threshold, rest: window) ? s : nil)
    }

    mutating func record(_ d: Double) { history.push(d) }

    // MARK: internals

    private mutating func push(_ v: Double) -> Double? {
        appendValue(v)
        sinceReview += 1
        // Daily while no season is in use, weekly once one is: a borderline series must not
        // flip between seasons, and each change starts the history afresh.
        if sinceReview >= (period == nil ? dayPoints : 7 * dayPoints) {
            sinceReview = 0
            review()
        }
        guard period != nil, let e = deviation(at: values.count - 1) else { return nil }
        pushDeviation(e)
        return deviations.count == window ? deviationSum / Double(window) : nil
    }

    private mutating func appendValue(_ v: Double) {
        values.append(Float(v))
    }

    var bytesHeld: Int {
        values.bytesHeld + deviations.capacity * MemoryLayout<Double>.stride + history.bytesHeld
    }

    private mutating func pushDeviation(_ e: Double) {
        if deviations.count < window {
            if deviations.isEmpty { deviations.reserveCapacity(window) }
            deviations.append(e)
        } else {
            deviationSum -= deviations[deviationHead]
            deviations[deviationHead] = e
            deviationHead = (deviationHead + 1) % window
        }
        deviationSum += e
        // Renew the running sum now and then, so rounding does not pile up.
        if deviationHead == 0 { deviationSum = deviations.reduce(0, +) }
    }

    /// The i-th kept value, oldest first.
    private func value(_ i: Int) -> Double { Double(values[i]) }

    /// Value − median of the same phase of the `seasons` seasons before, for kept value i.
    private func deviation(at i: Int, period p: Int? = nil) -> Double? {
        guard let p = p ?? period, i - seasons * p >= 0 else { return nil }
        // On the stack: this runs for every value of every series.
        let m = withUnsafeTemporaryAllocation(of: Double.self, capacity: seasons) { buffer -> Double in
            var same = buffer
            for k in 1...seasons { same[k - 1] = value(i - k * p) }
            same.sort()
            let n = seasons
            return n % 2 == 1 ? same[n / 2] : 0.5 * (same[n / 2 - 1] + same[n / 2])
        }
        return value(i) - m
    }

    /// Chooses the season from the values kept: the candidate whose windowed deviations have
    /// the smallest spread, if that is clearly below the spread of the windows' departures
    /// from the mean of the day before them. A change of season starts the history afresh.
    private mutating func review() {
        let n = values.count
        // Spread of windowed means of a deviation series over the last `span` points.
        func spread(_ span: Int, _ e: (Int) -> Double?) -> Double? {
            var ring: [Double] = [], sum = 0.0, means: [Double] = []
            for i in (n - span)..<n {
                guard let x = e(i) else { return nil }
                ring.append(x)
                sum += x
                if ring.count > window { sum -= ring.removeFirst() }
                if ring.count == window { means.append(sum / Double(window)) }
            }
            guard means.count >= 2 else { return nil }
            let mean = means.reduce(0, +) / Double(means.count)
            return (means.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(means.count)).squareRoot()
        }
        // The level of the day before: mean of the `dayPoints` values before each point.
        var prefix = [0.0]
        prefix.reserveCapacity(n + 1)
        for i in 0..<n { prefix.append(prefix[i] + value(i)) }
        var best: (period: Int, spread: Double)?
        for p in candidates {
            // Judged over the last week, or as much as is kept beyond the seasons it needs (a
            // day, for the week).
            let span = min(n - seasons * p, 7 * dayPoints)
            guard span >= dayPoints, span >= 2 * window, n - span >= dayPoints else { continue }
            let local = spread(span) { i in i >= self.dayPoints ? self.value(i) - (prefix[i] - prefix[i - self.dayPoints]) / Double(self.dayPoints) : nil }
            guard let seasonal = spread(span, { self.deviation(at: $0, period: p) }), let local, local > 0 else { continue }
            // Better by more than chance: with one independent sample per window, the log of
            // the variance ratio of two equal samples of m has a spread of about 2/√m; the
            // season must beat the day's level at the one-sided 1 % level (z = 2.33).
            let m = Double(span) / Double(window)
            guard 2 * log(seasonal / local) < -2.33 * 2 / m.squareRoot() else { continue }
            if best == nil || seasonal < best!.spread { best = (p, seasonal) }
        }
        if best?.period != period {
            period = best?.period
            deviations = []
            deviationHead = 0
            deviationSum = 0
            history = SpacedHistory(span: historyLength, maxSamples: LevelShiftDetector.maxHistorySamples)
            tail = nil
            gate.red = false
        }
    }
}
