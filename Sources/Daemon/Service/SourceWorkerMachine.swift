/// Settings that SIGHUP can change while the daemon runs.
struct LiveSettings: Sendable, Equatable {
    var pollInterval: Double
    var batchRows: Int
    var checkpointsKept: Int
    var checkpointInterval: Double
    /// Longest a queued row waits for older transactions to end (ingest.commit_wait).
    var commitWait: Double = 60
    /// Rows further ahead of the clock than this are bad_time (ingest.max_future_skew).
    var maxFutureSkew: Double = 3600
    /// Days of forecast paths kept (retention.paths_days).
    var pathsKeepDays: Double = 7
    /// Days of completed predictions kept, 0 for all (retention.predictions_days).
    var predictionsKeepDays: Double = 30
}

/// What a source's ingest loop does next, decided without any I/O (in the style of
/// postgres-nio's connection state machine): the loop tells it what happened, it answers with
/// actions, and the loop carries them out. Outage, a broken source, reload and stop are all
/// decided here, so they are tested without a database.
struct SourceWorkerMachine {
    enum State: Equatable {
        /// No connection: the next action is to connect.
        case disconnected
        /// Connected and running cycles.
        case running
        /// Waiting out a backoff after a failure.
        case backingOff
        /// Stop requested: the next action is the shutdown.
        case stopping
        case stopped
    }

    /// What went wrong in a step.
    enum Failure: Equatable {
        /// The database went away or refused the connection.
        case connection(String)
        /// The source table cannot be read (dropped, renamed, a column of the wrong type, no rights).
        case source(String)
        /// Another forecastd holds the source's writer lock: wait for it.
        case locked(String)
        /// The shard is another daemon's (or this daemon holds its share): wait, quietly.
        case standby(String)
        /// Anything else (a bug or an unexpected answer): logged, retried with backoff.
        case other(String)
    }

    enum Action: Equatable {
        /// Open the connections, resolve the source and (the first time) build the session.
        case connect
        /// Commit what is unsaved, install finished trainings, read one batch, process, commit.
        case runCycle
        /// Wait for a NOTIFY, a finished training or a stop, at most this long.
        case waitForWork(seconds: Double)
        /// Close the connections.
        case disconnect
        /// Close the connection to the source (the listener stays).
        case disconnectStore
        /// Wait this long (a stop ends it at once).
        case sleep(seconds: Double)
        /// Record that the database is unavailable (watchdog, STATUS=).
        case markDatabaseDown
        /// What is wrong with the source (nil: nothing any more), for STATUS= and READY: a
        /// source that cannot start does not hold back the others.
        case reportProblem(String?)
        case log(Level, String)
        /// Finish: stop training, commit what is unsaved, checkpoint, disconnect.
        case shutdown
    }

    enum Level: Equatable { case notice, warning, error }

    private(set) var state = State.disconnected
    private(set) var settings: LiveSettings
    /// Seconds of the next backoff; doubled after every failure up to `maxBackoff`.
    private(set) var backoff: Double
    private(set) var databaseDown = false
    private(set) var sourceBroken = false
    private(set) var waitingForLock = false
    private(set) var standingBy = false
    static let firstBackoff = 0.5
    static let maxBackoff = 30.0

    init(settings: LiveSettings) {
        self.settings = settings
        backoff = Self.firstBackoff
    }

    /// The first action of the loop.
    mutating func start() -> [Action] { next() }

    mutating func connected() -> [Action] {
        guard state != .stopping && state != .stopped else { return [] }
        var out: [Action] = []
        if waitingForLock {
            waitingForLock = false
            out += [.log(.notice, "writer lock acquired: this daemon now processes the source"), .reportProblem(nil)]
        }
        if standingBy {
            standingBy = false
            out.append(.log(.notice, "lease acquired: this daemon now processes the shard"))
        }
        if databaseDown {
            databaseDown = false
            out.append(.log(.notice, "database reachable again"))
        }
        state = .running
        return out + next()
    }

    /// A cycle committed `rows` rows (0: nothing new).
    mutating func cycleCompleted(rows: Int) -> [Action] {
        backoff = Self.firstBackoff
        var out: [Action] = []
        if sourceBroken {
            sourceBroken = false
            out += [.log(.notice, "source readable again"), .reportProblem(nil)]
        }
        if state == .stopping || state == .stopped { return out }
        // A full batch means more is waiting (catching up after downtime): no waiting.
        if rows >= settings.batchRows { return out + next() }
        return out + [.waitForWork(seconds: settings.pollInterval)]
    }

    /// A wait or a sleep ended (work arrived, the timeout passed, or a stop).
    mutating func waited() -> [Action] { state == .stopping || state == .stopped ? [] : next() }

    mutating func failed(_ failure: Failure) -> [Action] {
        guard state != .stopping && state != .stopped else { return [] }
        switch failure {
        case .connection(let message):
            var out: [Action] = [.markDatabaseDown]
            if !databaseDown {
                out.append(.log(.warning, "database unavailable, retrying with backoff: \(message)"))
            }
            databaseDown = true
            out += [.disconnect, .sleep(seconds: backoff)]
            backoff = min(backoff * 2, Self.maxBackoff)
            state = .backingOff
            return out
        case .source(let message):
            // Counted against the source's series and said once; tried again every poll.
            var out: [Action] = []
            if !sourceBroken {
                sourceBroken = true
                out += [.log(.error, "cannot read source: \(message)"), .reportProblem(message)]
            }
            state = .backingOff
            return out + [.disconnectStore, .sleep(seconds: settings.pollInterval)]
        case .locked(let message):
            var out: [Action] = []
            if !waitingForLock {
                waitingForLock = true
                out += [.log(.notice, message), .reportProblem(message)]
            }
            state = .backingOff
            return out + [.disconnect, .sleep(seconds: settings.pollInterval)]
        case .standby(let message):
            var out: [Action] = []
            if !standingBy {
                standingBy = true
                out.append(.log(.notice, message))
            }
            state = .backingOff
            return out + [.disconnect, .sleep(seconds: settings.pollInterval)]
        case .other(let message):
            let out: [Action] = [.log(.error, "cycle failed: \(message)"), .disconnect, .sleep(seconds: backoff)]
            backoff = min(backoff * 2, Self.maxBackoff)
            state = .backingOff
            return out
        }
    }

    /// SIGHUP: the new settings apply from the next decision on.
    mutating func reload(_ new: LiveSettings) {
        settings = new
    }

    /// A stop request: what was planned gives way to the shutdown.
    mutating func stop() -> [Action] {
        guard state != .stopped && state != .stopping else { return [] }
        state = .stopping
        return [.shutdown]
    }

    /// The shutdown has run: nothing more to do.
    mutating func finished() { state = .stopped }

    /// After a backoff the connection is rebuilt; while running, the next cycle.
    private mutating func next() -> [Action] {
        switch state {
        case .stopping: return [.shutdown]
        case .stopped: return []
        case .disconnected, .backingOff:
            state = .disconnected
            return [.connect]
        case .running: return [.runCycle]
        }
    }
}
