/// Per-step accuracy of issued paths, and the completed path rows: a path's step k is matched
/// with the actual at its own time (issued_at + k steps), as forecast.path_steps matches it in
/// SQL, and MASE is scaled by the one-step naive error of the same targets, as everywhere.
/// Feed events in stream order per series: `observed` for every completed row, then `issued`
/// for the path made after it.
///
/// Beside the model it scores the two forecasts any path must beat, on the same targets:
/// persistence (the last value before the path, for every step) and the seasonal naive (the
/// actual one day before the target, or n days for targets more than a day ahead). `baselines`
/// holds all three over the targets that have a day-old actual.
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
        var persistence: Double?
        var seasonalNaive: Double?
    }

    /// Model, persistence and seasonal naive per step over the same targets.
    public struct Baselines: Sendable, Equatable {
        public var model = AccuracyAccumulator()
        public var persistence = AccuracyAccumulator()
        public var seasonalNaive = AccuracyAccumulator()
    }

    public let horizon: Int
    /// Accuracy of steps 1...horizon.
    public private(set) var steps: [AccuracyAccumulator]
    public private(set) var baselines: [Baselines]
    /// Completed (and unmatched) path rows, when kept.
    public private(set) var rows: [Row] = []
    private let keepRows: Bool
    private var open: [String: [Double: [Row]]] = [:]
    /// Recent actuals per series by time, and their times in order (to forget the oldest).
    private var recent: [String: (values: [Double: Double], times: [Double], head: Int)] = [:]
    private static let day = 86_400.0

    public init(horizon: Int, keepRows: Bool = false) {
        self.horizon = horizon
        self.keepRows = keepRows
        steps = Array(repeating: AccuracyAccumulator(), count: horizon)
        baselines = Array(repeating: Baselines(), count: horizon)
    }

    /// A path issued for `series` (its forecast's `path` and `issuedAt`).
    public mutating func issued(series: String, forecast f: Forecast) {
        guard let issued = f.issuedAt else { return }
        let values = recent[series]?.values
        let last = values?[issued]
        for p in f.path {
            let lag = max(1, ((p.time - issued) / Self.day).rounded(.up)) * Self.day
            open[series, default: [:]][p.time, default: []].append(
                Row(series: series, issuedAt: issued, time: p.time, step: p.step, predicted: p.value,
                    lower: p.lower, upper: p.upper, actual: nil, persistence: last, seasonalNaive: values?[p.time - lag]))
        }
    }

    /// A row of `series` at `time` was used: completes the path steps for that time. Steps for
    /// earlier times that never got a row are closed without an actual.
    public mutating func observed(series: String, time: Double, actual: Double, previousActual: Double?) {
        remember(series: series, time: time, value: actual)
        guard var pending = open[series], !pending.isEmpty else { return }
        if var due = pending.removeValue(forKey: time) {
            for i in due.indices {
                let r = due[i]
                steps[r.step - 1].add(actual: actual, predicted: r.predicted, lower: r.lower, upper: r.upper,
                                      previous: previousActual)
                if let p = r.persistence, let sn = r.seasonalNaive {
                    baselines[r.step - 1].model.add(actual: actual, predicted: r.predicted, lower: r.lower, upper: r.upper,
                                                    previous: previousActual)
                    baselines[r.step - 1].persistence.add(actual: actual, predicted: p, previous: previousActual)
                    baselines[r.step - 1].seasonalNaive.add(actual: actual, predicted: sn, previous: previousActual)
                }
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

    /// Keeps the actuals a seasonal-naive forecast of the next path could need: the last
    /// ceil(horizon steps / day) days and a little more.
    private mutating func remember(series: String, time: Double, value: Double) {
        var r = recent[series] ?? (values: [:], times: [], head: 0)
        r.values[time] = value
        r.times.append(time)
        let step = r.times.count > 1 ? max(1, time - r.times[r.times.count - 2]) : 1
        let keep = (Double(horizon) * step / Self.day).rounded(.up) * Self.day + 2 * step
        while r.head < r.times.count, r.times[r.head] < time - keep {
            r.values[r.times[r.head]] = nil
            r.head += 1
        }
        if r.head > 4096 {
            r.times.removeFirst(r.head)
            r.head = 0
        }
        recent[series] = r
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
