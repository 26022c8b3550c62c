import Foundation
import Ingest
import Logging
import ServiceLifecycle
import UnixSignals

/// One source's ingest loop as a service: `run()` returns once a graceful shutdown (SIGTERM)
/// has stopped intake, finished the transaction in flight and saved a checkpoint.
struct SourceService: Service {
    let worker: SourceWorker

    func run() async throws {
        let worker = self.worker
        await withGracefulShutdownHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let t = Thread {
                    worker.run()
                    done.resume()
                }
                t.name = "ingest \(worker.source.table.display)"
                t.stackSize = 8 << 20
                t.start()
            }
        } onGracefulShutdown: {
            worker.requestStop()
        }
    }
}

/// Tells systemd how the daemon is doing: STATUS= with throughput and lag, and WATCHDOG=1 only
/// while every source's database answers and ingest makes progress — a stuck daemon is then
/// restarted by systemd instead of silently doing nothing.
struct StatusService: Service {
    let workers: [SourceWorker]
    let notifier: SystemdNotifier
    let logger: Logger

    func run() async throws {
        let interval = notifier.watchdogInterval.map { max(0.2, $0 / 3) } ?? 5
        var lastCount = 0
        var lastTime = Date()
        let staleAfter = max((notifier.watchdogInterval ?? 30), 2 * interval)
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
            if Task.isShuttingDownGracefully || Task.isCancelled { break }
            let snaps = workers.map(\.health.snapshot)
            let count = snaps.reduce(0) { $0 + $1.observations }
            let now = Date()
            let rate = Double(count - lastCount) / max(now.timeIntervalSince(lastTime), 1e-3)
            lastCount = count
            lastTime = now
            let healthy = snaps.allSatisfy { $0.databaseOK && now.timeIntervalSince($0.lastProgress) < staleAfter }
            let lags = snaps.compactMap(\.lagSeconds)
            let series = snaps.reduce(0) { $0 + $1.series }
            let retrains = snaps.reduce(0) { $0 + $1.retrains }
            var status = healthy ? "" : "DEGRADED: database unavailable or no progress; "
            status += String(format: "%d series, %.0f obs/s, %d observations, %d retrains", series, rate, count, retrains)
            if let lag = lags.max() { status += String(format: ", lag %.1f s", lag) }
            for w in workers { if let p = w.health.problem { status += "; \(w.health.name): \(p)" } }
            notifier.status(status)
            if healthy { notifier.watchdog() }
        }
    }
}

/// SIGHUP: RELOADING=1, re-read the configuration, apply what can change live, READY=1.
/// What cannot change live is judged against the configuration the daemon started with, so a
/// second reload still says that a restart is needed.
struct ReloadService: Service {
    let configPath: String
    let workers: [SourceWorker]
    let notifier: SystemdNotifier
    let logger: Logger
    let applyLogLevel: @Sendable (LogLevel) -> Void
    let started: DaemonConfig

    func run() async throws {
        for await _ in await UnixSignalsSequence(trapping: .sighup).cancelOnGracefulShutdown() {
            notifier.reloading()
            do {
                let fresh = try DaemonConfig.load(path: configPath)
                applyLogLevel(fresh.logLevel)
                for w in workers { w.settings = fresh.liveSettings }
                let pending = Self.needsRestart(started: started, fresh: fresh)
                let restart = pending.isEmpty ? "" : "; restart to apply changes to \(pending.joined(separator: ", "))"
                logger.notice("configuration reloaded: log level \(fresh.logLevel.rawValue), poll interval \(fresh.pollInterval) s, batch \(fresh.batchRows) rows\(restart)")
            } catch {
                logger.error("reload failed, keeping the running configuration: \(error)")
            }
            notifier.ready(status: "reloaded")
        }
    }

    /// The settings (by TOML path) that differ from the running daemon's but only apply at a restart.
    static func needsRestart(started: DaemonConfig, fresh: DaemonConfig) -> [String] {
        var out: [String] = []
        if fresh.sources != started.sources { out.append("[[source]]") }
        for s in Settings.all where !s.live && s.describe(fresh) != s.describe(started) { out.append(s.path) }
        if fresh.databaseURL != started.databaseURL && !out.contains("database.url") { out.append("database.url") }
        return out
    }
}

extension DaemonConfig {
    var liveSettings: LiveSettings {
        LiveSettings(pollInterval: pollInterval, batchRows: batchRows, checkpointsKept: checkpointsKept,
                     checkpointInterval: checkpointInterval, commitWait: commitWait, maxFutureSkew: maxFutureSkew, pathsKeepDays: pathsKeepDays,
                     predictionsKeepDays: predictionsKeepDays)
    }
}

/// Keeps this daemon's entry in forecast.worker_registry alive and tells the shard book how many
/// live daemons share each source. Its own thread and connection (libpq blocks); a database
/// that does not answer leaves the last counts in place (the locks still decide who holds what).
struct RegistrationService: Service {
    let registration: WorkerRegistration
    let book: ShardBook
    let logger: Logger

    func run() async throws {
        let stop = WakeSignal()
        let registration = self.registration
        let book = self.book
        let logger = self.logger
        let interval = max(0.5, min(5, registration.leaseTimeout / 6))
        await withGracefulShutdownHandler {
            await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
                let t = Thread {
                    var failing = false
                    var stopped = false
                    while !stopped {
                        do {
                            book.setDaemons(try registration.heartbeat())
                            if failing { logger.notice("worker registry reachable again") }
                            failing = false
                        } catch {
                            if !failing { logger.warning("cannot refresh this daemon's entry in forecast.worker_registry: \(error)") }
                            failing = true
                        }
                        stop.wait(seconds: interval)
                        stopped = stop.drain()
                    }
                    registration.deregister()
                    done.resume()
                }
                t.name = "registration"
                t.start()
            }
        } onGracefulShutdown: {
            stop.signal()
        }
    }
}
