import Foundation

/// Level-shift check over one window length: d = trimmed mean of the last `window` values −
/// trimmed mean of the `window` values before them, judged against the mean and spread of the
/// last `historyLength` such d (two-sided Gaussian tail, on the anomaly score's log scale).
/// Calibrating d against its own history keeps the check scale-free and lets it absorb what a
/// series does anyway (its daily swing when the window is shorter than a day, say).
public struct LevelShiftDetector: Sendable {
    let window: Int
    let trim: Double
    // Values as Float32, as checkpoints store them (the spread floor below allows for it).
    private var values: Ring<Float>            // last 2·window values
    // Each half's sum and trimmed extremes. Sorted copies of the halves held as much again as
    // the values; a trimmed mean needs only the `trim` share at either end.
    private var older = TrimmedSum()
    private var newer = TrimmedSum()
    private(set) var history: SpacedHistory  // past differences
    private var gate = IncidentGate()
    var red: Bool { gate.red }
    var sinceFlag: Int { gate.sinceFlag }

    /// Differences kept at most: a history longer than this is sampled (`SpacedHistory`).
    static let maxHistorySamples = 1000

    init(window: Int, trim: Double, historyLength: Int) {
        self.window = window
        self.trim = trim
        values = Ring(capacity: 2 * window)
        history = SpacedHistory(span: historyLength, maxSamples: Self.maxHistorySamples)
    }

    /// The detector's memory, oldest first.
    public struct State: Sendable, Codable, Equatable {
        /// Points per window (0: not set yet).
        public var window = 0
        /// Values of both windows.
        public var values: [Double] = []
        /// Past differences of the windows.
        public var history: [Double] = []
        public var red = false
        public var sinceFlag = Int.max
    }

    var state: State {
        State(window: window, values: values.elements.map(Double.init), history: history.values, red: red, sinceFlag: sinceFlag)
    }

    /// Restores a detector; a state saved with another window length is cut to this one.
    init(window: Int, trim: Double, historyLength: Int, state: State) {
        self.init(window: window, trim: trim, historyLength: historyLength)
        for v in state.values.suffix(2 * window) { _ = pushValue(v) }
        history.restore(state.history)
        gate = IncidentGate(red: state.red, sinceFlag: state.sinceFlag)
    }

    /// Takes the next value. Returns the difference of the windows (nil until both are full)
    /// and the score if this point raises a shift flag. `level` is the size of the values seen,
    /// for a floor on the spread. The caller `record`s d into the history unless an incident
    /// is under way.
    mutating func push(_ v: Double, level: Double, threshold: Double, minHistory: Int) -> (d: Double?, score: Double?) {
        gate.tick()
        guard let d = pushValue(v) else { return (nil, nil) }
        guard history.pointsCovered >= minHistory else { return (d, nil) }
        let mean = history.mean
        // Floor far below any real change but above Float32 rounding of restored values.
        let std = max(history.variance.squareRoot(), 1e-5 * (level.isFinite ? level : 0), 1e-12)
        let tail = 0.5 * erfc(abs(d - mean) / std / 2.0.squareRoot())
        let score = min(1, max(0, -log10(max(tail, 1e-10)) / 10))
        return (d, gate.flags(score, threshold: threshold, rest: window) ? score : nil)
    }

    mutating func record(_ d: Double) { history.push(d) }

    /// Takes a value from before scoring began: it fills the windows and the history of d,
    /// and raises nothing.
    mutating func learn(_ v: Double) {
        if let d = pushValue(v) { history.push(d) }
    }

    var bytesHeld: Int {
        values.bytesHeld + older.bytesHeld + newer.bytesHeld + history.bytesHeld
    }

    /// Values cut from either end of a window before averaging.
    private var trimmed: Int { Int(Double(window) * trim) }

    private mutating func pushValue(_ value: Double) -> Double? {
        let w = window
        // A finite value beyond Float's range is held as the largest Float, so that the sums
        // stay finite (a sorted window left such a value out as an extreme just the same).
        let v = Float(value).isInfinite ? (value > 0 ? Float.greatestFiniteMagnitude : -Float.greatestFiniteMagnitude) : Float(value)
        if !values.isFull {
            values.append(v)
            guard values.isFull else { return nil }
            older = TrimmedSum(trimming: trimmed, (0..<w).map { values[$0] })
            newer = TrimmedSum(trimming: trimmed, (w..<(2 * w)).map { values[$0] })
        } else {
            let moved = values[w]                      // oldest of the newer half
            let dropped = values.append(v)!            // oldest, leaves the older half
            let ring = values
            older.replace(dropped, with: moved) { ring.forEach(in: 0..<w, $0) }
            newer.replace(moved, with: v) { ring.forEach(in: w..<(2 * w), $0) }
        }
        return newer.trimmedMean - older.trimmedMean
    }
}

/// A window's `k` smallest and `k` largest values and the sum of the rest, so its trimmed mean
/// (the mean without them) follows the window point by point. A value that leaves from among
/// the extremes is replaced by scanning the window (one value in about window / 2k); otherwise
/// a point costs a comparison or two. Only the middle values are summed, so a spike among the
/// extremes never enters the sum, and the sum is taken afresh at every scan and every `window`
/// replacements. In between it adds and removes the same Float32 values in Float64: exact while
/// the middle values lie within 2^29 of each other, so the mean is the one a sorted window gives.
struct TrimmedSum: Sendable {
    private var k = 0
    private var count = 0
    private var middle = 0.0
    private var low: [Float] = []    // the k smallest, ascending
    private var high: [Float] = []   // the k largest, ascending
    private var sinceFresh = 0

    init() {}

    init(trimming k: Int, _ window: [Float]) {
        self.k = k
        count = window.count
        rescan { body in for x in window { body(x) } }
    }

    var trimmedMean: Double { middle / Double(count - 2 * k) }

    var bytesHeld: Int { (low.capacity + high.capacity) * MemoryLayout<Float>.stride }

    /// `x` left the window and `y` joined it; `window` walks the window's values as it is now.
    mutating func replace(_ x: Float, with y: Float, window: ((Float) -> Void) -> Void) {
        sinceFresh += 1
        guard k > 0 else {
            if sinceFresh >= count { rescan(window) } else { middle += Double(y); middle -= Double(x) }
            return
        }
        // A value at or beyond either boundary leaves a gap only a scan can fill.
        guard x > low[k - 1] && x < high[0] && sinceFresh < count else {
            rescan(window)
            return
        }
        middle -= Double(x)
        if y < low[k - 1] {
            middle += Double(low.removeLast())
            low.insert(y, at: low.firstIndex { $0 > y } ?? low.count)
        } else if y > high[0] {
            middle += Double(high.removeFirst())
            high.insert(y, at: high.firstIndex { $0 > y } ?? high.count)
        } else {
            middle += Double(y)
        }
    }

    private mutating func rescan(_ window: ((Float) -> Void) -> Void) {
        sinceFresh = 0
        middle = 0
        low.removeAll(keepingCapacity: true)
        high.removeAll(keepingCapacity: true)
        let k = self.k
        guard k > 0 else {
            window { middle += Double($0) }
            return
        }
        if low.capacity < k { low.reserveCapacity(k); high.reserveCapacity(k) }
        window { x in
            if low.count < k || x < low[k - 1] {
                if low.count == k { low.removeLast() }
                low.insert(x, at: low.firstIndex { $0 > x } ?? low.count)
            }
            if high.count < k || x > high[0] {
                if high.count == k { high.removeFirst() }
                high.insert(x, at: high.firstIndex { $0 > x } ?? high.count)
            }
        }
        // The middle: the values strictly between the boundaries, and the copies of a boundary
        // value that its extremes do not hold.
        let lo = low[k - 1], hi = high[0]
        var strictly = 0, atLow = 0, atHigh = 0
        window { x in
            if x > lo && x < hi {
                middle += Double(x)
                strictly += 1
            } else if x == lo {
                atLow += 1
            } else if x == hi {
                atHigh += 1
            }
        }
        let rest = count - 2 * k - strictly
        guard rest > 0 else { return }
        if lo == hi {
            middle += Double(rest) * Double(lo)
            return
        }
        let extraLow = atLow - low.filter { $0 == lo }.count, extraHigh = atHigh - high.filter { $0 == hi }.count
        middle += Double(extraLow) * Double(lo) + Double(extraHigh) * Double(hi)
    }
}
