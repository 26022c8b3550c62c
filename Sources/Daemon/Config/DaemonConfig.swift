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
    /// Checkpoints kept per model in forecast.models.
    var checkpointsKept = 5
    /// Seconds between checkpoints of per-series state (also saved after every accepted retrain
    /// and at shutdown).
    var checkpointInterval = 300.0
    var logLevel = LogLevel.info

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
            case "database":
                if let url = try r.string("url") { config.databaseURL = url }
            case "[[source]]":
                config.sources.append(try r.source())
            case "model":
                if let v = try r.string("cell") {
                    switch v {
                    case "lstm": config.engine.cell = .lstm
                    case "gru": config.engine.cell = .gru
                    default: throw r.bad("cell", "must be \"lstm\" or \"gru\", not \"\(v)\"")
                    }
                }
                let layers = try r.int("layers")
                if let sizes = try r.intArray("hidden") {
                    if layers != nil && layers != sizes.count { throw r.bad("layers", "disagrees with the \(sizes.count) sizes in hidden") }
                    config.engine.hiddenSizes = sizes
                } else if let h = try r.int("hidden") {
                    config.engine.hiddenSizes = Array(repeating: h, count: layers ?? config.engine.hiddenSizes.count)
                } else if let layers {
                    config.engine.hiddenSizes = Array(repeating: config.engine.hiddenSizes[0], count: layers)
                }
                if let v = try r.int("seq_length") { config.engine.seqLength = v }
                if let v = try r.double("dropout") { config.engine.dropout = Float(v) }
                if let v = try r.int("seed") { config.engine.seed = UInt64(truncatingIfNeeded: v) }
                if let v = try r.choice("transform", TargetTransform.self) { config.engine.transform = v }
                if let v = try r.choice("normalization", EngineConfig.Normalization.self) { config.engine.normalization = v }
                if let v = try r.choice("scope", EngineConfig.ModelScope.self) { config.engine.scope = v }
                if let v = try r.int("blend_memory") { config.engine.blendMemory = v > 0 ? v : nil }
            case "training":
                if let v = try r.int("warmup") { config.engine.warmup = v }
                if let v = try r.int("retrain_every") { config.engine.retrainEvery = v }
                if let v = try r.int("history") { config.engine.history = v }
                if let v = try r.int("initial_epochs") { config.engine.initialEpochs = v }
                if let v = try r.int("epochs") { config.engine.epochs = v }
                if let v = try r.int("batch_size") { config.engine.batchSize = v }
                if let v = try r.double("learning_rate") { config.engine.learningRate = Float(v) }
                if let v = try r.double("clip_norm") { config.engine.clipNorm = v > 0 ? Float(v) : nil }
                if let v = try r.double("huber_delta") { config.engine.huberDelta = v > 0 ? Float(v) : nil }
                if let v = try r.double("holdout") { config.engine.holdoutFraction = v }
                if let v = try r.int("max_train_windows") { config.engine.maxTrainWindows = v }
                if let v = try r.int("threads") { config.engine.threads = v }
                if let v = try r.int("predict_threads") { config.engine.predictThreads = v }
            case "interval":
                if let v = try r.double("coverage") { config.engine.coverage = v }
                if let v = try r.int("residual_window") { config.engine.residualWindow = v }
            case "anomaly":
                if let v = try r.double("threshold") { config.engine.anomaly.threshold = v }
                if let v = try r.int("short_window") { config.engine.anomaly.shortWindow = v }
                if let v = try r.int("long_window") { config.engine.anomaly.longWindow = v }
                if let v = try r.int("min_history") { config.engine.anomaly.minHistory = v }
                if let v = try r.int("cooldown") { config.engine.anomaly.cooldown = v }
                if let v = try r.int("shift_window") { config.engine.anomaly.shiftWindow = v }
                if let v = try r.int("short_shift_window") { config.engine.anomaly.shortShiftWindow = v }
                if let v = try r.double("shift_trim") { config.engine.anomaly.shiftTrim = v }
                if let v = try r.double("range_tolerance") { config.engine.anomaly.rangeTolerance = v }
            case "ingest":
                if let v = try r.double("poll_interval") {
                    guard v > 0 && v <= 3600 else { throw r.bad("poll_interval", "must be between 0 and 3600 seconds") }
                    config.pollInterval = v
                }
                if let v = try r.int("batch_rows") {
                    guard v >= 1 else { throw r.bad("batch_rows", "must be at least 1") }
                    config.batchRows = v
                }
            case "checkpoints":
                if let v = try r.int("keep") {
                    guard v >= 1 else { throw r.bad("keep", "must be at least 1") }
                    config.checkpointsKept = v
                }
                if let v = try r.double("interval") {
                    guard v >= 1 else { throw r.bad("interval", "must be at least 1 second") }
                    config.checkpointInterval = v
                }
            case "logging":
                if let v = try r.choice("level", LogLevel.self) { config.logLevel = v }
            default:
                throw ConfigError(file: file, line: table.line, key: nil,
                                  message: "unknown table [\(table.name)] (known: database, [[source]], model, training, interval, anomaly, ingest, checkpoints, logging)")
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
        return e
    }
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

    mutating func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v.kind else { throw bad(key, "must be a string, not \(v.typeName)") }
        return s
    }

    mutating func int(_ key: String) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard case .integer(let n) = v.kind else { throw bad(key, "must be an integer, not \(v.typeName)") }
        return n
    }

    mutating func double(_ key: String) throws -> Double? {
        guard let v = value(key) else { return nil }
        switch v.kind {
        case .integer(let n): return Double(n)
        case .float(let d):
            guard d.isFinite else { throw bad(key, "must be a finite number") }
            return d
        default: throw bad(key, "must be a number, not \(v.typeName)")
        }
    }

    mutating func intArray(_ key: String) throws -> [Int]? {
        guard let v = table.entries.first(where: { $0.key == key })?.value, case .array(let items) = v.kind else { return nil }
        used.insert(key)
        return try items.map { item in
            guard case .integer(let n) = item.kind else { throw bad(key, "must be a list of integers") }
            return n
        }
    }

    mutating func choice<T: RawRepresentable & CaseIterable>(_ key: String, _: T.Type) throws -> T? where T.RawValue == String {
        guard let s = try string(key) else { return nil }
        guard let v = T(rawValue: s) else {
            throw bad(key, "must be one of \(T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), not \"\(s)\"")
        }
        return v
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
                            transform: try choice("transform", TargetTransform.self))
    }

    func rejectUnknown() throws {
        for (key, value) in table.entries where !used.contains(key) {
            throw ConfigError(file: file, line: value.line, key: prefix + key, message: "unknown setting")
        }
    }
}
