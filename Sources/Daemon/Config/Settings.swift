import Forecast
import Foundation
import Ingest
import Replay

/// A setting's value, as the TOML file or a flag gives it.
enum SettingValue: Equatable, Sendable {
    case int(Int)
    case number(Double)
    case string(String)
    case bool(Bool)
    case sizes([Int])

    var display: String {
        switch self {
        case .int(let n): return String(n)
        case .number(let d): return d == d.rounded() && abs(d) < 1e15 ? String(format: "%.1f", d) : "\(d)"
        case .string(let s): return "\"\(s)\""
        case .bool(let b): return b ? "true" : "false"
        case .sizes(let s): return "[" + s.map(String.init).joined(separator: ", ") + "]"
        }
    }

    var json: JSONValue {
        switch self {
        case .int(let n): return .int(n)
        case .number(let d): return .number(d)
        case .string(let s): return .string(s)
        case .bool(let b): return .bool(b)
        case .sizes(let s): return .array(s.map { .int($0) })
        }
    }
}

/// A setting's type: how its text is read and how its help names the value.
enum SettingKind: Sendable {
    case int, number, string, bool
    /// An integer, or a list of integers (TOML array; `64,32` as a flag).
    case sizes
    case choice([String])

    /// "an integer", for messages.
    var description: String {
        switch self {
        case .int: return "an integer"
        case .number: return "a number"
        case .string: return "a string"
        case .bool: return "true or false"
        case .sizes: return "an integer or a list of integers"
        case .choice(let c): return "one of " + c.map { "\"\($0)\"" }.joined(separator: ", ")
        }
    }

    var valueName: String {
        switch self {
        case .int: return "n"
        case .number: return "x"
        case .string: return "text"
        case .bool: return "true|false"
        case .sizes: return "n[,n...]"
        case .choice(let c): return c.joined(separator: "|")
        }
    }
}

/// A value that a setting's validator refused; the caller adds where it came from.
struct SettingError: Error {
    var message: String
}

/// One row of the settings table: where the setting lives in the TOML file, its flag, its
/// help, whether SIGHUP applies it live, and how it is read from and written to the config.
/// The default is what `get` reads off `DaemonConfig()`: the daemon's defaults, for `run` and
/// `replay` alike.
struct Setting: Sendable {
    /// `table.key` in the TOML file.
    let path: String
    /// The command-line flag without `--` (nil: the setting is for the daemon only).
    let flag: String?
    let kind: SettingKind
    let help: String
    /// Applied on `systemctl reload` without a restart.
    let live: Bool
    /// nil when the setting is off or automatic (`unset` says what that means).
    let get: @Sendable (DaemonConfig) -> SettingValue?
    let set: @Sendable (inout DaemonConfig, SettingValue) throws(SettingError) -> Void
    /// What an unset value means ("off", "a day at each series' step").
    let unset: String

    var table: String { String(path.prefix { $0 != "." }) }
    var key: String { String(path.drop { $0 != "." }.dropFirst()) }

    var defaultDescription: String { describe(DaemonConfig.defaults) }

    func describe(_ c: DaemonConfig) -> String { get(c)?.display ?? unset }
}

extension DaemonConfig {
    /// Defaults only (no file): what `get` reports as the default.
    static var defaults: DaemonConfig { DaemonConfig(file: "") }
}

/// Every setting forecastd has, in the order `check-config` prints them. The TOML reader, the
/// replay flags, `check-config`, the report's `settings` and `forecast.backtest_runs.settings`
/// are all derived from this table.
enum Settings {
    static let all: [Setting] = database + ingest + checkpoints + retention + logging + model + training + interval + anomaly

    static let tables = ["database", "ingest", "checkpoints", "retention", "logging", "model", "training", "interval", "anomaly"]

    static func named(_ path: String) -> Setting? { byPath[path] }
    static func flag(_ name: String) -> Setting? { byFlag[name] }

    private static let byPath = Dictionary(uniqueKeysWithValues: all.map { ($0.path, $0) })
    private static let byFlag = Dictionary(uniqueKeysWithValues: all.compactMap { s in s.flag.map { ($0, s) } })

    // MARK: readers of one kind

    /// A Float setting as the decimal it was written as (0.001, not 0.0010000000474974513).
    private static func shortest(_ x: Float) -> Double { Double("\(x)") ?? Double(x) }

    private static func int(_ v: SettingValue, min: Int? = nil) throws(SettingError) -> Int {
        guard case .int(let n) = v else { throw SettingError(message: "must be an integer") }
        if let min, n < min { throw SettingError(message: "must be at least \(min) (got \(n))") }
        return n
    }

    private static func number(_ v: SettingValue) throws(SettingError) -> Double {
        switch v {
        case .int(let n): return Double(n)
        case .number(let d):
            guard d.isFinite else { throw SettingError(message: "must be a finite number") }
            return d
        default: throw SettingError(message: "must be a number")
        }
    }

    private static func string(_ v: SettingValue) throws(SettingError) -> String {
        guard case .string(let s) = v else { throw SettingError(message: "must be a string") }
        return s
    }

    private static func bool(_ v: SettingValue) throws(SettingError) -> Bool {
        guard case .bool(let b) = v else { throw SettingError(message: "must be true or false") }
        return b
    }

    private static func choice<T: RawRepresentable & CaseIterable>(_ v: SettingValue, _: T.Type) throws(SettingError) -> T
    where T.RawValue == String {
        let s = try string(v)
        guard let t = T(rawValue: s) else {
            throw SettingError(message: "must be one of \(T.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")), not \"\(s)\"")
        }
        return t
    }

    private static func names<T: RawRepresentable & CaseIterable>(_: T.Type) -> SettingKind where T.RawValue == String {
        .choice(T.allCases.map(\.rawValue))
    }

    /// An engine setting: `flag` defaults to the key with dashes.
    private static func engine(_ path: String, flag: String? = nil, _ kind: SettingKind, _ help: String, unset: String = "off",
                               get: @escaping @Sendable (EngineConfig) -> SettingValue?,
                               set: @escaping @Sendable (inout EngineConfig, SettingValue) throws(SettingError) -> Void) -> Setting {
        let key = String(path.drop { $0 != "." }.dropFirst())
        return Setting(path: path, flag: flag ?? key.replacingOccurrences(of: "_", with: "-"), kind: kind, help: help, live: false,
                       get: { get($0.engine) }, set: { (c, v) throws(SettingError) in try set(&c.engine, v) }, unset: unset)
    }

    // MARK: the table

    static let database: [Setting] = [
        Setting(path: "database.url", flag: nil, kind: .string,
                help: "libpq URL or key=value string; $FORECASTD_DATABASE_URL overrides it (keep passwords there or in .pgpass).",
                live: false, get: { c in c.databaseURL.isEmpty ? nil : .string((try? ConnectionTarget(parsing: c.databaseURL)).map { "\($0)" } ?? "(unparsable)") },
                set: { (c, v) throws(SettingError) in c.databaseURL = try string(v) }, unset: "libpq defaults (PG* variables)"),
    ]

    static let ingest: [Setting] = [
        Setting(path: "ingest.poll_interval", flag: nil, kind: .number,
                help: "Seconds between polls when no NOTIFY arrives (the fallback for lost notifications).", live: true,
                get: { .number($0.pollInterval) },
                set: { (c, v) throws(SettingError) in
                    let d = try number(v)
                    guard d > 0 && d <= 3600 else { throw SettingError(message: "must be between 0 and 3600 seconds") }
                    c.pollInterval = d
                }, unset: ""),
        Setting(path: "ingest.batch_rows", flag: nil, kind: .int,
                help: "Rows read per cycle, so catching up after downtime works in bounded batches.", live: true,
                get: { .int($0.batchRows) }, set: { (c, v) throws(SettingError) in c.batchRows = try int(v, min: 1) }, unset: ""),
        Setting(path: "ingest.shards", flag: nil, kind: .int,
                help: "Parts each source is split into by a hash of the series id; each part is processed by one daemon at a time, so up to this many daemons with this configuration share a source (see \"Running several daemons\"). A shard has its own shared model; after a change, new shards start from the old layout's models and series states.",
                live: false, get: { .int($0.shards) }, set: { (c, v) throws(SettingError) in c.shards = try int(v, min: 1) }, unset: ""),
        Setting(path: "ingest.lease_timeout", flag: nil, kind: .number,
                help: "Seconds a daemon may go without a heartbeat before the others end its database session and take its shards over (a daemon that is killed loses them at once). Must exceed the longest cycle: with [training] mode = \"inline\", a retrain.",
                live: false, get: { .number($0.leaseTimeout) },
                set: { (c, v) throws(SettingError) in
                    let d = try number(v)
                    guard d >= 2 && d <= 86_400 else { throw SettingError(message: "must be between 2 and 86400 seconds") }
                    c.leaseTimeout = d
                }, unset: ""),
        Setting(path: "ingest.commit_wait", flag: nil, kind: .number,
                help: "Seconds a new row may wait for transactions that began before it to commit (so a writer that commits late is not overtaken); a transaction open longer than this only delays its source this long, and rows it then commits behind their series count as late.",
                live: true, get: { .number($0.commitWait) },
                set: { (c, v) throws(SettingError) in
                    let d = try number(v)
                    guard d >= 0 && d <= 86_400 else { throw SettingError(message: "must be between 0 and 86400 seconds") }
                    c.commitWait = d
                }, unset: ""),
        Setting(path: "ingest.max_future_skew", flag: nil, kind: .number,
                help: "Rows whose time is more than this many seconds ahead of the clock are counted as bad_time instead of moving their series into the future.",
                live: true, get: { .number($0.maxFutureSkew) },
                set: { (c, v) throws(SettingError) in
                    let d = try number(v)
                    guard d >= 0 else { throw SettingError(message: "must not be negative") }
                    c.maxFutureSkew = d
                }, unset: ""),
    ]

    static let checkpoints: [Setting] = [
        Setting(path: "checkpoints.keep", flag: nil, kind: .int, help: "Checkpoints kept per model in forecast.models.", live: true,
                get: { .int($0.checkpointsKept) }, set: { (c, v) throws(SettingError) in c.checkpointsKept = try int(v, min: 1) }, unset: ""),
        Setting(path: "checkpoints.interval", flag: nil, kind: .number,
                help: "Seconds between checkpoints of per-series state (also saved after every accepted retrain and at shutdown).",
                live: true, get: { .number($0.checkpointInterval) },
                set: { (c, v) throws(SettingError) in
                    let d = try number(v)
                    guard d >= 1 else { throw SettingError(message: "must be at least 1 second") }
                    c.checkpointInterval = d
                }, unset: ""),
    ]

    static let retention: [Setting] = [
        Setting(path: "retention.predictions_days", flag: nil, kind: .number,
                help: "Days of completed predictions kept in forecast.predictions, counted back from the newest observation of any series; older days are dropped as whole partitions at each checkpoint. Pending forecasts are always kept. 0 keeps everything.",
                live: true, get: { .number($0.predictionsKeepDays) },
                set: { (c, v) throws(SettingError) in
                    let d = try number(v)
                    guard d >= 0 else { throw SettingError(message: "must not be negative (0 keeps everything)") }
                    c.predictionsKeepDays = d
                }, unset: ""),
        Setting(path: "retention.paths_days", flag: nil, kind: .number,
                help: "Days of forecast paths (horizon > 1) kept in forecast.paths, counted back from the newest observation of any series; older days are dropped as whole partitions at each checkpoint.",
                live: true, get: { .number($0.pathsKeepDays) },
                set: { (c, v) throws(SettingError) in
                    let d = try number(v)
                    guard d > 0 else { throw SettingError(message: "must be more than 0 days") }
                    c.pathsKeepDays = d
                }, unset: ""),
    ]

    static let logging: [Setting] = [
        Setting(path: "logging.level", flag: nil, kind: names(LogLevel.self), help: "Lowest priority written to the journal.",
                live: true, get: { .string($0.logLevel.rawValue) },
                set: { (c, v) throws(SettingError) in c.logLevel = try choice(v, LogLevel.self) }, unset: ""),
    ]

    static let model: [Setting] = [
        engine("model.cell", .choice(["lstm", "gru"]), "Recurrent cell.",
               get: { .string($0.cell == .lstm ? "lstm" : "gru") },
               set: { (e, v) throws(SettingError) in
                   switch try string(v) {
                   case "lstm": e.cell = .lstm
                   case "gru": e.cell = .gru
                   case let s: throw SettingError(message: "must be \"lstm\" or \"gru\", not \"\(s)\"")
                   }
               }),
        engine("model.hidden", .sizes, "Hidden size per layer: one size for every layer, or a list (one layer each).",
               get: { .sizes($0.hiddenSizes) },
               set: { (e, v) throws(SettingError) in
                   switch v {
                   case .int(let h): e.hiddenSizes = Array(repeating: h, count: e.hiddenSizes.count)
                   case .sizes(let s):
                       guard !s.isEmpty else { throw SettingError(message: "needs at least one size") }
                       e.hiddenSizes = s
                   default: throw SettingError(message: "must be an integer or a list of integers")
                   }
               }),
        engine("model.layers", .int, "Number of layers (each of the size in hidden).",
               get: { .int($0.hiddenSizes.count) },
               set: { (e, v) throws(SettingError) in
                   let n = try int(v, min: 1)
                   guard n != e.hiddenSizes.count else { return }
                   guard Set(e.hiddenSizes).count == 1 else {
                       throw SettingError(message: "disagrees with the \(e.hiddenSizes.count) sizes in hidden")
                   }
                   e.hiddenSizes = Array(repeating: e.hiddenSizes[0], count: n)
               }),
        engine("model.seq_length", .int, "Window length L: each forecast sees the last L points.",
               get: { .int($0.seqLength) }, set: { (e, v) throws(SettingError) in e.seqLength = try int(v) }),
        engine("model.dropout", .number, "Dropout between layers while training.",
               get: { .number(shortest($0.dropout)) }, set: { (e, v) throws(SettingError) in e.dropout = Float(try number(v)) }),
        engine("model.seed", .int, "Random seed (weights, shuffles).",
               get: { .int(Int(truncatingIfNeeded: $0.seed)) },
               set: { (e, v) throws(SettingError) in e.seed = UInt64(truncatingIfNeeded: try int(v)) }),
        engine("model.transform", names(TargetTransform.self), "What the model predicts: the level, the difference or the log-return (prices); [[source]] transform overrides it.",
               get: { .string($0.transform.rawValue) },
               set: { (e, v) throws(SettingError) in e.transform = try choice(v, TargetTransform.self) }),
        engine("model.normalization", names(EngineConfig.Normalization.self), "How windows are scaled per series: zscore (RP-1) or last-value (relative to the window's last value, by the mean absolute step).",
               get: { .string($0.normalization.rawValue) },
               set: { (e, v) throws(SettingError) in e.normalization = try choice(v, EngineConfig.Normalization.self) }),
        engine("model.scope", names(EngineConfig.ModelScope.self), "shared: one model per source for all its series; series: a model per series.",
               get: { .string($0.scope.rawValue) },
               set: { (e, v) throws(SettingError) in e.scope = try choice(v, EngineConfig.ModelScope.self) }),
        engine("model.horizon", .int, "Steps forecast at once (a direct multi-step head): every forecast also issues a path of this many steps, stored in forecast.paths. 1: next step only.",
               get: { .int($0.horizon) }, set: { (e, v) throws(SettingError) in e.horizon = try int(v, min: 1) }),
        engine("model.seasonal", names(EngineConfig.SeasonalContext.self), "on: find each series' season (a day or a week of its steps) in its data and give the model the values one season before its targets; auto: on when horizon > 1 (one step ahead the last value usually knows more); off: never.",
               get: { .string($0.seasonal.rawValue) },
               set: { (e, v) throws(SettingError) in e.seasonal = try choice(v, EngineConfig.SeasonalContext.self) }),
        engine("model.non_negative", .bool, "A series that has never gone below zero (counts, rates, percentages) gets no negative forecast or bound.",
               get: { .bool($0.nonNegative) }, set: { (e, v) throws(SettingError) in e.nonNegative = try bool(v) }),
        engine("model.blend_memory", .int, "Move forecasts toward the last value where that has had the smaller recent error, remembering about this many points (0: off, as RP-1).",
               get: { $0.blendMemory.map { .int($0) } },
               set: { (e, v) throws(SettingError) in let n = try int(v, min: 0); e.blendMemory = n > 0 ? n : nil }),
    ]

    static let training: [Setting] = [
        Setting(path: "training.mode", flag: nil, kind: names(TrainingMode.self),
                help: "background: train on a thread of its own, ingest never waits (the daemon's default); inline: train when due before the next forecast, as replay does, so the daemon's output is exactly replay's.",
                live: false, get: { .string($0.trainingMode.rawValue) },
                set: { (c, v) throws(SettingError) in c.trainingMode = try choice(v, TrainingMode.self) }, unset: ""),
        engine("training.warmup", .int, "Points of a series before the first training.",
               get: { .int($0.warmup) }, set: { (e, v) throws(SettingError) in e.warmup = try int(v) }),
        engine("training.retrain_every", .int, "Fine-tune after this many new points of a series.",
               get: { .int($0.retrainEvery) }, set: { (e, v) throws(SettingError) in e.retrainEvery = try int(v) }),
        engine("training.history", .int, "Train on the last this-many points of each series.",
               get: { .int($0.history) }, set: { (e, v) throws(SettingError) in e.history = try int(v) }),
        engine("training.initial_epochs", .int, "Epochs of the first training.",
               get: { .int($0.initialEpochs) }, set: { (e, v) throws(SettingError) in e.initialEpochs = try int(v) }),
        engine("training.epochs", .int, "Epochs of each fine-tune (0: never retrain).",
               get: { .int($0.epochs) }, set: { (e, v) throws(SettingError) in e.epochs = try int(v) }),
        engine("training.batch_size", .int, "Mini-batch size.",
               get: { .int($0.batchSize) }, set: { (e, v) throws(SettingError) in e.batchSize = try int(v) }),
        engine("training.learning_rate", .number, "Adam learning rate.",
               get: { .number(shortest($0.learningRate)) }, set: { (e, v) throws(SettingError) in e.learningRate = Float(try number(v)) }),
        engine("training.clip_norm", .number, "Clip the global gradient norm to this (0: no clipping).",
               get: { $0.clipNorm.map { .number(shortest($0)) } },
               set: { (e, v) throws(SettingError) in let d = try number(v); e.clipNorm = d > 0 ? Float(d) : nil }),
        engine("training.huber_delta", .number, "Train with Huber loss of this delta in normalised units (0: MSE, as RP-1).",
               unset: "off (MSE)", get: { $0.huberDelta.map { .number(shortest($0)) } },
               set: { (e, v) throws(SettingError) in let d = try number(v); e.huberDelta = d > 0 ? Float(d) : nil }),
        engine("training.holdout", .number, "Share of the newest windows held back to accept or reject a retrain (0: accept every finite retrain).",
               get: { .number($0.holdoutFraction) }, set: { (e, v) throws(SettingError) in e.holdoutFraction = try number(v) }),
        engine("training.max_train_windows", .int, "Cap on windows per (re)train, the newest kept (0: all).",
               unset: "all", get: { $0.maxTrainWindows.map { .int($0) } },
               set: { (e, v) throws(SettingError) in let n = try int(v, min: 0); e.maxTrainWindows = n > 0 ? n : nil }),
        engine("training.exploding_grad_norm", .number, "A step whose gradient norm (before clipping) exceeds this rolls the retrain back (0: only non-finite values do).",
               get: { $0.explodingGradNorm.map { .number(shortest($0)) } },
               set: { (e, v) throws(SettingError) in let d = try number(v); e.explodingGradNorm = d > 0 ? Float(d) : nil }),
        engine("training.exclude_anomalies", .bool, "Leave windows that contain a flagged point out of training and scaling.",
               get: { .bool($0.excludeAnomaliesFromTraining) },
               set: { (e, v) throws(SettingError) in e.excludeAnomaliesFromTraining = try bool(v) }),
        engine("training.threads", .int, "Training threads per model (data-parallel shards; the result depends on this number).",
               get: { .int($0.threads) }, set: { (e, v) throws(SettingError) in e.threads = try int(v) }),
        engine("training.predict_threads", .int, "Threads for forecasts: a batch of series is split across them.",
               get: { .int($0.predictThreads) }, set: { (e, v) throws(SettingError) in e.predictThreads = try int(v) }),
    ]

    static let interval: [Setting] = [
        engine("interval.coverage", .number, "Prediction interval coverage, e.g. 0.95.",
               get: { .number($0.coverage) }, set: { (e, v) throws(SettingError) in e.coverage = try number(v) }),
        engine("interval.residual_window", .int, "Recent residuals per series that the interval's quantiles come from.",
               get: { .int($0.residualWindow) }, set: { (e, v) throws(SettingError) in e.residualWindow = try int(v) }),
    ]

    private static func anomaly(_ key: String, _ kind: SettingKind, _ help: String, unset: String = "off",
                                get: @escaping @Sendable (AnomalyConfig) -> SettingValue?,
                                set: @escaping @Sendable (inout AnomalyConfig, SettingValue) throws(SettingError) -> Void) -> Setting {
        engine("anomaly.\(key)", flag: "anomaly-" + key.replacingOccurrences(of: "_", with: "-"), kind, help, unset: unset,
               get: { get($0.anomaly) }, set: { (e, v) throws(SettingError) in try set(&e.anomaly, v) })
    }

    static let anomaly: [Setting] = [
        anomaly("threshold", .number, "Flag when the score in [0, 1] reaches this (0.5: about one in 100,000 under the series' history).",
                get: { .number($0.threshold) }, set: { (a, v) throws(SettingError) in a.threshold = try number(v) }),
        anomaly("cooldown", .int, "Points after a flag before the next flag can be raised.",
                get: { .int($0.cooldown) }, set: { (a, v) throws(SettingError) in a.cooldown = try int(v) }),
        anomaly("short_window", .int, "Recent forecast errors averaged for the residual check.",
                get: { .int($0.shortWindow) }, set: { (a, v) throws(SettingError) in a.shortWindow = try int(v) }),
        anomaly("long_window", .int, "Errors of history the recent ones are judged against.",
                get: { .int($0.longWindow) }, set: { (a, v) throws(SettingError) in a.longWindow = try int(v) }),
        anomaly("min_history", .int, "History each check needs before it can flag.",
                get: { .int($0.minHistory) }, set: { (a, v) throws(SettingError) in a.minHistory = try int(v) }),
        anomaly("raw_scale", .number, "Residual, in robust standard deviations, that maps to a raw score of about 0.68.",
                get: { .number($0.rawScale) }, set: { (a, v) throws(SettingError) in a.rawScale = try number(v) }),
        anomaly("min_spread", .number, "Floor on the spread of the long-run raw scores.",
                get: { .number($0.minSpread) }, set: { (a, v) throws(SettingError) in a.minSpread = try number(v) }),
        anomaly("range_tolerance", .number, "A value this share of the range outside every value seen so far scores 1 (0: off).",
                get: { .number($0.rangeTolerance) }, set: { (a, v) throws(SettingError) in a.rangeTolerance = try number(v) }),
        anomaly("range_min_residual", .number, "The range check counts only when the forecast error is at least this many robust standard deviations.",
                get: { .number($0.rangeMinResidual) }, set: { (a, v) throws(SettingError) in a.rangeMinResidual = try number(v) }),
        anomaly("shift_window", .int, "Level-shift check window in points (0: off).", unset: "a day at each series' step",
                get: { $0.shiftWindow.map { .int($0) } }, set: { (a, v) throws(SettingError) in a.shiftWindow = try int(v) }),
        anomaly("short_shift_window", .int, "Second level-shift window in points, for changes lasting hours (0: off).",
                unset: "a quarter of the day window",
                get: { $0.shortShiftWindow.map { .int($0) } }, set: { (a, v) throws(SettingError) in a.shortShiftWindow = try int(v) }),
        anomaly("shift_trim", .number, "Share of each level-shift window left out at either end before averaging.",
                get: { .number($0.shiftTrim) }, set: { (a, v) throws(SettingError) in a.shiftTrim = try number(v) }),
        anomaly("context_seasons", .int, "Contextual check: the last quarter day against the same hours of this many earlier days or weeks (the season is found in each series' data; 0: off).",
                get: { .int($0.contextSeasons) }, set: { (a, v) throws(SettingError) in a.contextSeasons = try int(v) }),
    ]

    // MARK: derived views

    /// `path = value` for every setting (check-config).
    static func listing(_ c: DaemonConfig) -> [String] {
        all.map { s in
            "\(s.path) = \(s.describe(c))\(s.live ? "    # reload applies it" : "")"
        }
    }

    /// Every engine setting by its TOML path, for reports and forecast.backtest_runs.settings.
    static func json(_ c: DaemonConfig) -> JSONValue {
        var o: [String: JSONValue] = [:]
        for s in all where s.flag != nil { o[s.path] = s.get(c)?.json ?? .string(s.unset) }
        return .object(o)
    }

    /// The flags of every engine setting, for `replay --help`.
    static var flagHelp: String {
        var lines: [String] = []
        var table = ""
        for s in all {
            guard let flag = s.flag else { continue }
            if s.table != table {
                table = s.table
                lines.append("")
                lines.append("[\(table)]")
            }
            lines.append("  --\(flag) <\(s.kind.valueName)>")
            lines.append("      \(s.help) Default: \(s.defaultDescription). TOML: \(s.path).")
        }
        return lines.joined(separator: "\n")
    }

    /// Reads a flag's text as the setting's kind.
    static func parse(_ text: String, as kind: SettingKind) throws(SettingError) -> SettingValue {
        let t = text.trimmingCharacters(in: .whitespaces)
        switch kind {
        case .int:
            guard let n = Int(t) else { throw SettingError(message: "must be an integer, not \"\(text)\"") }
            return .int(n)
        case .number:
            guard let d = Double(t), d.isFinite else { throw SettingError(message: "must be a number, not \"\(text)\"") }
            return .number(d)
        case .string, .choice:
            return .string(t)
        case .bool:
            switch t.lowercased() {
            case "true", "yes", "on", "1": return .bool(true)
            case "false", "no", "off", "0": return .bool(false)
            default: throw SettingError(message: "must be true or false, not \"\(text)\"")
            }
        case .sizes:
            let parts = t.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else {
                throw SettingError(message: "expected a size like 64 or a list like 64,32, not \"\(text)\"")
            }
            return parts.count == 1 ? .int(parts[0]!) : .sizes(parts.map { $0! })
        }
    }

    /// Applies `--flag value` / `--flag=value` pairs to `config`, in order; errors name the flag
    /// as typed. Cross-setting checks (warmup > seq_length, …) also name the flag.
    static func apply(flags args: [String], to config: inout DaemonConfig) throws(SettingError) {
        var i = 0
        while i < args.count {
            let arg = args[i]
            guard arg.hasPrefix("--") else { throw SettingError(message: "unexpected argument \"\(arg)\"") }
            var name = String(arg.dropFirst(2))
            var value: String?
            if let eq = name.firstIndex(of: "=") {
                value = String(name[name.index(after: eq)...])
                name = String(name[..<eq])
            }
            guard let s = flag(name) else {
                throw SettingError(message: "unknown option --\(name) (`forecastd replay --help` lists every setting)")
            }
            if value == nil {
                guard i + 1 < args.count else { throw SettingError(message: "--\(name) needs a value (\(s.kind.valueName))") }
                i += 1
                value = args[i]
            }
            do {
                try s.set(&config, try parse(value!, as: s.kind))
            } catch {
                throw SettingError(message: "--\(name): \(error.message)")
            }
            i += 1
        }
    }

    /// The flag of the setting an engine validation message starts with ("anomaly.cooldown: …",
    /// "seq_length: …"), so replay's errors name what the user typed.
    static func flagMessage(_ message: String) -> String {
        guard let colon = message.firstIndex(of: ":") else { return message }
        let name = String(message[..<colon])
        let s = named(name) ?? all.first { $0.key == name && $0.flag != nil }
        guard let flag = s?.flag else { return message }
        return "--\(flag)" + message[colon...]
    }
}
