import Foundation
import Ingest
import XCTest

/// A `forecastd run` child process against a fresh database of the throwaway cluster, with a
/// source table of its own, a config file, an optional NOTIFY_SOCKET listener, and helpers to
/// feed rows and wait for what the daemon writes.
public final class DaemonHarness {
    public let url: String
    public let directory: URL
    public let configPath: String
    public let table: String
    public private(set) var process: Process?
    public let notify: NotifyListener?
    private var logHandle: FileHandle?
    public let logPath: String
    public private(set) var admin: PostgresConnection

    /// A new admin connection (after the server was restarted).
    public func reconnect() throws {
        admin.close()
        admin = try PostgresConnection(url: url)
    }

    /// A small, fast model so that tests in debug builds train in well under a second.
    public static let smallModel = """
        [model]
        hidden = 8
        layers = 1
        seq_length = 12
        scope = "shared"

        [training]
        warmup = 30
        retrain_every = 60
        history = 200
        initial_epochs = 3
        epochs = 1

        [anomaly]
        min_history = 20
        """

    /// Extra configuration: a second `[[source]]` with the harness table's columns, and the small model.
    public static func secondSource(_ table: String) -> String {
        """
        [[source]]
        table = "\(table)"
        series_column = "sensor"
        time_column = "ts"
        value_column = "reading"

        """ + smallModel
    }

    /// Lines added to the config's [ingest] table (`shards = 4`).
    public var ingestLines = ""
    /// Other `forecastd run` processes on the same database and configuration.
    public private(set) var peers: [Process] = []

    public init(name: String = #function, extraConfig: String = DaemonHarness.smallModel, notifySocket: Bool = false,
                table: String = "public.readings", ingestLines: String = "") throws {
        self.ingestLines = ingestLines
        url = try TestDatabase.fresh(name)
        try TestDatabase.migrate(url)
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("forecastd-daemon-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        self.table = table
        admin = try PostgresConnection(url: url)
        try admin.execute("CREATE TABLE \(table) (sensor text NOT NULL, ts timestamptz NOT NULL, reading double precision)")
        configPath = directory.appendingPathComponent("forecastd.toml").path
        logPath = directory.appendingPathComponent("forecastd.log").path
        notify = notifySocket ? try NotifyListener(path: directory.appendingPathComponent("notify.sock").path) : nil
        try writeConfig(extraConfig)
        try migrate()
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// `forecastd migrate --config` (installs the source triggers).
    public func migrate() throws {
        let m = try ForecastdProcess.run(["migrate", "--config", configPath],
                                         environment: ["FORECASTD_DATABASE_URL": ""])
        guard m.status == 0 else { throw Failure(description: "migrate failed: \(m.stderr)") }
    }

    deinit {
        if let p = process, p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        for p in peers where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        notify?.close()
        try? FileManager.default.removeItem(at: directory)
    }

    public func writeConfig(_ extra: String, pollInterval: Double = 0.5, logLevel: String = "info", batchRows: Int = 500,
                            checkpointInterval: Int = 2) throws {
        let text = """
            [database]
            url = "\(url)"

            [[source]]
            table = "\(table)"
            series_column = "sensor"
            time_column = "ts"
            value_column = "reading"

            [ingest]
            poll_interval = \(pollInterval)
            batch_rows = \(batchRows)
            \(ingestLines)

            [checkpoints]
            interval = \(checkpointInterval)

            [logging]
            level = "\(logLevel)"

            \(extra)
            """
        try text.write(toFile: configPath, atomically: true, encoding: .utf8)
    }

    /// Starts `forecastd run` (appending to the same log across restarts).
    public func start(watchdogSeconds: Double? = nil) throws {
        var env: [String: String] = [:]
        if let notify { env["NOTIFY_SOCKET"] = notify.path }
        if let w = watchdogSeconds { env["WATCHDOG_USEC"] = String(Int(w * 1_000_000)) }
        let (p, h) = try launch(logPath: logPath, environment: env)
        logHandle = h
        process = p
    }

    /// Starts another `forecastd run` with the same configuration, logging to `peerLog(i)`.
    @discardableResult
    public func startPeer() throws -> Process {
        let (p, _) = try launch(logPath: peerLogPath(peers.count), environment: [:])
        peers.append(p)
        return p
    }

    private func launch(logPath: String, environment extra: [String: String]) throws -> (Process, FileHandle) {
        let p = Process()
        p.executableURL = ForecastdProcess.binary
        p.arguments = ["run", "--config", configPath]
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "FORECASTD_DATABASE_URL")
        env["OPENBLAS_NUM_THREADS"] = "1"
        env.merge(extra) { $1 }
        p.environment = env
        if !FileManager.default.fileExists(atPath: logPath) { _ = FileManager.default.createFile(atPath: logPath, contents: nil) }
        let h = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        h.seekToEndOfFile()
        p.standardError = h
        p.standardOutput = h
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return (p, h)
    }

    public func peerLogPath(_ i: Int) -> String { directory.appendingPathComponent("peer\(i).log").path }
    public func peerLog(_ i: Int) -> String { (try? String(contentsOfFile: peerLogPath(i), encoding: .utf8)) ?? "" }

    /// SIGTERM and wait; returns the exit status.
    @discardableResult
    public func stop(timeout: Double = 60) -> Int32 {
        guard let p = process else { return -1 }
        kill(p.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        process = nil
        return p.terminationStatus
    }

    public func kill9() {
        guard let p = process else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        process = nil
    }

    public func signal(_ sig: Int32) {
        if let p = process { kill(p.processIdentifier, sig) }
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Inserts rows (sensor, epoch seconds, value or nil) in one statement.
    public func insert(_ rows: [(String, Double, Double?)]) throws {
        guard !rows.isEmpty else { return }
        var params: [String?] = []
        var tuples: [String] = []
        for (i, r) in rows.enumerated() {
            params += [r.0, String(r.1), r.2.map { String($0) }]
            tuples.append("($\(3 * i + 1), to_timestamp($\(3 * i + 2)::float8), $\(3 * i + 3)::float8)")
        }
        try admin.execute("INSERT INTO \(table) (sensor, ts, reading) VALUES " + tuples.joined(separator: ", "), params)
    }

    /// A noisy daily-ish sine per sensor, deterministic.
    public static func value(sensor: Int, step: Int) -> Double {
        let noise = sin(Double(step * 7919 + sensor * 104_729)) * 0.1
        return 10 * Double(sensor + 1) + sin(Double(step) * 2 * .pi / 24) + noise
    }

    public static let t0 = 1_700_000_000.0

    /// Rows for steps `range` of sensors 0..<sensors, 60 s apart.
    public static func rows(sensors: Int, steps range: Range<Int>) -> [(String, Double, Double?)] {
        var out: [(String, Double, Double?)] = []
        for step in range {
            for s in 0..<sensors { out.append(("s\(s)", t0 + Double(step) * 60, value(sensor: s, step: step))) }
        }
        return out
    }

    /// Polls `sql` (a one-value query) until `predicate` holds or the timeout passes.
    @discardableResult
    public func waitFor(_ sql: String, timeout: Double = 60, pollEvery: Double = 0.05, file: StaticString = #filePath,
                        line: UInt = #line, _ predicate: (String?) -> Bool) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        var last: String?
        while Date() < deadline {
            last = (try? admin.execute(sql))?.scalar ?? nil
            if predicate(last) { return last }
            if let p = process, !p.isRunning {
                XCTFail("forecastd exited (\(p.terminationStatus)) while waiting for \(sql):\n\(log)", file: file, line: line)
                return last
            }
            usleep(UInt32(pollEvery * 1_000_000))
        }
        XCTFail("timed out waiting for \(sql) (last: \(last ?? "nil"))\nlog:\n\(log)", file: file, line: line)
        return last
    }

    public func count(_ sql: String) throws -> Int {
        Int(try admin.execute(sql).scalar ?? "0") ?? 0
    }
}

/// A NOTIFY_SOCKET: a unix datagram socket that records every sd_notify message.
public final class NotifyListener: @unchecked Sendable {
    public let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var _messages: [(Date, String)] = []
    private var closed = false

    public init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        guard fd >= 0 else { throw DaemonHarness.Failure(description: "socket() failed: \(errno)") }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        _ = withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            path.utf8CString.withUnsafeBytes { src in memcpy(raw.baseAddress!, src.baseAddress!, min(src.count, raw.count - 1)) }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw DaemonHarness.Failure(description: "bind(\(path)) failed: \(errno)") }
        var tv = timeval(tv_sec: 0, tv_usec: 100_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let t = Thread { [weak self] in self?.loop() }
        t.start()
    }

    private func loop() {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            lock.lock()
            let stop = closed
            lock.unlock()
            if stop { return }
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0 {
                let text = String(decoding: buf[0..<n], as: UTF8.self)
                lock.lock()
                _messages.append((Date(), text))
                lock.unlock()
            }
        }
    }

    public var messages: [(Date, String)] {
        lock.lock()
        defer { lock.unlock() }
        return _messages
    }

    /// Every `KEY=value` line received, in order.
    public var assignments: [(Date, String)] {
        messages.flatMap { m in m.1.split(separator: "\n").map { (m.0, String($0)) } }
    }

    public func close() {
        lock.lock()
        closed = true
        lock.unlock()
        Foundation.close(fd)
        unlink(path)
    }
}
