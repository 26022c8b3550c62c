/// The stream as the daemon and `replay` both drive it: raw rows in, one typed batch out. It owns
/// what is common to every source — turning a row into an observation or a counted rejection,
/// the resume protocol after a restart, and the bookkeeping a writer needs (watermarks,
/// completed predictions with the previous actual for MASE, new forecasts, retrains) — and knows
/// nothing of where rows come from or where the batch goes. `ForecastStore` maps a batch to SQL,
/// the replay writers map it to CSV, JSON and SVG.
public final class StreamSession {
    public let engine: StreamingEngine
    public var config: EngineConfig { engine.config }
    /// The last usable value per series: the persistence forecast a completed prediction is
    /// compared with (MASE), here rather than in each writer so both use the same one.
    private var previousActual: [String: Double] = [:]
    /// The newest time read per series: a row at or before it arrived too late to be forecast.
    private var watermarks: [String: Double] = [:]
    private var retrainsSeen = 0

    public init(config: EngineConfig, training: StreamingEngine.TrainingMode) throws {
        engine = try StreamingEngine(config: config, mode: training)
    }

    // MARK: resume

    /// Rows per series a restart feeds back through `resume`: enough for the training history,
    /// the warm-up and one window.
    public var historyNeeded: Int { max(config.history, config.warmup, config.seqLength) + 2 }

    /// A forecast that was published before a restart and still waits for its actual.
    public struct PendingForecast: Sendable, Equatable {
        public var series: String
        public var forecast: Forecast
        public init(series: String, forecast: Forecast) {
            self.series = series
            self.forecast = forecast
        }
    }

    public struct ResumeReport: Sendable {
        /// (model key, version) of every model put back; the key is "" for a shared model.
        public var models: [(key: String, version: Int)] = []
        /// Stored states or checkpoints that could not be used, with the reason (they are retrained).
        public var warnings: [String] = []
        public var historyRows = 0
        /// Series that can be forecast but had nothing pending: publish these now.
        public var batch = StreamBatch()
    }

    /// What a restart asks the source for, for one series: its rows up to its watermark that
    /// come after `after` (the end of the window its stored state brought back), or with `after`
    /// nil its newest rows. At most `historyNeeded` either way, newest first taken.
    public struct HistoryRequest: Sendable, Equatable {
        public var series: String
        public var after: Double?
        public init(series: String, after: Double?) {
            self.series = series
            self.after = after
        }
    }

    /// Goes on where a stopped stream left off: the stored engine states (one per model, in
    /// `SnapshotCodec` form, each series' window in it), then from the source only what the
    /// states do not hold: `history` is asked, `pageSize` series at a time, for the rows of each
    /// series whose watermark is past its window (oldest first; all of a series' rows in one
    /// answer). After a clean stop that is none. Then the published forecasts still pending, so
    /// the next value is scored against what users saw. Unusable states are reported and
    /// retrained, never fatal.
    /// `watermarks` are the committed newest times per series (rows at or before them are late).
    /// `storedVersions` (model key → newest stored version, "" for a shared model) keeps new
    /// versions above every stored one, also when the stored models no longer fit.
    /// A state the source fails to give (`StoredState.ReadFailed`) is thrown, not retrained.
    public func resume(states: [StoredState], pageSize: Int = 2000,
                       history: ([HistoryRequest]) throws -> [RawRow], pending: [PendingForecast],
                       watermarks: [String: Double] = [:], storedVersions: [String: Int] = [:]) throws -> ResumeReport {
        var report = try restore(states, watermarks: watermarks, storedVersions: storedVersions)
        let requests = watermarks.compactMap { key, w -> HistoryRequest? in
            let end = engine.resumeAfter(series: key)
            return end.map { $0 < w } ?? true ? HistoryRequest(series: key, after: end) : nil
        }.sorted { $0.series < $1.series }
        var first = 0
        while first < requests.count {
            let page = Array(requests[first..<min(requests.count, first + max(1, pageSize))])
            prime(try history(page), into: &report)
            first += page.count
        }
        finishResume(pending: pending, into: &report)
        return report
    }

    /// The same with the rows given: the newest `historyNeeded` of each series up to its
    /// watermark, oldest first (what a state without windows needs; rows a restored window holds
    /// already are skipped).
    public func resume(states: [StoredState], history: [RawRow], pending: [PendingForecast],
                       watermarks: [String: Double] = [:], storedVersions: [String: Int] = [:]) throws -> ResumeReport {
        var report = try restore(states, watermarks: watermarks, storedVersions: storedVersions)
        prime(history, into: &report)
        finishResume(pending: pending, into: &report)
        return report
    }

    private func restore(_ states: [StoredState], watermarks: [String: Double],
                         storedVersions: [String: Int]) throws -> ResumeReport {
        self.watermarks = watermarks
        engine.numberVersions(above: storedVersions)
        var report = ResumeReport()
        // Each state decoded into the engine's own form, a series at a time (its checks built
        // as it is decoded, its step known from its window); installed only when every model
        // fits (one that does not means the configuration changed: all retrain).
        var restored: [RestoredGroup] = []
        var misfit: ModelDoesNotFit?
        // One that does not fit is known from its header, before its series are read; the
        // others are then not read at all.
        for s in states where misfit == nil {
            do { restored.append(try engine.prepareRestore(s)) } catch let e as ModelDoesNotFit {
                misfit = misfit ?? e
            } catch let e as StoredState.ReadFailed {
                throw e
            } catch {
                report.warnings.append("\(s.label) has an unusable engine state (\(error)); it will be retrained")
            }
        }
        if let misfit {
            report.warnings.append("stored models do not fit the configuration (\(misfit)); training new ones")
        } else {
            engine.install(restored)
            report.models = restored.map { ($0.key, $0.version) }
            previousActual.merge(engine.lastValues) { _, window in window }
        }
        return report
    }

    /// Rows up to the watermarks into the windows (not scored, not counted as new points).
    private func prime(_ history: [RawRow], into report: inout ResumeReport) {
        var observations: [Observation] = []
        var flagged: [Bool] = []
        observations.reserveCapacity(history.count)
        // Each series' last value, stored when the next series begins (rows of a series
        // mostly come together: one dictionary write per series, not per row).
        var lastValue: (series: String, value: Double)?
        for r in history {
            guard let t = r.time, t.isFinite, r.rejected == nil else { continue }
            observations.append(Observation(series: r.series, time: t, value: r.value.number))
            flagged.append(r.flagged)
            if let v = r.value.number {
                if let l = lastValue, l.series != r.series { previousActual[l.series] = l.value }
                lastValue = (r.series, v)
            }
        }
        if let l = lastValue { previousActual[l.series] = l.value }
        report.historyRows += observations.count
        engine.prime(observations, flagged: flagged, newest: historyNeeded)
    }

    private func finishResume(pending: [PendingForecast], into report: inout ResumeReport) {
        engine.settleRestoredChecks()
        retrainsSeen = engine.allRetrains.count
        engine.restorePending(pending.map { ($0.series, $0.forecast) })
        // Deferred: the jobs wait in `takeTrainingJobs()`; inline: the model is there already
        // and the forecasts below use it.
        engine.trainFirstModelsIfDue()
        report.batch = forecastMissing()
        report.batch.retrains = newRetrains()
    }

    // MARK: the stream

    /// Runs a batch of rows (any mix of series, each series in time order) through the engine.
    /// Rows with a time after `notAfter` (the clock plus the allowed skew, for live sources) are
    /// `bad_time`: one far-future row would otherwise make every later row of its series late.
    public func process(_ rows: [RawRow], notAfter: Double? = nil) -> StreamBatch {
        var out = StreamBatch()
        out.rows = [StreamBatch.RowOutcome](repeating: StreamBatch.RowOutcome(), count: rows.count)
        var observations: [Observation] = []
        var positions: [Int] = []
        var ownIssue: [RowIssue?] = []
        observations.reserveCapacity(rows.count)
        var tracker = SeriesTracker()
        for (i, r) in rows.enumerated() {
            var why = r.rejected
            if why == nil {
                if let t = r.time, t.isFinite, t <= (notAfter ?? .infinity) {
                    if let w = watermarks[r.series], t <= w { why = .late }
                } else {
                    why = .badTime
                }
            }
            if let why {
                out.rows[i].issue = why
                out.rejections.append(.init(series: r.series, time: r.time, issue: why))
                if why.isSourceLevel {
                    out.sourceBadRows[why, default: 0] += 1
                } else {
                    // A bad time moves no watermark.
                    tracker.touch(r.series, time: why == .badTime ? nil : r.time, issue: why)
                }
                continue
            }
            let t = r.time!
            observations.append(Observation(series: r.series, time: t, value: r.value.number))
            positions.append(i)
            ownIssue.append(r.value.issue)
        }
        let scored = engine.process(observations)
        for (k, s) in scored.enumerated() {
            let i = positions[k]
            let o = s.observation
            // A value the reader could not use is named for what was wrong with it, not for the
            // gap the engine saw.
            if let why = ownIssue[k] ?? s.rejected {
                out.rows[i].issue = why
                out.rejections.append(.init(series: o.series, time: o.time, issue: why))
                tracker.touch(o.series, time: o.time, issue: why)
                continue
            }
            let value = o.value!
            tracker.touch(o.series, time: o.time, issue: nil, value: value)
            if let f = s.forecast {
                out.rows[i].forecast = f
                out.rows[i].anomalyScore = s.anomalyScore
                out.rows[i].isAnomaly = s.isAnomaly
                out.rows[i].reason = s.reason
                out.completed.append(.init(series: o.series, time: o.time, forecast: f, actual: value, previousActual: previousActual[o.series],
                                           anomalyScore: s.anomalyScore, isAnomaly: s.isAnomaly, reason: s.reason))
            }
            previousActual[o.series] = value
            if let n = s.next {
                tracker.next[o.series] = n
                if !n.path.isEmpty { out.paths.append(.init(series: o.series, forecast: n)) }
            }
        }
        out.series = tracker.updates(modelVersion: engine.modelVersion(for:))
        for u in out.series { if let w = u.watermark { watermarks[u.series] = max(watermarks[u.series] ?? w, w) } }
        for u in out.series { if let f = tracker.next[u.series] { out.forecasts.append(.init(series: u.series, forecast: f)) } }
        out.retrains = newRetrains()
        return out
    }

    // MARK: training off the stream (the daemon's background mode)

    /// Trainings that came due, to run off the ingest path (background mode).
    public func takeTrainingJobs() -> [TrainingJob] { engine.takeTrainingJobs() }

    /// Installs finished trainings and forecasts every series that can now have one but has
    /// none pending (after a first model), in one batch to publish.
    public func install(_ outcomes: [TrainingOutcome]) -> StreamBatch {
        for o in outcomes where engine.owns(o.job) { engine.install(o) }
        var batch = forecastMissing()
        batch.retrains = newRetrains()
        return batch
    }

    private func forecastMissing() -> StreamBatch {
        var batch = StreamBatch()
        batch.forecasts = engine.forecastMissing().map { .init(series: $0.series, forecast: $0.forecast) }
        batch.paths = batch.forecasts.filter { !$0.forecast.path.isEmpty }
        return batch
    }

    private func newRetrains() -> [RetrainRecord] {
        let all = engine.allRetrains
        guard all.count > retrainsSeen else { return [] }
        defer { retrainsSeen = all.count }
        return Array(all[retrainsSeen...])
    }

    /// The installed version per model key ("" for a shared model).
    public var modelVersions: [String: Int] { engine.modelVersions }

    /// The engine state of every model, for a checkpoint.
    public func snapshot() -> [GroupSnapshot] { engine.snapshot() }
    /// The same, encoded series by series (what a checkpoint writes; see
    /// `StreamingEngine.encodedSnapshots()`).
    public func encodedSnapshots() -> [(group: GroupSnapshot, bytes: [UInt8])] { engine.encodedSnapshots() }
    /// Every trained model's state as it is now, encoded later a part at a time (a checkpoint
    /// written beside the next rows; see `StreamingEngine.stateWriters(threads:)`).
    public func stateWriters(threads: Int = 1) -> [StateWriter] { engine.stateWriters(threads: threads) }
}

/// Per-series bookkeeping of one batch, in order of first appearance.
private struct SeriesTracker {
    var order: [String] = []
    var byKey: [String: StreamBatch.SeriesUpdate] = [:]
    var next: [String: Forecast] = [:]

    mutating func touch(_ series: String, time: Double?, issue: RowIssue?, value: Double? = nil) {
        if byKey[series] == nil {
            order.append(series)
            byKey[series] = StreamBatch.SeriesUpdate(series: series)
        }
        byKey[series]!.rows += 1
        if let time { byKey[series]!.watermark = max(byKey[series]!.watermark ?? time, time) }
        if let issue { byKey[series]!.badRows[issue, default: 0] += 1 }
        if let value, let time {
            byKey[series]!.lastValue = value
            byKey[series]!.lastTime = time
        }
    }

    func updates(modelVersion: (String) -> Int?) -> [StreamBatch.SeriesUpdate] {
        order.map { key in
            var u = byKey[key]!
            u.modelVersion = modelVersion(key)
            return u
        }
    }
}

/// What one batch of the stream produced, for a writer to store.
public struct StreamBatch: Sendable {
    /// One per input row, in input order (replay writes one output row per input row).
    public struct RowOutcome: Sendable, Equatable {
        public var issue: RowIssue?
        /// The forecast that was made for this row before it arrived.
        public var forecast: Forecast?
        public var anomalyScore = 0.0
        public var isAnomaly = false
        /// For a flagged row: the check that fired.
        public var reason: AnomalyReason?
        public init() {}
    }

    /// A forecast whose actual arrived.
    public struct Completed: Sendable, Equatable {
        public var series: String
        /// The time of the observation that completed it (the forecast's own time is the step it
        /// expected; after a gap the two differ).
        public var time: Double
        public var forecast: Forecast
        public var actual: Double
        /// The series' last usable value before this one: the persistence forecast for MASE.
        public var previousActual: Double?
        public var anomalyScore: Double
        public var isAnomaly: Bool
        /// For a flagged prediction: the check that fired.
        public var reason: AnomalyReason? = nil
    }

    /// A forecast for a series' next step, waiting for its actual.
    public struct NewForecast: Sendable, Equatable {
        public var series: String
        public var forecast: Forecast
    }

    public struct Rejection: Sendable, Equatable {
        public var series: String
        public var time: Double?
        public var issue: RowIssue
    }

    /// What a batch did to one series.
    public struct SeriesUpdate: Sendable, Equatable {
        public var series: String
        /// The newest time read for the series (used or not).
        public var watermark: Double?
        /// Rows read, used or not.
        public var rows = 0
        public var lastValue: Double?
        public var lastTime: Double?
        public var modelVersion: Int?
        public var badRows: [RowIssue: Int] = [:]
        public init(series: String) { self.series = series }
    }

    public var rows: [RowOutcome] = []
    public var completed: [Completed] = []
    /// At most one per series: its newest.
    public var forecasts: [NewForecast] = []
    /// Every forecast of the batch that issued a path (horizon > 1), in order: a catch-up batch
    /// issues one per row, and every one is stored.
    public var paths: [NewForecast] = []
    public var rejections: [Rejection] = []
    public var series: [SeriesUpdate] = []
    /// Rows that belong to no series (`null_series`, `bad_series`), counted against the source.
    public var sourceBadRows: [RowIssue: Int] = [:]
    /// Retrainings finished in this batch (inline mode) or installed with it, accepted or not.
    public var retrains: [RetrainRecord] = []

    public init() {}

    public var isEmpty: Bool { completed.isEmpty && forecasts.isEmpty && paths.isEmpty && series.isEmpty && sourceBadRows.isEmpty }
}
