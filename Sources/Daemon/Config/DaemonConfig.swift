import Forecast
import Foundation
import Ingest

/// One `[[source]]`: a user's table of (series, time, value) rows.
struct SourceConfig: Equatable {
    var table: SQLName
    var seriesColumn: String
    var timeColumn: String
    var valueColumn: String
    /// Overrides the model's transform for this source (prices: "log-return").
    var transform: TargetTransform?
    /// Overrides the model's horizon for this source.
    var horizon: Int?
}

/// Everything `forecastd run` reads from /etc/forecastd/forecastd.toml.
struct DaemonConfig: Equatable {
    var file: String
    var databaseURL = ""
    var sources: [SourceConfig] = []
    var engine = DaemonConfig.defaultEngine
    /// Seconds between polls when no NOTIFY arrives (the fallback for lost notifications).
    var pollInterval = 5.0
    /// Rows read per series and cycle, so catching up after downtime works in bounded batches.
    var batchRows = 5000
    /// Parts of each source, processed by one daemon each at a time (`[ingest] shards`).
    var shards = 1
    /// Seconds without a heartbeat after which other daemons take a daemon's shards over.
    var leaseTimeout = 30.0
    /// Longest a queued row waits for older transactions to commit before it is taken anyway.
    var commitWait = 60.0
    /// Rows whose time is further ahead of the clock than this are bad_time.
    var maxFutureSkew = 3600.0
    /// Checkpoints kept per model in forecast.models.
    var checkpointsKept = 5
    /// Days of issued paths kept (behind the newest observation), forecast.paths.
    var pathsKeepDays = 7.0
    /// Days of completed predictions kept (behind the newest observation); 0 keeps all.
    var predictionsKeepDays = 30.0
    /// Seconds between checkpoints of per-series state (also saved after every accepted retrain
    /// and at shutdown).
    var checkpointInterval = 300.0
    var logLevel = LogLevel.info
    /// Where trainings run (`[training] mode`).
    var trainingMode = TrainingMode.background

    /// The daemon's engine defaults: one model per source shared by its series, which is what
    /// keeps memory flat with thousands of series and lets one forward pass serve them all.
    static var defaultEngine: EngineConfig {
        var e = EngineConfig()
        e.scope = .shared
        e.threads = 1
        // Forecasts for many series at once are worth a second core; training has its own thread.
        e.predictThreads = 2
        return e
    }

    static func load(path: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> DaemonConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigError(file: path, line: 0, key: nil, message: "cannot read the file (does it exist, and may forecastd read it?)")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw ConfigError(file: path, line: 0, key: nil, message: "the file is not UTF-8 text")
        }
        return try parse(text, file: path, environment: environment)
    }

    static func parse(_ text: String, file: String, environment: [String: String] = [:]) throws -> DaemonConfig {
        let doc: TOMLDocument
        do {
            doc = try TOMLDocument(parsing: text, file: file)
        } catch let e as TOMLError {
            throw ConfigError(file: file, line: e.line, key: nil, message: "column \(e.column): \(e.message)")
        }
        var config = DaemonConfig(file: file)
        for table in doc.tables {
            var r = KeyReader(table: table, file: file)
            switch table.name {
            case "":
                break
            case "[[source]]":
                config.sources.append(try r.source())
            case let name where Settings.tables.contains(name):
                // Every other key is a row of the settings table.
                for entry in table.entries {
                    guard let setting = Settings.named("\(name).\(entry.key)") else { continue }
                    let value = try r.value(entry.key, as: setting.kind)
                    do {
                        try setting.set(&config, value)
                    } catch {
                        throw r.bad(entry.key, error.message)
                    }
                }
            default:
                throw ConfigError(file: file, line: table.line, key: nil,
                                  message: "unknown table [\(table.name)] (known: \((Settings.tables + ["[[source]]"]).joined(separator: ", ")))")
            }
            try r.rejectUnknown()
        }
        // Per-host overrides from the environment (the unit file's Environment= or an EnvironmentFile).
        if let url = environment["FORECASTD_DATABASE_URL"], !url.isEmpty { config.databaseURL = url }
        if let level = environment["FORECASTD_LOG_LEVEL"], !level.isEmpty {
            guard let l = LogLevel(rawValue: level) else {
                throw ConfigError(file: "environment", line: 0, key: "FORECASTD_LOG_LEVEL",
                                  message: "must be one of \(LogLevel.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            config.logLevel = l
        }
        if config.sources.isEmpty {
            throw ConfigError(file: file, line: 0, key: "source", message: "no [[source]] table: nothing to forecast")
        }
        var seen: [String: Int] = [:]
        for (i, s) in config.sources.enumerated() {
            if let j = seen[s.table.display] {
                throw ConfigError(file: file, line: 0, key: "source.table",
                                  message: "\(s.table.display) is configured twice ([[source]] #\(j + 1) and #\(i + 1))")
            }
            seen[s.table.display] = i
        }
        do {
            try config.engine.validate()
            for s in config.sources {
                var e = config.engine
                if let t = s.transform { e.transform = t }
                if let h = s.horizon { e.horizon = h }
                try e.validate()
            }
        } catch {
            throw ConfigError(file: file, line: 0, key: nil, message: "\(error)")
        }
        return config
    }

    /// The engine settings for one source.
    func engine(for source: SourceConfig) -> EngineConfig {
        var e = engine
        if let t = source.transform { e.transform = t }
        if let h = source.horizon { e.horizon = h }
        return e
    }
}

/// Where the daemon runs its trainings.
enum TrainingMode: String, CaseIterable {
    /// On a thread of its own: ingest never waits for a retrain.
    case background
    /// When due, before the next forecast, as `replay` does: the daemon's output is then exactly
    /// what `replay --config` gives for the same rows.
    case inline

    var engineMode: StreamingEngine.TrainingMode { self == .inline ? .inline : .deferred }
}

enum LogLevel: String, CaseIterable, Comparable {
    case debug, info, notice, warning, error

    var rank: Int { LogLevel.allCases.firstIndex(of: self)! }
    static func < (a: LogLevel, b: LogLevel) -> Bool { a.rank < b.rank }
}

struct ConfigError: Error, CustomStringConvertible {
    var file: String
    var line: Int
    var key: String?
    var message: String

    var description: String {
        var s = file
        if line > 0 { s += ":\(line)" }
        s += ": "
        if let key { s += "\(key): " }
        return s + message
    }
}

/// Reads typed keys out of one table and remembers which were used, so a misspelt key is an
/// error instead of a setting silently left at its default.
private struct KeyReader {
    let table: TOMLTable
    let file: String
    var used: Set<String> = []

    init(table: TOMLTable, file: String) {
        self.table = table
        self.file = file
    }

    private var prefix: String {
        table.name == "[[source]]" ? "source." : (table.name.isEmpty ? "" : table.name + ".")
    }

    func bad(_ key: String, _ message: String) -> ConfigError {
        let line = table.entries.first { $0.key == key }?.value.line ?? table.line
        return ConfigError(file: file, line: line, key: prefix + key, message: message)
    }

    private mutating func value(_ key: String) -> TOMLValue? {
        guard let v = table.entries.first(where: { $0.key == key })?.value else { return nil }
        used.insert(key)
        return v
    }

    /// The key's value read as a setting of this kind (integers are accepted where numbers are).
    mutating func value(_ key: String, as kind: SettingKind) throws -> SettingValue {
        guard let v = value(key) else { throw bad(key, "missing") }
        switch (kind, v.kind) {
        case (.int, .integer(let n)): return .int(n)
        case (.number, .integer(let n)): return .number(Double(n))
        case (.number, .float(let d)):
            guard d.isFinite else { throw bad(key, "must be a finite number") }
            return .number(d)
        case (.string, .string(let s)), (.choice, .string(let s)): return .string(s)
        case (.bool, .bool(let b)): return .bool(b)
        case (.sizes, .integer(let n)): return .int(n)
        case (.sizes, .array(let items)):
            return .sizes(try items.map { item in
                guard case .integer(let n) = item.kind else { throw bad(key, "must be a list of integers") }
                return n
            })
        default:
            throw bad(key, "must be \(kind.description), not \(v.typeName)")
        }
    }

    mutating func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v.kind else { throw bad(key, "must be a string, not \(v.typeName)") }
        return s
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ key: String, _: T.Type) throws -> T? where T.RawValue == String {
        guard let s = try string(key) else { return nil }
        guard let v = T(rawValue: s) else {
            throw bad(key, "must be one of \(T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), not \"\(s)\"")
        }
        return v
    }

    mutating func horizon() throws -> Int? {
        guard let v = value("horizon") else { return nil }
        guard case .integer(let n) = v.kind else { throw bad("horizon", "must be an integer, not \(v.typeName)") }
        guard n >= 1 else { throw bad("horizon", "must be at least 1 (got \(n))") }
        return Int(n)
    }

    mutating func source() throws -> SourceConfig {
        func required(_ key: String) throws -> String {
            guard let s = try string(key) else {
                throw ConfigError(file: file, line: table.line, key: "source.\(key)", message: "is required in every [[source]]")
            }
            do { try SQLName.validateIdentifier(s) } catch { throw bad(key, "\(error)") }
            return s
        }
        let tableName = try required("table")
        let name: SQLName
        do { name = try SQLName(parsing: tableName) } catch { throw bad("table", "\(error)") }
        return SourceConfig(table: name, seriesColumn: try required("series_column"), timeColumn: try required("time_column"),
                            valueColumn: try required("value_column"),
                            transform: try choice("transform", TargetTransform.self), horizon: try horizon())
    }

    func rejectUnknown() throws {
        for (key, value) in table.entries where !used.contains(key) {
            throw ConfigError(file: file, line: value.line, key: prefix + key, message: "unknown setting")
        }
    }
}
