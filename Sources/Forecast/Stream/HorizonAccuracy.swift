/// Per-step accuracy of issued paths, and the completed path rows: a path's step k is matched
/// with the actual at its own time (issued_at + k steps), as forecast.path_steps matches it in
/// SQL, and MASE is scaled by the one-step naive error of the same targets, as everywhere.
/// Feed events in stream order per series: `observed` for every completed row, then `issued`
/// for the path made after it.
public struct HorizonAccuracy: Sendable {
    public struct Row: Sendable, Equatable {
        public var series: String
        public var issuedAt: Double
        public var time: Double
        public var step: Int
        public var predicted: Double
        public var lower: Double
        public var upper: Double
        /// nil when no row arrived at the step's time (a gap, or the end of the data).
        public var actual: Double?
    }

    public let horizon: Int
    /// Accuracy of steps 1...horizon.
    public private(set) var steps: [AccuracyAccumulator]
    /// Completed (and unmatched) path rows, when kept.
    public private(set) var rows: [Row] = []
    private let keepRows: Bool
    private var open: [String: [Double: [Row]]] = [:]

    public init(horizon: Int, keepRows: Bool = false) {
        self.horizon = horizon
        self.keepRows = keepRows
        steps = Array(repeating: AccuracyAccumulator(), count: horizon)
    }

    /// A path issued for `series` (its forecast's `path` and `issuedAt`).
    public mutating func issued(series: String, forecast f: Forecast) {
        guard let issued = f.issuedAt else { return }
        for p in f.path {
            open[series, default: [:]][p.time, default: []].append(
                Row(series: series, issuedAt: issued, time: p.time, step: p.step, predicted: p.value,
                    lower: p.lower, upper: p.upper, actual: nil))
        }
    }

    /// A row of `series` at `time` was used: completes the path steps for that time. Steps for
    /// earlier times that never got a row are closed without an actual.
    public mutating func observed(series: String, time: Double, actual: Double, previousActual: Double?) {
        guard var pending = open[series], !pending.isEmpty else { return }
        if var due = pending.removeValue(forKey: time) {
            for i in due.indices {
                let r = due[i]
                steps[r.step - 1].add(actual: actual, predicted: r.predicted, lower: r.lower, upper: r.upper,
                                      previous: previousActual)
                due[i].actual = actual
            }
            if keepRows { rows += due }
        }
        for t in pending.keys where t < time {
            if keepRows { rows += pending[t]! }
            pending[t] = nil
        }
        open[series] = pending
    }

    /// Closes every step still waiting (the end of the data); returns all kept rows in
    /// (series, issued_at, step) order.
    public mutating func finish() -> [Row] {
        if keepRows { for (_, byTime) in open { for (_, rs) in byTime { rows += rs } } }
        open = [:]
        rows.sort { ($0.series, $0.issuedAt, $0.step) < ($1.series, $1.issuedAt, $1.step) }
        return rows
    }

    /// Feeds one batch of the stream (completed rows and issued paths, interleaved by time).
    public mutating func add(_ batch: StreamBatch) {
        guard !batch.paths.isEmpty || !open.isEmpty else { return }
        // Per series, a row's completion comes before the path issued after it.
        var events: [(time: Double, kind: Int, index: Int)] = []
        events.reserveCapacity(batch.completed.count + batch.paths.count)
        for (i, c) in batch.completed.enumerated() { events.append((c.time, 0, i)) }
        for (i, p) in batch.paths.enumerated() { events.append((p.forecast.issuedAt ?? -.infinity, 1, i)) }
        events.sort { ($0.time, $0.kind, $0.index) < ($1.time, $1.kind, $1.index) }
        for e in events {
            if e.kind == 0 {
                let c = batch.completed[e.index]
                observed(series: c.series, time: c.time, actual: c.actual, previousActual: c.previousActual)
            } else {
                let p = batch.paths[e.index]
                issued(series: p.series, forecast: p.forecast)
            }
        }
    }
}
