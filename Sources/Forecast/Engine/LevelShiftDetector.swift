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
    private var sortedOlder: [Float] = []      // the older half of `values`, sorted
    private var sortedNewer: [Float] = []      // the newer half, sorted
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
        values.bytesHeld + (sortedOlder.capacity + sortedNewer.capacity) * MemoryLayout<Float>.stride + history.bytesHeld
    }

    private mutating func pushValue(_ value: Double) -> Double? {
        let w = window
        let v = Float(value)
        if !values.isFull {
            // Each half holds a window: sized once, not grown to the next power of two.
            if values.isEmpty { sortedOlder.reserveCapacity(w) } else if values.count == w { sortedNewer.reserveCapacity(w) }
            values.append(v)
            if values.count <= w { Self.insertSorted(&sortedOlder, v) } else { Self.insertSorted(&sortedNewer, v) }
            guard values.isFull else { return nil }
        } else {
            let moved = values[w]                      // oldest of the newer half
            let dropped = values.append(v)!            // oldest, leaves the older half
            Self.removeSorted(&sortedOlder, dropped)
            Self.insertSorted(&sortedOlder, moved)
            Self.removeSorted(&sortedNewer, moved)
            Self.insertSorted(&sortedNewer, v)
        }
        return trimmedMean(sortedNewer) - trimmedMean(sortedOlder)
    }

    /// Mean of a sorted window without its `trim` share at either end (summed afresh each
    /// time: no running sums whose rounding errors pile up).
    private func trimmedMean(_ sorted: [Float]) -> Double {
        let k = Int(Double(sorted.count) * trim)
        var sum = 0.0
        for i in k..<(sorted.count - k) { sum += Double(sorted[i]) }
        return sum / Double(sorted.count - 2 * k)
    }

    /// First index whose element is not less than `v`.
    private static func lowerBound(_ a: [Float], _ v: Float) -> Int {
        var lo = 0, hi = a.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if a[mid] < v { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    private static func insertSorted(_ a: inout [Float], _ v: Float) {
        a.insert(v, at: lowerBound(a, v))
    }

    private static func removeSorted(_ a: inout [Float], _ v: Float) {
        let i = lowerBound(a, v)
        if i < a.count && a[i] == v { a.remove(at: i) }
    }
}
