import Forecast
import Foundation
import Ingest
import Logging
import Replay

/// The ingest loop of one shard of a source (the whole source unless `[ingest] shards` > 1), on
/// a thread of its own (libpq blocks): take the shard's lease, wait for NOTIFY or the poll
/// timer, read rows after the watermark, run them through the stream session, and commit what
/// the batch produced in one transaction. What to do next — after an outage, a broken source,
/// a lease held elsewhere, a reload or a stop — is decided by `SourceWorkerMachine`; this class
/// only carries the actions out.
final class SourceWorker: @unchecked Sendable {
    let source: SourceConfig
    let shard: ForecastStore.Shard
    /// The source, and the shard when there are several: "public.readings shard 2/4".
    let name: String
    let health: SourceHealth
    private let book: ShardBook
    private let workerID: String
    private let leaseTimeout: Double
    /// The lease generation this worker last recorded: the next one must be one more, or
    /// another daemon processed the shard in between and the session is stale.
    private var leaseGeneration: Int64?
    /// Whether this worker has a place in the book (reserved or holding the lease).
    private var booked = false
    private var lastHeartbeat = Date.distantPast
    /// Queue rows read since the queue was last vacuumed (see `ForecastStore.vacuumQueue`).
    private var readSinceVacuum = 0
    private var lastVacuum = Date.distantPast
    /// Rows read between vacuums of the queue: their dead versions cost every read about 50 ns
    /// each until then, and a vacuum of this many takes a few milliseconds.
    static let vacuumEveryRows = 10_000
    private let engineConfig: EngineConfig
    private let trainingMode: TrainingMode
    private let databaseURL: String
    private let logger: Logger
    private let lock = NSLock()
    private var _settings: LiveSettings
    private var _stopRequested = false
    private var settingsChanged = false
    /// Written to on stop, reload and finished trainings, so waits end at once instead of polling.
    private let wake: WakeSignal
    private let onInitialized: @Sendable () -> Void

    private var machine: SourceWorkerMachine
    private var session: StreamSession?
    private var store: ForecastStore?
    private var listener: PostgresConnection?
    private let trainer: TrainingWorker
    /// Batches the engine produced but the database did not take, oldest first: committed
    /// first on reconnect.
    private var unsaved: [CommitPipeline.Job] = []
    /// Commits each cycle's batch beside the next cycle (nil: commits in the cycle).
    private var pipeline: CommitPipeline?
    /// `FORECASTD_SERIAL_COMMIT=1` commits in the cycle, to measure what the overlap gains.
    private static let serialCommit = ProcessInfo.processInfo.environment["FORECASTD_SERIAL_COMMIT"] == "1"
    private var seriesCount = 0
    private var knownSeries: Set<String> = []
    /// The newest stored model versions when the session was built.
    private var storedAtStart: [String: Int] = [:]
    private var logged: Set<String> = []
    private var lastCheckpoint = Date()
    /// The checkpoint being written beside the cycles, if one is.
    private var background: BackgroundCheckpoint?

    init(source: SourceConfig, shard: ForecastStore.Shard = .whole, book: ShardBook? = nil, workerID: String = "",
         leaseTimeout: Double = 30, engine: EngineConfig, trainingMode: TrainingMode = .background, databaseURL: String,
         settings: LiveSettings, logger: Logger, onInitialized: @escaping @Sendable () -> Void = {}) {
        self.source = source
        self.shard = shard
        name = source.table.display + (shard.count == 1 ? "" : " shard \(shard)")
        self.book = book ?? ShardBook(shards: [source.table.display: shard.count])
        self.workerID = workerID
        self.leaseTimeout = leaseTimeout
        engineConfig = engine
        self.trainingMode = trainingMode
        self.databaseURL = databaseURL
        _settings = settings
        machine = SourceWorkerMachine(settings: settings)
        var l = logger
        l[metadataKey: "source"] = .string(source.table.display)
        if shard.count > 1 { l[metadataKey: "shard"] = .string(shard.description) }
        self.logger = l
        health = SourceHealth(name: name)
        let wake = WakeSignal()
        self.wake = wake
        self.onInitialized = onInitialized
        trainer = TrainingWorker(name: name, onFinished: { wake.signal() })
    }

    var settings: LiveSettings {
        get { lock.lock(); defer { lock.unlock() }; return _settings }
        set {
            lock.lock()
            _settings = newValue
            settingsChanged = true
            lock.unlock()
            wake.signal()
        }
    }

    var stopping: Bool {
        lock.lock(); defer { lock.unlock() }
        return _stopRequested
    }

    func requestStop() {
        lock.lock()
        _stopRequested = true
        lock.unlock()
        wake.signal()
    }

    /// True once the session was built from the database (models loaded): part of READY.
    private(set) var initialized = false

    // MARK: the loop

    func run() {
        var actions = machine.start()
        var stopSeen = false
        while !actions.isEmpty {
            // Stop and reload requests reach the machine between actions: a stop replaces
            // whatever was planned with the shutdown (the transaction in flight has finished).
            lock.lock()
            let stop = _stopRequested && !stopSeen
            if settingsChanged { machine.reload(_settings); settingsChanged = false }
            lock.unlock()
            if stop {
                stopSeen = true
                actions = actions.filter { Self.isBookkeeping($0) } + machine.stop()
            }
            let action = actions.removeFirst()
            var next: [SourceWorkerMachine.Action] = []
            do {
                next = try perform(action)
            } catch let e as PostgresError where e.isConnectionProblem {
                next = machine.failed(.connection(e.message))
            } catch let e as SourceLocked {
                next = machine.failed(.locked(e.message))
            } catch let e as Standby {
                next = machine.failed(.standby(e.message))
            } catch let e as PostgresError where Self.isSourceProblem(e) {
                next = machine.failed(.source(e.message))
            } catch {
                next = machine.failed(.other("\(error)"))
            }
            if !next.isEmpty { actions = next + actions.filter { Self.isBookkeeping($0) } }
        }
    }

    /// Logging and status actions survive a change of plan; the rest is replaced.
    private static func isBookkeeping(_ a: SourceWorkerMachine.Action) -> Bool {
        switch a {
        case .log, .markDatabaseDown: return true
        default: return false
        }
    }

    /// Carries out one action; returns the machine's next actions when the action completed a
    /// step, or [] to go on with the ones already planned.
    private func perform(_ action: SourceWorkerMachine.Action) throws -> [SourceWorkerMachine.Action] {
        switch action {
        case .connect:
            try connect()
            return machine.connected()
        case .runCycle:
            try commitUnsaved()
            try installFinishedTraining()
            let rows = try cycle()
            if book.giveUpOne(source.table.display) {
                booked = false
                try handOver()
                return machine.failed(.standby("handed \(name) over: more daemons share the source, and this one holds more than its share"))
            }
            return machine.cycleCompleted(rows: rows)
        case .waitForWork(let seconds):
            try waitForWork(seconds)
            return machine.waited()
        case .sleep(let seconds):
            // A signal left from before (a training that finished) must not cut the backoff
            // short; a stop is also a flag, so one that raced the drain is still seen.
            wake.drain()
            if !stopping { wake.wait(seconds: seconds) }
            return machine.waited()
        case .disconnect:
            disconnect()
        case .disconnectStore:
            disconnectStore()
        case .markDatabaseDown:
            health.databaseDown()
        case .reportProblem(let problem):
            health.problem = problem
            // A source that cannot start is reported, not waited for: READY covers the others.
            announceOnce()
        case .log(let level, let message):
            switch level {
            case .notice: logger.notice("\(message)")
            case .warning: logger.warning("\(message)")
            case .error: logger.error("\(message)")
            }
        case .shutdown:
            shutdown()
            machine.finished()
        }
        return []
    }

    static func isSourceProblem(_ e: PostgresError) -> Bool {
        guard let s = e.sqlState else { return e.kind == .query }
        // undefined table/column, wrong type, privileges, invalid text for a cast, no trigger
        return ["42P01", "42703", "42804", "42501", "22P02", "42883", "3F000", "55000"].contains(s)
    }

    /// Another daemon holds the source's writer lock.
    struct SourceLocked: Error { var message: String }

    private var announced = false
    private func announceOnce() {
        guard !announced else { return }
        announced = true
        onInitialized()
    }

    /// Another daemon processes the shard, and this one waits as a standby (not a problem).
    struct Standby: Error { var message: String }

    /// One writer per shard: a session-level advisory lock on the store's connection, released
    /// by PostgreSQL when the connection ends (a crashed daemon's lock goes with its session).
    /// A holder that has not heartbeated for the lease timeout while its session idles (a
    /// machine gone from the network, a hung process) has its session ended, so the lock is
    /// free at the next try.
    private func acquireLease(_ store: ForecastStore) throws {
        guard try store.tryLock() else {
            let holder = try? store.lockHolder()
            if let h = holder, let silent = h.silentFor, silent > leaseTimeout, !h.active {
                logger.warning("\(name) is held by \(h.worker ?? "backend pid \(h.backendPID)"), silent for \(Int(silent)) s (lease timeout \(Int(leaseTimeout)) s): ending its session to take the shard over")
                do { _ = try store.terminate(backendPID: h.backendPID) } catch {
                    logger.warning("cannot end backend \(h.backendPID): \(error) (forecastd needs the same role as the holder, or pg_signal_backend)")
                }
            }
            let who = holder.map { "\($0.worker.map { "worker \($0), " } ?? "")backend pid \($0.backendPID) from \($0.client)" } ?? "a session that just ended"
            if shard.count > 1 { throw Standby(message: "standing by: \(name) is processed by \(who)") }
            throw SourceLocked(message: "source \(source.table.display) is processed by another forecastd (\(who)); waiting for its writer lock")
        }
        let generation = try store.recordLease(worker: workerID)
        if session != nil, let g = leaseGeneration, generation != g + 1 {
            logger.notice("\(name) was processed by another daemon since this one held it: loading its state from the database")
            _ = trainer.takeFinished()
            session = nil
            unsaved = []
        }
        leaseGeneration = generation
        lastHeartbeat = Date()
    }

    /// Gives the shard up to a daemon below its share: what is unsaved is committed, the state
    /// checkpointed (the next holder starts from it), the lease released, the session dropped.
    private func handOver() throws {
        guard let store else { return }
        try commitUnsaved(waiting: true)
        try checkpoint()
        try store.releaseLease()
        _ = trainer.takeFinished()
        session = nil
        disconnect()
        seriesCount = 0
        health.standby()
        logger.notice("handed \(name) over to another daemon (checkpoint saved)")
    }

    private func connect() throws {
        disconnect()
        // The share first: a daemon that holds its share of the source's shards does not even
        // connect for this one.
        guard book.reserve(source.table.display) else {
            health.standby()
            announceOnce()
            throw Standby(message: "standing by: this daemon holds its share of \(source.table.display)'s shards")
        }
        booked = true
        let conn: PostgresConnection
        do { conn = try PostgresConnection(url: databaseURL) } catch { unbook(); throw error }
        let store: ForecastStore
        do {
            store = try ForecastStore(connection: conn, source: try source.sourceTable.resolve(on: conn), shard: shard)
            guard try store.hasCaptureTrigger() else {
                throw PostgresError(.query, "\(source.table.display) has no forecastd trigger, so its new rows never reach forecastd: run `forecastd migrate --config FILE`", sqlState: "55000")
            }
            try acquireLease(store)
            if shard.index == 0 { try ForecastStore.setProblem(nil, source: source.table.display, on: conn) }
        } catch {
            unbook()
            if error is Standby {
                health.standby()
                announceOnce()
                conn.close()
                throw error
            }
            // The database answered: the watchdog is fed while the source waits.
            health.progressed(observations: 0, series: seriesCount, lag: nil)
            if let e = error as? PostgresError, Self.isSourceProblem(e) {
                try? ForecastStore.setProblem(e.message, source: source.table.display, on: conn)
            } else if let e = error as? SourceLocked {
                try? ForecastStore.setProblem(e.message, source: source.table.display, on: conn)
            }
            conn.close()
            throw error
        }
        // From here the store is this worker's: a failure below disconnects it, lock and all.
        self.store = store
        if !Self.serialCommit, let generation = leaseGeneration {
            let writer = try ForecastStore(connection: try PostgresConnection(url: databaseURL), source: store.resolved, shard: shard)
            pipeline = try CommitPipeline(store: writer, fence: try store.fence(generation: generation), name: name)
        }
        let listener = try PostgresConnection(url: databaseURL)
        self.listener = listener
        try listener.listen("forecastd")
        let progress = try store.progress()
        seriesCount = progress.count
        knownSeries = Set(progress.keys)
        if session == nil { try buildSession(store, progress: progress) }
        health.progressed(observations: 0, series: seriesCount, lag: nil)
    }

    private func disconnectStore() {
        if let failed = pipeline?.close() { unsaved.append(failed.job) }
        pipeline = nil
        store?.connection.close()
        store = nil
    }

    private func disconnect() {
        disconnectStore()
        listener?.close()
        listener = nil
        unbook()
    }

    /// The lease goes with the store's connection; so does this worker's place in the book.
    private func unbook() {
        if booked { book.release(source.table.display) }
        booked = false
    }

    /// A restart goes on from the last checkpoint through the session's resume protocol:
    /// models, per-series state and windows from forecast.models, the source's rows after each
    /// stored window up to the watermark, and the published pending forecasts.
    /// `progress` is the store's, when the caller has just read it.
    private func buildSession(_ store: ForecastStore, progress: [String: ForecastStore.SeriesProgress]? = nil) throws {
        let started = Date()
        let session = try StreamSession(config: engineConfig, training: trainingMode.engineMode)
        storedAtStart = engineKeys(try store.newestVersions())
        // Each state is read a chunk at a time as it is decoded: the restart holds the engine
        // it rebuilds and one chunk, not the whole stored state beside it.
        let stored = try store.latestStates()
        var states = stored.compactMap(\.state)
        if engineConfig.scope == .shared, !stored.contains(where: { $0.modelKey == shard.sharedModelKey }),
           let adopted = try adoptedSharedState(store) {
            states.append(adopted)
        }
        let read = Date()
        let pending = try store.pending()
        let watermarks = try (progress ?? store.progress()).compactMapValues(\.watermark)
        // Only what the stored windows lack, a page of series at a time (one page without the
        // (series, time) index: each would be a scan of the table). After a clean stop, nothing.
        var reading = 0.0
        let report = try session.resume(states: states, pageSize: try store.hasSeriesTimeIndex() ? 2000 : .max, history: { asked in
            let t = Date()
            defer { reading += Date().timeIntervalSince(t) }
            return try store.history(perSeries: session.historyNeeded, for: asked)
        }, pending: pending, watermarks: watermarks, storedVersions: storedAtStart)
        for w in report.warnings { logger.warning("\(w)") }
        // What the restart decoded and dropped (chunks, each series' snapshot) is freed: give
        // its pages back at once rather than at the next minute's trim.
        states = []
        FreedMemory.release()
        self.session = session
        trainer.submit(session.takeTrainingJobs())
        let resumed = Date()
        try publish(report.batch)
        initialized = true
        announceOnce()
        let versions = report.models.map { "\($0.key.isEmpty ? "shared" : $0.key) v\($0.version)" }
        func s(_ a: Date, _ b: Date) -> String { String(format: "%.1f", b.timeIntervalSince(a)) }
        logger.info("loaded \(report.models.count) model(s) \(versions.prefix(5).joined(separator: ", ")), \(report.historyRows) history rows, \(seriesCount) series in \(s(started, Date())) s (models read \(s(started, read)) s, history read \(String(format: "%.1f", reading)) s, resumed \(s(read, resumed)) s, published \(s(resumed, Date())) s)")
    }

    /// A shard without a shared model of its own (the shard count changed) starts from the
    /// models of the old layout: the weights of the one that served most series, and the state
    /// (scaling, residuals, anomaly history) of each of this shard's series from whichever old
    /// model served it. So raising `[ingest] shards` to add daemons retrains nothing.
    private func adoptedSharedState(_ store: ForecastStore) throws -> StoredState? {
        let old = try store.sharedModelsOfOtherLayouts()
        var snapshots: [(key: String, snapshot: GroupSnapshot)] = []
        for m in old {
            guard let bytes = m.engineState else { continue }
            do { snapshots.append((m.modelKey, try SnapshotCodec.decode(bytes))) } catch {
                logger.warning("model \(m.modelKey) version \(m.version) has an unusable engine state (\(error)); not adopted")
            }
        }
        guard let base = snapshots.max(by: { $0.snapshot.series.count < $1.snapshot.series.count }) else { return nil }
        let mine = try store.seriesInShard()
        var seen = Set<String>()
        var adopted = base.snapshot
        adopted.series = snapshots.flatMap(\.snapshot.series).filter { mine.contains($0.key) && seen.insert($0.key).inserted }
        logger.notice("\(name) has no model of its own yet: starting from model \(base.key) v\(base.snapshot.version) and the state of its \(adopted.series.count) series from \(snapshots.map(\.key).sorted().joined(separator: ", "))")
        return StoredState(label: "model \(shard.sharedModelKey) (adopted from \(base.key))", bytes: SnapshotCodec.encode(adopted))
    }

    /// forecast.models calls the shared model "*" ("*2/4" for a shard); the engine calls it "".
    private func engineKeys(_ stored: [String: Int]) -> [String: Int] {
        Dictionary(stored.map { ($0.key == shard.sharedModelKey ? "" : $0.key, $0.value) }, uniquingKeysWith: max)
    }

    /// A stored version newer than the one running was put there by someone else (`forecastd
    /// models rollback`): load the stored models, as a restart would.
    private func reloadIfRolledBack(_ store: ForecastStore) throws {
        guard let session else { return }
        let running = session.modelVersions
        let stored = engineKeys(try store.newestVersions())
        guard let (key, v) = stored.first(where: { $0.value > max(running[$0.key] ?? 0, storedAtStart[$0.key] ?? 0) }) else { return }
        logger.notice("model \(key.isEmpty ? "shared" : key) v\(v) in forecast.models is newer than the running v\(running[key] ?? 0) (a rollback): loading the stored models")
        _ = trainer.takeFinished()
        self.session = nil
        try buildSession(store)
    }

    private func waitForWork(_ seconds: Double) throws {
        guard let listener else { return }
        let deadline = Date().addingTimeInterval(seconds)
        while !stopping {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return }
            let got = try listener.waitForNotifications(timeout: left, wakeFD: wake.fd)
            if got.contains(where: { $0.payload == source.table.display }) { return }
            if wake.drain() { return }  // a stop, a reload or a finished training
        }
    }

    // MARK: one cycle

    /// Reads one batch of new rows, processes it and commits. Returns the rows read.
    private func cycle() throws -> Int {
        guard let store, let session else { return 0 }
        let live = settings
        if readSinceVacuum >= Self.vacuumEveryRows && Date().timeIntervalSince(lastVacuum) >= 1 {
            if try !store.vacuumQueue() {
                logOnce("vacuum", level: .notice, "this role may not VACUUM forecast.ingest_queue (it is not the owner): the queue is left to autovacuum, and reads slow down as deleted rows pile up between its runs")
            }
            readSinceVacuum = 0
            lastVacuum = Date()
        }
        // A commit in flight may be a checkpoint alone, with no queue rows of its own.
        let inFlight = pipeline?.inFlight ?? []
        let busy = pipeline?.isBusy ?? false
        if !busy { try heartbeatIfDue() }
        let queued = try store.nextRows(limit: live.batchRows, commitWait: live.commitWait, skipping: inFlight,
                                        committer: busy ? pipeline?.backendPID : nil)
        if queued.isEmpty {
            // The commit in flight goes on while the loop waits for rows; the checks below
            // read committed state, so they wait for an idle cycle with nothing in flight.
            if let pipeline, pipeline.isBusy {
                health.progressed(observations: 0, series: seriesCount, lag: nil)
                return 0
            }
            try settle()
            try heartbeatIfDue()
            // Idle: make sure rows can still arrive (a dropped or renamed table, a removed trigger),
            // and pick up a rolled-back model.
            guard try store.hasCaptureTrigger() else {
                throw PostgresError(.query, "table \(source.table.display) does not exist (dropped or renamed?) or has lost its forecastd trigger (run `forecastd migrate --config FILE`)", sqlState: "42P01")
            }
            try reloadIfRolledBack(store)
            health.progressed(observations: 0, series: seriesCount, lag: nil)
            try checkpointIfDue()
            return 0
        }
        readSinceVacuum += queued.count
        let rows = queued.map(\.row)
        let batch = session.process(rows, notAfter: Date().timeIntervalSince1970 + live.maxFutureSkew)
        trainer.submit(session.takeTrainingJobs())
        for r in batch.rejections {
            let whose = r.issue.isSourceLevel ? "a row" : "series \(r.series)"
            let at = r.time.map { $0.isFinite ? TimestampParser.format($0) : String($0) } ?? "an unreadable time"
            logOnce("\(r.series)|\(r.issue.rawValue)", level: .warning,
                    "\(whose): row at \(at) not used (\(r.issue.rawValue)); further rows of this kind are only counted in forecast.status")
        }
        logRetrains(batch.retrains)
        // Counted once forecast, before the publish that may wait for the commit in flight: a
        // batch the database has not taken yet is kept and committed, never dropped.
        seriesCount += batch.series.count - batch.series.filter { knownSeries.contains($0.series) }.count
        for u in batch.series { knownSeries.insert(u.series) }
        let newest = rows.compactMap(\.time).filter(\.isFinite).max()
        health.progressed(observations: rows.count, series: seriesCount,
                          lag: newest.map { Date().timeIntervalSince1970 - $0 })
        // A new version (inline training) is saved in the transaction of the first batch with its
        // predictions, so a crash never leaves predictions from a model that cannot be reloaded.
        try publish(batch, consumed: queued.map(\.id), overlapped: true,
                    saving: batch.retrains.contains(where: \.accepted) ? checkpointSaves() : [])
        try checkpointIfDue()
        return rows.count
    }

    /// Commits a batch with the queue rows it was made from; one the database did not take is
    /// kept and committed first on reconnect (a second commit of the same rows writes nothing).
    /// Commits the batch once the one in flight is committed: here, or `overlapped`, by handing
    /// it to the pipeline to commit beside the next cycle. A batch not taken is kept.
    /// `saving`: a checkpoint committed in the batch's transaction, before it; `lastCheckpoint`
    /// counts from its hand-over.
    private func publish(_ batch: StreamBatch, consumed: [Int64] = [], overlapped: Bool = false,
                         saving saves: [ForecastStore.ModelSave] = []) throws {
        guard !batch.isEmpty || !consumed.isEmpty || !saves.isEmpty else { return }
        let job = CommitPipeline.Job(batch: batch, consumed: consumed, saves: saves)
        do {
            try settle()
            try heartbeatIfDue()
            if overlapped, let pipeline, unsaved.isEmpty {
                pipeline.submit(job)
            } else {
                try commit(job)
            }
        } catch {
            unsaved.append(job)
            throw error
        }
        if !saves.isEmpty { lastCheckpoint = Date() }
    }

    /// Waits for the batch in flight; one that failed is kept, before any made after it.
    private func settle() throws {
        guard let pipeline, let failed = pipeline.drain() else { return }
        unsaved.append(failed.job)
        throw failed.error
    }

    /// The lease's heartbeat, when no commit is in flight: the commit holds the lease row
    /// (`FOR SHARE`, the fence), so an UPDATE of it beside a commit would wait for the commit.
    private func heartbeatIfDue() throws {
        guard let store, Date().timeIntervalSince(lastHeartbeat) >= 1 else { return }
        try store.heartbeat()
        lastHeartbeat = Date()
    }

    /// Commits the batches kept from failed commits, oldest first. Without them it does not
    /// wait: the batch in flight goes on beside the next cycle, and one that failed is picked
    /// up here or by the next publish. `waiting` (a stop, a hand-over) first waits for the batch
    /// in flight, and one that failed is committed again here, on the shard's own connection.
    private func commitUnsaved(waiting: Bool = false) throws {
        if waiting {
            do { try settle() } catch { logger.notice("commit in flight failed (\(error)); committing it again") }
        } else if let failed = pipeline?.takeFailure() {
            unsaved.append(failed.job)
            throw failed.error
        }
        guard !unsaved.isEmpty else { return }
        try settle()
        while let u = unsaved.first {
            try commit(u)
            unsaved.removeFirst()
        }
    }

    private func commit(_ job: CommitPipeline.Job) throws {
        guard let store else { throw PostgresError(.connectionLost, "not connected") }
        try store.commit(job.batch, consumed: job.consumed, saving: job.saves)
    }

    // MARK: training and checkpoints

    private func installFinishedTraining() throws {
        // Installed once the checkpoint being written is (see `checkpointIfDue`).
        guard let session, backgroundCheckpointDone() else { return }
        let outcomes = trainer.takeFinished()
        let batch = session.install(outcomes)
        logRetrains(batch.retrains)
        try publish(batch, overlapped: true, saving: batch.retrains.contains(where: \.accepted) ? checkpointSaves() : [])
    }

    private func logRetrains(_ records: [RetrainRecord]) {
        for r in records {
            health.retrained()
            if r.accepted {
                logger.info("model v\(r.version) installed: \(r.windows) windows, \(r.epochs) epochs, train loss \(fmt(r.trainLoss)), holdout \(fmt(r.holdoutLoss)) vs previous \(fmt(r.currentHoldoutLoss)), \(String(format: "%.1f", r.seconds)) s")
            } else {
                logger.notice("retrain rejected (\(r.reason ?? "?")): keeping model v\(r.version - 1)")
            }
        }
    }

    /// A due checkpoint is written on a thread and connection of its own (`BackgroundCheckpoint`)
    /// while the cycles go on: the state is taken as it is once what was processed before is
    /// committed (a restart must never find a state ahead of the published rows), and written a
    /// chunk at a time. Until it is written, finished trainings wait (`installFinishedTraining`):
    /// installing a model changes every series, which would copy each one the writer still holds.
    private func checkpointIfDue() throws {
        guard backgroundCheckpointDone(), Date().timeIntervalSince(lastCheckpoint) >= settings.checkpointInterval else { return }
        guard pipeline != nil else { try checkpoint(); return }
        guard let store, let session, let generation = leaseGeneration, unsaved.isEmpty else { return }
        try settle()
        try applyRetention()
        let writers = session.stateWriters(threads: 1)
        lastCheckpoint = Date()
        guard !writers.isEmpty else { return }
        let url = databaseURL, resolved = store.resolved, shard = shard, sharedKey = shard.sharedModelKey, keep = settings.checkpointsKept
        let wake = wake
        background = BackgroundCheckpoint(
            writers: writers, name: name,
            connect: { try BackgroundCheckpoint.connect(url: url, source: resolved, shard: shard) },
            fence: try store.fence(generation: generation),
            write: { w, store, fence in try Self.writeState(&w, to: store, sharedKey: sharedKey, keep: keep, fence: fence) },
            finished: { wake.signal() })
    }

    /// Whether no checkpoint is being written in the background (one that finished is reported).
    private func backgroundCheckpointDone() -> Bool {
        guard let running = background else { return true }
        guard let outcome = running.finished else { return false }
        background = nil
        report(outcome)
        return true
    }

    private func report(_ outcome: BackgroundCheckpoint.Outcome) {
        if let error = outcome.error {
            logger.warning("checkpoint not written (\(error)); the next is tried in \(Int(settings.checkpointInterval)) s, a restart goes on from the last one")
        } else {
            logger.info("checkpoint written: \(outcome.bytes / 1000) kB of engine state of \(outcome.models) model(s) in \(outcome.chunks) chunk(s), \(String(format: "%.2f", outcome.seconds)) s")
        }
    }

    /// Saves every model and its engine state now, after what is in flight (a stop, a
    /// hand-over, a daemon without a commit pipeline), a chunk at a time on the worker's own
    /// connection; a checkpoint being written in the background is waited for first.
    @discardableResult
    func checkpoint() throws -> String {
        if let running = background {
            background = nil
            report(running.wait())
        }
        guard let store else { return "no store" }
        // What the checkpoint holds must be committed first.
        try settle()
        let started = Date()
        var bytes = 0
        for var w in session?.stateWriters(threads: engineConfig.predictThreads) ?? [] {
            bytes += try Self.writeState(&w, to: store, sharedKey: shard.sharedModelKey, keep: settings.checkpointsKept, fence: nil).bytes
        }
        let written = "\(bytes / 1000) kB of engine state in \(String(format: "%.2f", Date().timeIntervalSince(started))) s"
        logger.debug("checkpoint: \(written)")
        try applyRetention()
        lastCheckpoint = Date()
        return written
    }

    /// Writes one model's state a chunk at a time: into its stored version, or as a save of the
    /// version when it is not stored yet (the save of a new version failed and is still to be
    /// retried). Nothing when the version was pruned while it was written.
    private static func writeState(_ w: inout StateWriter, to store: ForecastStore, sharedKey: String, keep: Int,
                                   fence: ForecastStore.Fence?) throws -> (bytes: Int, chunks: Int) {
        let key = w.header.key.isEmpty ? sharedKey : w.header.key
        if let written = try store.saveState(&w, modelKey: key, fence: fence) { return written }
        guard w.partsGiven == 0 else { return (0, 0) }
        return try store.save(modelSave(w.header, state: w, sharedKey: sharedKey, keep: keep), fence: fence)
    }

    private static func modelSave(_ g: GroupSnapshot, state: StateWriter, sharedKey: String,
                                  keep: Int) -> ForecastStore.ModelSave {
        let r = g.lastRetrain
        return ForecastStore.ModelSave(modelKey: g.key.isEmpty ? sharedKey : g.key, version: g.version,
                                       trainedAtPoint: r?.atPoint, windows: r?.windows, trainLoss: r?.trainLoss,
                                       holdoutLoss: r?.holdoutLoss, previousHoldoutLoss: r?.currentHoldoutLoss,
                                       checkpoint: g.checkpoint, state: state, keep: keep)
    }

    /// Each model's newest version with the engine state as it is now: what the batch with a
    /// new version's first predictions saves, in its transaction, so that no prediction is
    /// ever published from a model a restart could not load. The state is taken now and
    /// written a chunk at a time by the commit (`ModelSave.state`), not encoded whole here.
    private func checkpointSaves() -> [ForecastStore.ModelSave] {
        guard let session else { return [] }
        return session.stateWriters(threads: 1).map { w in
            Self.modelSave(w.header, state: w, sharedKey: shard.sharedModelKey, keep: settings.checkpointsKept)
        }
    }

    /// The partitions are shared by every shard: the holder of the first one prunes them.
    private func applyRetention() throws {
        guard let store, shard.index == 0 else { return }
        let live = settings
        let dropped = try store.applyRetention(predictionDays: live.predictionsKeepDays, pathDays: live.pathsKeepDays)
        if dropped.predictionPartitions + dropped.pathPartitions > 0 {
            logger.info("retention: dropped \(dropped.predictionPartitions) day(s) of predictions older than \(live.predictionsKeepDays) days and \(dropped.pathPartitions) of paths older than \(live.pathsKeepDays) days")
        }
    }

    private func shutdown() {
        trainer.stop()
        do {
            if store != nil { try commitUnsaved(waiting: true) }
            let written = try checkpoint()
            if session != nil { try? store?.releaseLease() }
            logger.info("stopped: checkpoint saved (\(written))")
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
}

extension String {
    /// FNV-1a, 64 bits: a stable advisory-lock key for a source name.
    var fnv1a64: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in utf8 { h ^= UInt64(b); h = h &* 0x0000_0100_0000_01b3 }
        return h
    }
}

private func fmt(_ v: Double?) -> String { v.map { String(format: "%.4g", $0) } ?? "n/a" }

extension SourceConfig {
    var sourceTable: SourceTable {
        SourceTable(table: table, seriesColumn: seriesColumn, timeColumn: timeColumn, valueColumn: valueColumn)
    }
}

