import ArgumentParser
import Forecast
import Replay

/// The engine's settings as command-line flags. Unset flags keep the defaults (or RP-1's with
/// `--rp1`), so a flag always means exactly what it says.
struct EngineOptions: ParsableArguments {
    @Flag(help: "Start from RP-1, the reference walk-forward protocol (shared/anchors/walk_forward.py): hidden 64, 2 layers, seq-length 48, warmup 2000, retrain-every 500, history 4000, initial-epochs 10, epochs 2, z-score scaling, no holdout.")
    var rp1 = false

    @Option(help: "Window length L: each forecast sees the last L points.") var seqLength: Int?
    @Option(help: "Points before the first training.") var warmup: Int?
    @Option(help: "Fine-tune after this many new points.") var retrainEvery: Int?
    @Option(help: "Train on the last this-many points.") var history: Int?
    @Option(help: "Epochs of the first training.") var initialEpochs: Int?
    @Option(help: "Epochs of each fine-tune (0: never retrain).") var epochs: Int?
    @Option(help: ArgumentHelp("Hidden size per layer: 64, or a list like 64,32,16 (one layer each).", valueName: "sizes"))
    var hidden: String?
    @Option(help: "Number of LSTM layers (with a single --hidden size).") var layers: Int?
    @Option(help: "lstm or gru.") var cell: String?
    @Option(help: "Mini-batch size.") var batchSize: Int?
    @Option(help: "Adam learning rate.") var learningRate: Float?
    @Option(help: "Clip the global gradient norm to this (0: no clipping).") var clipNorm: Float?
    @Option(help: "Train with Huber loss of this delta in normalised units (0: MSE, as RP-1).") var huberDelta: Float?
    @Option(help: "Random seed (weights, shuffles).") var seed: UInt64?
    @Option(help: "Training threads per model.") var threads: Int?
    @Option(help: "level, difference or log-return.") var transform: String?
    @Option(help: "zscore (RP-1) or last-value.") var normalization: String?
    @Option(help: "series (a model per series) or shared (one model for all series).") var scope: String?
    @Option(help: "Share of the newest windows held back to accept or reject a retrain (0: accept all).") var holdout: Double?
    @Option(help: "Prediction interval coverage, e.g. 0.95.") var coverage: Double?
    @Option(help: "Move forecasts toward the last value where that has had the smaller recent error, remembering about this many points (0: off, as RP-1).")
    var blendMemory: Int?
    @Option(help: "Anomaly flag threshold on the score in [0, 1].") var anomalyThreshold: Double?
    @Option(help: "Points after a flag before the next flag can be raised.") var anomalyCooldown: Int?
    @Option(help: "Level-shift check window in points (0: off); by default a day at the series' step (288 for 5-minute data).") var anomalyShiftWindow: Int?
    @Option(help: "Second level-shift check window in points, for changes lasting hours (0: off); by default a quarter of the day window.")
    var anomalyShortShiftWindow: Int?

    func engineConfig(defaultThreads: Int) throws -> EngineConfig {
        var c = rp1 ? EngineConfig.rp1 : EngineConfig()
        c.threads = defaultThreads
        if let v = seqLength { c.seqLength = v }
        if let v = warmup { c.warmup = v }
        if let v = retrainEvery { c.retrainEvery = v }
        if let v = history { c.history = v }
        if let v = initialEpochs { c.initialEpochs = v }
        if let v = epochs { c.epochs = v }
        if let hidden {
            let sizes = hidden.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !sizes.isEmpty, sizes.allSatisfy({ $0 != nil }) else {
                throw ValidationError("--hidden: expected a size like 64 or a list like 64,32 (got \(hidden))")
            }
            let s = sizes.map { $0! }
            if s.count == 1 {
                c.hiddenSizes = Array(repeating: s[0], count: layers ?? c.hiddenSizes.count)
            } else {
                if let layers, layers != s.count { throw ValidationError("--layers \(layers) disagrees with the \(s.count) sizes of --hidden") }
                c.hiddenSizes = s
            }
        } else if let layers {
            c.hiddenSizes = Array(repeating: c.hiddenSizes[0], count: layers)
        }
        if let cell {
            switch cell {
            case "lstm": c.cell = .lstm
            case "gru": c.cell = .gru
            default: throw ValidationError("--cell: lstm or gru (got \(cell))")
            }
        }
        if let v = batchSize { c.batchSize = v }
        if let v = learningRate { c.learningRate = v }
        if let v = clipNorm { c.clipNorm = v > 0 ? v : nil }
        if let v = huberDelta { c.huberDelta = v > 0 ? v : nil }
        if let v = seed { c.seed = v }
        if let v = threads { c.threads = v }
        if let v = transform {
            guard let t = TargetTransform(rawValue: v) else { throw ValidationError("--transform: level, difference or log-return (got \(v))") }
            c.transform = t
        }
        if let v = normalization {
            guard let n = EngineConfig.Normalization(rawValue: v) else { throw ValidationError("--normalization: zscore or last-value (got \(v))") }
            c.normalization = n
        }
        if let v = scope {
            guard let s = EngineConfig.ModelScope(rawValue: v) else { throw ValidationError("--scope: series or shared (got \(v))") }
            c.scope = s
        }
        if let v = holdout { c.holdoutFraction = v }
        if let v = coverage { c.coverage = v }
        if let v = blendMemory { c.blendMemory = v > 0 ? v : nil }
        if let v = anomalyThreshold { c.anomaly.threshold = v }
        if let v = anomalyCooldown { c.anomaly.cooldown = v }
        if let v = anomalyShiftWindow { c.anomaly.shiftWindow = v }
        if let v = anomalyShortShiftWindow { c.anomaly.shortShiftWindow = v }
        do {
            try c.validate()
        } catch {
            throw ValidationError("--\(String(describing: error).replacingOccurrences(of: "anomaly.", with: "anomaly-").replacingOccurrences(of: "_", with: "-"))")
        }
        return c
    }
}

extension EngineConfig {
    /// Every setting, for reports and forecast.backtest_runs.settings.
    var settingsJSON: JSONValue {
        .object([
            "cell": .string(cell == .lstm ? "lstm" : "gru"), "hidden": .array(hiddenSizes.map { .int($0) }),
            "seq_length": .int(seqLength), "warmup": .int(warmup), "retrain_every": .int(retrainEvery),
            "history": .int(history), "initial_epochs": .int(initialEpochs), "epochs": .int(epochs),
            "batch_size": .int(batchSize), "learning_rate": .number(Double(learningRate)),
            "clip_norm": .number(clipNorm.map(Double.init)), "huber_delta": .number(huberDelta.map(Double.init)), "seed": .int(Int(truncatingIfNeeded: seed)),
            "threads": .int(threads), "transform": .string(transform.rawValue),
            "normalization": .string(normalization.rawValue), "scope": .string(scope.rawValue),
            "holdout": .number(holdoutFraction), "coverage": .number(coverage),
            "blend_memory": .number(blendMemory.map(Double.init)),
            "max_train_windows": .number(maxTrainWindows.map(Double.init)), "dropout": .number(Double(dropout)),
            "anomaly_threshold": .number(anomaly.threshold), "anomaly_cooldown": .int(anomaly.cooldown),
            "anomaly_shift_window": anomaly.shiftWindow.map { .int($0) } ?? .string("a day at the series' step"),
            "anomaly_short_shift_window": anomaly.shortShiftWindow.map { .int($0) } ?? .string("a quarter of the day window"),
        ])
    }
}
