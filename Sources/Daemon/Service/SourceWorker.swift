import Forecast
import Foundation
import Ingest
import Logging

/// Settings that SIGHUP can change while the daemon runs.
struct LiveSettings: Sendable, Equatable {
    var pollInterval: Double
    var batchRows: Int
    var checkpointsKept: Int
    var checkpointInterval: Double
}

/// The ingest loop of one source, on a thread of its own (libpq blocks): wait for NOTIFY or the
/// poll timer, read rows after the watermark, run them through the engine, and commit
/// predictions, scores and the new watermark in one transaction. Survives the database going
/// away (reconnects with backoff, then retries the commit it could not make) and a broken
/// source table (counts it per series, logs once, retries).
final class SourceWorker: @unchecked Sendable {
    let source: SourceConfig
    let health: SourceHealth
    private let engineConfig: EngineConfig
    private let databaseURL: String
    private let logger: Logger
    private let lock = NSLock()
    private var _settings: LiveSettings
    private var _stopping = false

    private var engine: StreamingEngine?
    private var store: ForecastStore?
    private var listener: PostgresConnection?
    private let trainer: TrainingWorker
    private var unsaved: ForecastStore.Cycle?
    private var progress: [String: ForecastStore.SeriesProgress] = [:]
    private var logged: Set<String> = []
    private var sourceBroken = false
    private var lastCheckpoint = Date()

    init(source: SourceConfig, engine: EngineConfig, databaseURL: String, settings: LiveSettings, logger: Logger) {
        self.source = source
        engineConfig = engine
        self.databaseURL = databaseURL
        _settings = settings
        var l = logger
        l[metadataKey: "source"] = .string(source.table.display)
        self.logger = l
        health = SourceHealth(name: source.table.display)
        trainer = TrainingWorker(name: source.table.display)
    }

    var settings: LiveSettings {
        get { lock.lock(); defer { lock.unlock() }; return _settings }
        set { lock.lock(); _settings = newValue; lock.unlock() }
    }

    var stopping: Bool {
        lock.lock(); defer { lock.unlock() }
        return _stopping
    }

    func requestStop() {
        lock.lock()
        _stopping = true
        lock.unlock()
    }

    /// True once the engine was built from the database (models loaded): part of READY.
    private(set) var initialized = false

    // MARK: the loop

    func run() {
        var backoff = 0.5
        while !stopping {
            do {
                if store == nil { try connect() }
                if let c = unsaved {
                    try commit(c)
                    unsaved = nil
                }
                try installFinishedTraining()
                let read = try cycle()
                backoff = 0.5
                if sourceBroken {
                    sourceBroken = false
                    logger.notice("source readable again")
                }
                if read >= settings.batchRows { continue }  // catching up: no waiting
                try waitForWork()
            } catch let e as PostgresError where e.isConnectionProblem {
                health.databaseDown()
                logOnce("db", level: .warning, "database unavailable, retrying with backoff: \(e.message)")
                disconnect()
                sleep(seconds: backoff)
                backoff = min(backoff * 2, 30)
            } catch let e as PostgresError where Self.isSourceProblem(e) {
                // The table was dropped or renamed, or a column changed type: count it against
                // the series of this source, say it once, and try again next poll.
                if !sourceBroken {
                    sourceBroken = true
                    logger.error("cannot read source: \(e.message)")
                    try? recordSourceProblem(e)
                }
                health.progressed(observations: 0, series: progress.count, lag: nil)
                disconnectStore()
                sleep(seconds: settings.pollInterval)
            } catch {
                logger.error("cycle failed: \(error)")
                disconnect()
                sleep(seconds: backoff)
                backoff = min(backoff * 2, 30)
            }
        }
        shutdown()
    }

    static func isSourceProblem(_ e: PostgresError) -> Bool {
        guard let s = e.sqlState else { return e.kind == .query }
        // undefined table/column, wrong type, privileges, invalid text for a cast
        return ["42P01", "42703", "42804", "42501", "22P02", "42883", "3F000"].contains(s)
    }

    private func connect() throws {
        let conn = try PostgresConnection(url: databaseURL)
        let resolved = try source.sourceTable.resolve(on: conn)
        let store = try ForecastStore(connection: conn, source: resolved)
        let listener = try PostgresConnection(url: databaseURL)
        try listener.listen("forecastd")
        if logged.remove("db") != nil { logger.notice("database reachable again") }
        self.store = store
        self.listener = listener
        progress = try store.progress()
        if engine == nil { try buildEngine(store) }
        health.progressed(observations: 0, series: progress.count, lag: nil)
    }

    private func disconnectStore() {
        store?.connection.close()
        store = nil
    }

    private func disconnect() {
        disconnectStore()
        listener?.close()
        listener = nil
    }

    /// A restart goes on from the last checkpoint: models and per-series state from
    /// forecast.models, windows from the source's own rows up to the watermark, and the
    /// published pending forecasts, so the next value is scored against what users saw.
    private func buildEngine(_ store: ForecastStore) throws {
        let engine = try StreamingEngine(config: engineConfig, mode: .deferred)
        var snapshots: [GroupSnapshot] = []
        for m in try store.latestModels() {
            guard let state = m.engineState else { continue }
            do { snapshots.append(try SnapshotCodec.decode(state)) } catch {
                logger.warning("model \(m.modelKey) version \(m.version) has an unusable engine state (\(error)); it will be retrained")
            }
        }
        do {
            try engine.restore(snapshots)
        } catch {
            logger.warning("stored models do not fit the configuration (\(error)); training new ones")
        }
        let keep = max(engineConfig.history, engineConfig.warmup, engineConfig.seqLength) + 2
        let history = try store.history(perSeries: keep)
        engine.prime(history.compactMap { r in
            guard let t = r.time else { return nil }
            return Observation(series: r.series, time: t, value: r.valueText.flatMap { Double($0) })
        })
        for p in try store.pending() {
            engine.restorePending(series: p.series, forecast: Forecast(
                time: p.time, value: p.predicted, lower: p.lower ?? p.predicted, upper: p.upper ?? p.predicted,
                modelVersion: p.modelVersion ?? 0))
        }
        self.engine = engine
        try publishMissingForecasts()
        initialized = true
        let versions = snapshots.map { "\($0.key.isEmpty ? "shared" : $0.key) v\($0.version)" }
        logger.info("loaded \(snapshots.count) model(s) \(versions.prefix(5).joined(separator: ", ")), \(history.count) history rows, \(progress.count) series")
    }

    private func waitForWork() throws {
        let deadline = Date().addingTimeInterval(settings.pollInterval)
        while !stopping && Date() < deadline {
            guard let listener else { return }
            let got = try listener.waitForNotifications(timeout: min(0.25, max(0, deadline.timeIntervalSinceNow)))
            if got.contains(where: { $0.payload == source.table.display }) { return }
            if trainer.hasFinished { return }  // a training finished: install it now
        }
    }

    // MARK: one cycle

    /// Reads one batch of new rows, processes it and commits. Returns the rows read.
    private func cycle() throws -> Int {
        guard let store, let engine else { return 0 }
        let floor = progress.isEmpty ? nil : progress.values.compactMap(\.watermark).min()
        let rows = try store.newRows(floor: floor, limit: settings.batchRows)
        if rows.isEmpty {
            health.progressed(observations: 0, series: progress.count, lag: nil)
            try checkpointIfDue()
            return 0
        }
        var observations: [Observation] = []
        var ownReason: [String?] = []
        observations.reserveCapacity(rows.count)
        for r in rows {
            var value: Double? = nil
            var reason: String? = nil
            if let text = r.valueText {
                if let v = Double(text.trimmingCharacters(in: .whitespaces)) {
                    if v.isFinite { value = v } else { reason = "not_finite_value" }
                } else {
                    reason = "non_numeric_value"
                }
            } else {
                reason = "null_value"
            }
            observations.append(Observation(series: r.series, time: r.time!, value: value))
            ownReason.append(reason)
        }
        let scored = engine.process(observations)
        trainer.submit(engine.takeTrainingJobs())

        var cycle = ForecastStore.Cycle()
        var updates: [String: ForecastStore.SeriesUpdate] = [:]
        var order: [String] = []
        var next: [String: Forecast] = [:]
        for (i, s) in scored.enumerated() {
            let o = s.observation
            if updates[o.series] == nil {
                order.append(o.series)
                updates[o.series] = ForecastStore.SeriesUpdate(series: o.series, watermark: o.time, observations: 0, lastValue: nil,
                                                               lastTime: nil, modelVersion: nil, badRows: [:])
            }
            updates[o.series]!.watermark = max(updates[o.series]!.watermark, o.time)
            updates[o.series]!.observations += 1
            if let why = ownReason[i] ?? s.rejected?.rawValue {
                updates[o.series]!.badRows[why, default: 0] += 1
                logOnce("\(o.series)|\(why)", level: .warning, "series \(o.series): row at \(o.time) not used (\(why.replacingOccurrences(of: "_", with: " "))); further rows of this kind are only counted in forecast.status")
                continue
            }
            updates[o.series]!.lastValue = o.value
            updates[o.series]!.lastTime = o.time
            if let f = s.forecast {
                cycle.completed.append(ForecastStore.PredictionRow(
                    series: o.series, time: o.time, predicted: f.value, lower: f.lower, upper: f.upper,
                    modelVersion: f.modelVersion, actual: o.value, anomalyScore: s.anomalyScore, isAnomaly: s.isAnomaly))
            }
            if let n = s.next { next[o.series] = n }
        }
        for series in order {
            updates[series]!.modelVersion = engine.modelVersion(for: series)
            if let f = next[series] {
                cycle.pending.append(ForecastStore.PredictionRow(series: series, time: f.time, predicted: f.value, lower: f.lower,
                                                                 upper: f.upper, modelVersion: f.modelVersion))
            }
        }
        cycle.series = order.map { updates[$0]! }
        do {
            try commit(cycle)
        } catch {
            // The engine has moved on; keep the cycle and commit it once the database is back.
            unsaved = cycle
            throw error
        }
        let newest = rows.compactMap(\.time).max()
        health.progressed(observations: rows.count, series: progress.count,
                          lag: newest.map { Date().timeIntervalSince1970 - $0 })
        try checkpointIfDue()
        return rows.count
    }

    private func commit(_ cycle: ForecastStore.Cycle) throws {
        guard let store else { throw PostgresError(.connectionLost, "not connected") }
        let late = try store.commit(cycle)
        for u in cycle.series {
            var p = progress[u.series] ?? ForecastStore.SeriesProgress(watermark: nil, observations: 0)
            p.watermark = max(p.watermark ?? u.watermark, u.watermark)
            p.observations += u.observations
            progress[u.series] = p
        }
        for (series, n) in late {
            logOnce("\(series)|late", level: .warning, "series \(series): \(n) row(s) arrived at or before the watermark and were not used (counted as late in forecast.status)")
        }
    }

    // MARK: training and checkpoints

    private func installFinishedTraining() throws {
        guard let engine else { return }
        var accepted = false
        for outcome in trainer.takeFinished() {
            let r = engine.install(outcome)
            health.retrained()
            if r.accepted {
                accepted = true
                logger.info("model v\(r.version) installed: \(r.windows) windows, \(r.epochs) epochs, train loss \(fmt(r.trainLoss)), holdout \(fmt(r.holdoutLoss)) vs previous \(fmt(r.currentHoldoutLoss)), \(String(format: "%.1f", r.seconds)) s")
            } else {
                logger.notice("retrain rejected (\(r.reason ?? "?")): keeping model v\(r.version - 1)")
            }
        }
        // Saved before any prediction of the new version is published, so a crash never leaves
        // predictions from a model that cannot be reloaded.
        if accepted { try checkpoint() }
        try publishMissingForecasts()
    }

    /// Series with enough history but no published forecast (a first model, a restart) get one
    /// now rather than when their next value arrives.
    private func publishMissingForecasts() throws {
        guard let engine else { return }
        let made = engine.forecastMissing()
        guard !made.isEmpty else { return }
        var cycle = ForecastStore.Cycle()
        cycle.pending = made.map { m in
            ForecastStore.PredictionRow(series: m.series, time: m.forecast.time, predicted: m.forecast.value,
                                        lower: m.forecast.lower, upper: m.forecast.upper, modelVersion: m.forecast.modelVersion)
        }
        do {
            try commit(cycle)
        } catch {
            unsaved = cycle
            throw error
        }
    }

    private func checkpointIfDue() throws {
        if Date().timeIntervalSince(lastCheckpoint) >= settings.checkpointInterval { try checkpoint() }
    }

    func checkpoint() throws {
        guard let store, let engine else { return }
        for g in engine.snapshot() where g.checkpoint != nil {
            let r = g.lastRetrain
            try store.saveModel(modelKey: g.key.isEmpty ? "*" : g.key, version: g.version, trainedAtPoint: r?.atPoint,
                                windows: r?.windows, trainLoss: r?.trainLoss, holdoutLoss: r?.holdoutLoss,
                                previousHoldoutLoss: r?.currentHoldoutLoss, checkpoint: g.checkpoint,
                                engineState: SnapshotCodec.encode(g), keep: settings.checkpointsKept)
        }
        lastCheckpoint = Date()
    }

    private func recordSourceProblem(_ e: PostgresError) throws {
        guard let store else { return }
        for series in progress.keys { try store.addBadRows(series: series, ["source_error": 1]) }
    }

    private func shutdown() {
        trainer.stop()
        do {
            if let c = unsaved, store != nil { try commit(c); unsaved = nil }
            try checkpoint()
            logger.info("stopped: checkpoint saved")
        } catch {
            logger.warning("stopped without a final checkpoint: \(error)")
        }
        disconnect()
    }

    // MARK: helpers

    private func logOnce(_ key: String, level: Logger.Level, _ message: String) {
        guard !logged.contains(key) else { return }
        logged.insert(key)
        logger.log(level: level, "\(message)")
    }

    private func sleep(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while !stopping && Date() < deadline { usleep(50_000) }
    }
}

private func fmt(_ v: Double?) -> String { v.map { String(format: "%.4g", $0) } ?? "n/a" }

extension SourceConfig {
    var sourceTable: SourceTable {
        SourceTable(table: table, seriesColumn: seriesColumn, timeColumn: timeColumn, valueColumn: valueColumn)
    }
}
