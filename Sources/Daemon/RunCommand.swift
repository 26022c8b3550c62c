import ArgumentParser
import Foundation
import Ingest
import Logging
import ServiceLifecycle
import UnixSignals

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the daemon: stream forecasts and anomaly flags into PostgreSQL.",
        discussion: """
            Reads every [[source]] of the configuration, forecasts each new row's series one step \
            ahead and writes forecast.predictions; analysts query forecast.latest, \
            forecast.anomalies, forecast.accuracy and forecast.status. Under systemd \
            (Type=notify) it reports READY once the database answers, the schema is current and \
            models are loaded; SIGHUP reloads the configuration; SIGTERM stops after the \
            transaction in flight and a checkpoint. Run `forecastd migrate --config FILE` first.
            """
    )

    @Option(help: ArgumentHelp("The configuration file.", valueName: "file")) var config = "/etc/forecastd/forecastd.toml"

    func run() async throws {
        let notifier = SystemdNotifier()
        let cfg: DaemonConfig
        do {
            cfg = try DaemonConfig.load(path: config)
        } catch {
            printError("forecastd: \(error)")
            throw ExitCode(1)
        }
        let level = LogLevelBox(cfg.logLevel)
        LoggingSystem.bootstrap { label in JournalLogHandler(label: label, levelBox: level) }
        var logger = Logger(label: "forecastd")
        logger.logLevel = .trace  // the handler's box decides

        // READY only after the database answers with the schema this binary expects.
        do {
            try await waitForDatabase(cfg, logger: logger, notifier: notifier)
        } catch let e as CLIError {
            logger.critical("\(e.description)")
            notifier.stopping(status: "failed: \(e.description)")
            throw ExitCode(1)
        }
        if Task.isCancelled { return }

        let (initialized, announce) = AsyncStream.makeStream(of: String.self)
        // One worker per shard of every source; the book keeps this daemon to its fair share.
        let workerID = "\(ProcessInfo.processInfo.hostName):\(ProcessInfo.processInfo.processIdentifier):\(Int(Date().timeIntervalSince1970))"
        let book = ShardBook(shards: Dictionary(cfg.sources.map { ($0.table.display, cfg.shards) }, uniquingKeysWith: max))
        let registration = WorkerRegistration(url: cfg.databaseURL, worker: workerID, sources: cfg.sources.map(\.table.display),
                                              leaseTimeout: cfg.leaseTimeout)
        // Counted before any shard is taken, so daemons that start together split the shards.
        if let live = try? registration.heartbeat() { book.setDaemons(live) }
        let workers = cfg.sources.flatMap { s in
            (0..<cfg.shards).map { k in
                let shard = ForecastStore.Shard(index: k, count: cfg.shards)
                let name = s.table.display + (cfg.shards == 1 ? "" : " shard \(shard)")
                return SourceWorker(source: s, shard: shard, book: book, workerID: workerID, leaseTimeout: cfg.leaseTimeout,
                                    engine: cfg.engine(for: s), trainingMode: cfg.trainingMode, databaseURL: cfg.databaseURL,
                                    settings: cfg.liveSettings, logger: logger, onInitialized: { announce.yield(name) })
            }
        }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = workers.map {
            .init(service: SourceService(worker: $0), successTerminationBehavior: .gracefullyShutdownGroup,
                  failureTerminationBehavior: .gracefullyShutdownGroup)
        }
        services.append(.init(service: StatusService(workers: workers, notifier: notifier, logger: logger)))
        services.append(.init(service: FreedMemoryService(logger: logger)))
        services.append(.init(service: RegistrationService(registration: registration, book: book, logger: logger)))
        services.append(.init(service: ReloadService(configPath: config, workers: workers, notifier: notifier, logger: logger,
                                                     applyLogLevel: { level.set($0) }, started: cfg)))
        services.append(.init(service: ReadyService(initialized: initialized, workers: workers, notifier: notifier, logger: logger,
                                                    sources: cfg.sources.count, expected: workers.count)))
        var groupConfig = ServiceGroupConfiguration(services: services, logger: logger)
        groupConfig.gracefulShutdownSignals = [.sigterm, .sigint]
        groupConfig.maximumGracefulShutdownDuration = .seconds(60)
        let group = ServiceGroup(configuration: groupConfig)
        do {
            try await group.run()
        } catch {
            logger.error("stopped with an error: \(error)")
            notifier.stopping(status: "failed: \(error)")
            throw ExitCode(1)
        }
        logger.info("forecastd stopped")
    }

    /// Retries the connection with backoff until the database answers; a schema that is older
    /// than this binary is fatal (it needs `forecastd migrate`).
    private func waitForDatabase(_ cfg: DaemonConfig, logger: Logger, notifier: SystemdNotifier) async throws {
        var backoff = 0.5
        var warned = false
        let expected = ForecastdVersion.schemaVersion
        while !Task.isCancelled {
            do {
                let conn = try PostgresConnection(url: cfg.databaseURL)
                defer { conn.close() }
                let version = try Migrator(connection: conn).currentVersion() ?? 0
                guard version >= expected else {
                    throw CLIError("database schema is at version \(version), this forecastd needs \(expected): run `forecastd migrate --config \(config)`")
                }
                if warned { logger.notice("database reachable: \(conn.target)") }
                return
            } catch let e as PostgresError where e.isConnectionProblem {
                if !warned { logger.warning("waiting for the database: \(e.message)") }
                warned = true
                notifier.status("waiting for the database")
                let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
                let ms = Int(backoff * 1000)
                let slept = await withTaskGroup(of: Bool.self) { g -> Bool in
                    g.addTask { try? await Task.sleep(for: .milliseconds(ms)); return true }
                    g.addTask { for await _ in signals { return false }; return false }
                    let first = await g.next() ?? true
                    g.cancelAll()
                    return first
                }
                if !slept { throw CLIError("stopped while waiting for the database") }
                backoff = min(backoff * 2, 15)
            } catch let e as PostgresError {
                throw CLIError("database check failed: \(e.message)")
            }
        }
    }
}

/// Sends READY=1 once every source has loaded its models (or found none) from the database:
/// each source announces itself on `initialized`, so nothing polls.
struct ReadyService: Service {
    let initialized: AsyncStream<String>
    let workers: [SourceWorker]
    let notifier: SystemdNotifier
    let logger: Logger
    let sources: Int
    /// Announcements to wait for: one per shard of every source.
    let expected: Int

    func run() async throws {
        var ready = Set<String>()
        for await name in initialized.cancelOnGracefulShutdown() {
            ready.insert(name)
            if ready.count == expected { break }
        }
        if ready.count == expected {
            let problems = workers.compactMap { w in w.health.problem.map { "\(w.health.name): \($0)" } }
            let status = problems.isEmpty ? "ready: \(sources) source(s)"
                : "ready: \(sources - Set(workers.filter { $0.health.problem != nil }.map(\.source.table.display)).count) of \(sources) source(s); " + problems.joined(separator: "; ")
            notifier.ready(status: status)
            logger.info("\(status)")
        }
        // Stay a member of the group until shutdown, then say so.
        try? await gracefulShutdown()
        notifier.stopping(status: "stopping: finishing the transaction in flight and saving checkpoints")
        logger.info("stopping")
    }
}

struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Validate the configuration file and print the settings it yields.",
        discussion: "Exit status 0 when the file is valid; otherwise one line naming the file, line and setting."
    )

    @Option(help: ArgumentHelp("The configuration file.", valueName: "file")) var config = "/etc/forecastd/forecastd.toml"

    func run() throws {
        try reportingErrors {
            let c = try DaemonConfig.load(path: config)
            let target = (try? ConnectionTarget(parsing: c.databaseURL)).map { "\($0)" } ?? "libpq defaults"
            print("\(config): OK")
            print("database: \(target)")
            for s in c.sources {
                print("source \(s.table.display): series \(s.seriesColumn), time \(s.timeColumn), value \(s.valueColumn), transform \((s.transform ?? c.engine.transform).rawValue), horizon \(s.horizon ?? c.engine.horizon)")
            }
            // Every setting with the value it takes, from the one settings table.
            for line in Settings.listing(c) { print(line) }
        }
    }
}
