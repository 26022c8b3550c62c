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
    /// Points per slot (`slotPoints`): the seasons are held as means of consecutive points.
    let slot: Int
    /// The season in use (points), nil while none has shown itself.
    private(set) var period: Int?
    // Slot means in two bytes each (`HalfRing`).
    private var values: HalfRing               // last `capacity` slot means
    private var slotSum = 0.0                  // the slot being filled
    private var slotCount = 0
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

    /// Points per slot: pairs when a day has more than 144 points (steps under 10 minutes),
    /// else each point. A point's expectation is the median of its slot's means in the seasons
    /// before, and the check averages value − expectation over a quarter of a day, so pairs
    /// halve the check's memory (three weeks of 5-minute values were a third of a series') and
    /// change what it finds by little: on the NAB development files and the injected daily set
    /// the same flags, five of them 1–4 points earlier. Wider slots do more: with three points
    /// a slot the smoother expectation made a season pass the review on a noisy series
    /// (`ec2_cpu_utilization_24ae8d`) and two false flags followed.
    static func slotPoints(dayPoints: Int) -> Int {
        dayPoints > 144 && dayPoints % 2 == 0 ? 2 : 1
    }

    private var daySlots: Int { dayPoints / slot }
    private var windowSlots: Int { max(1, window / slot) }

    /// Candidate seasons: a day and a week at the series' step, within `maxSeasonPoints`.
    var candidates: [Int] { [dayPoints, 7 * dayPoints].filter { $0 <= Self.maxSeasonPoints } }

    /// Values kept: the seasons of the longest candidate, and a day and a window beyond them
    /// to judge that candidate on.
    var capacity: Int { (seasons * (candidates.last ?? 0) + dayPoints + window + slot - 1) / slot }

    init(dayPoints: Int, window: Int, seasons: Int, historyLength: Int) {
        self.dayPoints = dayPoints
        self.window = max(1, window)
        self.seasons = seasons
        self.historyLength = historyLength
        slot = Self.slotPoints(dayPoints: dayPoints)
        history = SpacedHistory(span: historyLength, maxSamples: LevelShiftDetector.maxHistorySamples)
        values = HalfRing(capacity: 1)   // every stored property is set before `capacity` can be read
        values = HalfRing(capacity: max(1, capacity))
    }

    /// The detector's memory, oldest first.
    public struct State: Sendable, Codable, Equatable {
        public var period = 0
        /// Points per slot of `values`; 0 in states before slots (engine state version 9),
        /// whose values are the points themselves.
        public var slot = 0
        /// The kept slot means. A state taken from a detector, or decoded from a checkpoint
        /// that stored them sealed, holds them in the ring's own form (`sealed`) and makes this
        /// list only when asked: a checkpoint and a restart pass them on without decoding and
        /// sealing each value again (that was most of their time).
        public var values: [Double] {
            get { sealed.map { $0.values.map(Double.init) } ?? plainValues }
            set { plainValues = newValue; sealed = nil }
        }
        private var plainValues: [Double] = []
        var sealed: HalfRing.Sealed?
        /// The slot being filled: the sum of its points and how many there are.
        public var slotSum = 0.0
        public var slotCount = 0
        /// The last window's value − expectation, in the ring's order from `deviationHead`,
        /// and their running sum (empty in states before version 9: they are made again from
        /// the values).
        public var deviations: [Double] = []
        public var deviationHead = 0
        public var deviationSum = 0.0
        public var history: [Double] = []
        public var red = false
        public var sinceFlag = Int.max
        /// Points since the season was last reviewed and since the tail was last fitted, so a
        /// restored check reviews and refits where the original would have.
        public var sinceReview = 0
        public var sinceFit = Int.max

        public init(period: Int = 0, slot: Int = 0, values: [Double] = [], history: [Double] = [], red: Bool = false,
                    sinceFlag: Int = .max, sinceReview: Int = 0, sinceFit: Int = .max) {
            self.period = period
            self.slot = slot
            plainValues = values
            self.history = history
            self.red = red
            self.sinceFlag = sinceFlag
            self.sinceReview = sinceReview
            self.sinceFit = sinceFit
        }

        private enum CodingKeys: String, CodingKey {
            case period, slot, values, slotSum, slotCount, deviations, deviationHead, deviationSum, history, red, sinceFlag, sinceReview, sinceFit
        }

        public init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            self.init(period: try c.decode(Int.self, forKey: .period), slot: try c.decodeIfPresent(Int.self, forKey: .slot) ?? 0,
                      values: try c.decode([Double].self, forKey: .values),
                      history: try c.decode([Double].self, forKey: .history), red: try c.decode(Bool.self, forKey: .red),
                      sinceFlag: try c.decode(Int.self, forKey: .sinceFlag), sinceReview: try c.decode(Int.self, forKey: .sinceReview),
                      sinceFit: try c.decode(Int.self, forKey: .sinceFit))
            slotSum = try c.decodeIfPresent(Double.self, forKey: .slotSum) ?? 0
            slotCount = try c.decodeIfPresent(Int.self, forKey: .slotCount) ?? 0
            deviations = try c.decodeIfPresent([Double].self, forKey: .deviations) ?? []
            deviationHead = try c.decodeIfPresent(Int.self, forKey: .deviationHead) ?? 0
            deviationSum = try c.decodeIfPresent(Double.self, forKey: .deviationSum) ?? 0
        }

        public func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(period, forKey: .period)
            try c.encode(slot, forKey: .slot)
            try c.encode(values, forKey: .values)
            try c.encode(slotSum, forKey: .slotSum)
            try c.encode(slotCount, forKey: .slotCount)
            try c.encode(deviations, forKey: .deviations)
            try c.encode(deviationHead, forKey: .deviationHead)
            try c.encode(deviationSum, forKey: .deviationSum)
            try c.encode(history, forKey: .history)
            try c.encode(red, forKey: .red)
            try c.encode(sinceFlag, forKey: .sinceFlag)
            try c.encode(sinceReview, forKey: .sinceReview)
            try c.encode(sinceFit, forKey: .sinceFit)
        }

        /// Equal when they hold the same values, in whichever form.
        public static func == (a: State, b: State) -> Bool {
            a.period == b.period && a.slot == b.slot && a.slotSum == b.slotSum && a.slotCount == b.slotCount
                && a.deviations == b.deviations && a.deviationHead == b.deviationHead && a.deviationSum == b.deviationSum
                && a.history == b.history && a.red == b.red && a.sinceFlag == b.sinceFlag
                && a.sinceReview == b.sinceReview && a.sinceFit == b.sinceFit
                && (a.sealed != nil && a.sealed == b.sealed || a.values == b.values)
        }
    }

    var state: State {
        var s = State(period: period ?? 0, slot: slot, history: history.values, red: gate.red, sinceFlag: gate.sinceFlag,
                      sinceReview: sinceReview, sinceFit: tail == nil ? Int.max : sinceFit)
        s.sealed = values.sealedForm
        s.slotSum = slotSum
        s.slotCount = slotCount
        s.deviations = deviations
        s.deviationHead = deviationHead
        s.deviationSum = deviationSum
        return s
    }

    /// Restores a detector. A state from before slots (its values are points) is put into
    /// slots here and its deviations are made again from its last points; a state with slots
    /// of another size (another step) starts afresh.
    init(dayPoints: Int, window: Int, seasons: Int, historyLength: Int, state: State) {
        self.init(dayPoints: dayPoints, window: window, seasons: seasons, historyLength: historyLength)
        let restoredPeriod = (state.period > 0 ? state.period : nil).flatMap { candidates.contains($0) ? $0 : nil }
        if state.slot == slot {
            // Everything a ring of this size saved, so its blocks are sealed where they were; a
            // longer save (other settings) is cut to the slots this check keeps.
            if let form = state.sealed, let ring = HalfRing(capacity: max(1, capacity), restoring: form) {
                values = ring
            } else {
                let saved = state.values
                for v in saved.count <= values.maxHeld ? saved[...] : saved.suffix(capacity) { values.append(Float(v)) }
            }
            slotSum = state.slotSum
            slotCount = min(max(0, state.slotCount), slot - 1)
            period = restoredPeriod
            if period != nil, state.deviations.count <= window, (0..<window).contains(state.deviationHead) {
                deviations = state.deviations
                deviationHead = state.deviations.count == window ? state.deviationHead : 0
                deviationSum = state.deviationSum
            }
        } else if state.slot == 0 {
            // All the points a ring of this size may hold, so one point a slot seals its blocks
            // where the saving ring did.
            let saved = state.values
            let points = saved.count <= values.maxHeld * slot ? saved[...] : saved.suffix(capacity * slot)
            for v in points { appendValue(v) }
            period = restoredPeriod
            if let p = period {
                // Point j's slot is j / slot of the slots made, of which the ring has dropped the oldest.
                let dropped = points.count / slot - values.count
                for j in max(0, points.count - window)..<points.count {
                    if let m = expectation(ofSlot: j / slot - dropped, period: p / slot) { pushDeviation(points[points.startIndex + j] - m) }
                }
            }
        }
        if state.slot == slot || state.slot == 0 { history.restore(state.history) }
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
        // The point's slot: the one just closed, or the one still open.
        let i = slotCount == 0 ? values.count - 1 : values.count
        guard let p = period, let m = expectation(ofSlot: i, period: p / slot) else { return nil }
        // A point that is its own slot is judged as the ring holds it, as the seasons are.
        pushDeviation((slot == 1 ? value(i) : v) - m)
        return deviations.count == window ? deviationSum / Double(window) : nil
    }

    private mutating func appendValue(_ v: Double) {
        slotSum += v
        slotCount += 1
        if slotCount == slot {
            values.append(Float(slotSum / Double(slot)))
            slotSum = 0
            slotCount = 0
        }
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

    /// The i-th kept slot mean, oldest first.
    private func value(_ i: Int) -> Double { Double(values[i]) }

    /// Median of slot i's means in the `seasons` seasons of `p` slots before it (i may be the
    /// open slot, `values.count`).
    private func expectation(ofSlot i: Int, period p: Int) -> Double? {
        guard i - seasons * p >= 0 else { return nil }
        // On the stack: this runs for every value of every series.
        return withUnsafeTemporaryAllocation(of: Double.self, capacity: seasons) { buffer -> Double in
            var same = buffer
            for k in 1...seasons { same[k - 1] = value(i - k * p) }
            same.sort()
            let n = seasons
            return n % 2 == 1 ? same[n / 2] : 0.5 * (same[n / 2 - 1] + same[n / 2])
        }
    }

    /// Chooses the season from the values kept: the candidate whose windowed deviations have
    /// the smallest spread, if that is clearly below the spread of the windows' departures
    /// from the mean of the day before them. A change of season starts the history afresh.
    private mutating func review() {
        let n = values.count
        // In slots: the pair means are what is kept.
        let w = windowSlots, day = daySlots
        // Spread of windowed means of a deviation series over the last `span` slots.
        func spread(_ span: Int, _ e: (Int) -> Double?) -> Double? {
            var ring: [Double] = [], sum = 0.0, means: [Double] = []
            for i in (n - span)..<n {
                guard let x = e(i) else { return nil }
                ring.append(x)
                sum += x
                if ring.count > w { sum -= ring.removeFirst() }
                if ring.count == w { means.append(sum / Double(w)) }
            }
            guard means.count >= 2 else { return nil }
            let mean = means.reduce(0, +) / Double(means.count)
            return (means.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(means.count)).squareRoot()
        }
        // The level of the day before: mean of the day's slots before each slot.
        var prefix = [0.0]
        prefix.reserveCapacity(n + 1)
        for i in 0..<n { prefix.append(prefix[i] + value(i)) }
        var best: (period: Int, spread: Double)?
        for candidate in candidates {
            let p = candidate / slot
            // Judged over the last week, or as much as is kept beyond the seasons it needs (a
            // day, for the week).
            let span = min(n - seasons * p, 7 * day)
            guard span >= day, span >= 2 * w, n - span >= day else { continue }
            let local = spread(span) { i in i >= day ? self.value(i) - (prefix[i] - prefix[i - day]) / Double(day) : nil }
            guard let seasonal = spread(span, { i in self.expectation(ofSlot: i, period: p).map { self.value(i) - $0 } }),
                  let local, local > 0 else { continue }
            // Better by more than chance: with one independent sample per window, the log of
            // the variance ratio of two equal samples of m has a spread of about 2/√m; the
            // season must beat the day's level at the one-sided 1 % level (z = 2.33).
            let m = Double(span) / Double(w)
            guard 2 * log(seasonal / local) < -2.33 * 2 / m.squareRoot() else { continue }
            if best == nil || seasonal < best!.spread { best = (candidate, seasonal) }
        }
        guard best?.period != period else { return }
        period = best?.period
        deviations = []
        deviationHead = 0
        deviationSum = 0
        history = SpacedHistory(span: historyLength, maxSamples: LevelShiftDetector.maxHistorySamples)
        tail = nil
        gate.red = false
    }
}
