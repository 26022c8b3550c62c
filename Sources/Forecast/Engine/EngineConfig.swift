/// Everything that decides what the streaming engine predicts. The daemon's config file, the
/// `replay` flags and the RP-1 protocol all end up here, so one value describes a run.
public struct EngineConfig: Sendable, Equatable {
    /// How model inputs are normalised per series.
    public enum Normalization: String, Sendable, CaseIterable {
        /// (x − mean) / std of the training buffer (RP-1's scaler).
        case zScore = "zscore"
        /// (x − last value of the window) / std of the training buffer: the model predicts the move
        /// from the last observation, which keeps working when the level drifts away from what
        /// the model was trained on.
        case lastValue = "last-value"
    }

    /// Which series share one model.
    public enum ModelScope: String, Sendable, CaseIterable {
        /// A model per series.
        case series
        /// One model for all series of the engine (per-series scaling, residuals and anomaly state).
        case shared
    }

    /// Whether the model gets the values one season before its targets (see `Seasonality`).
    public enum SeasonalContext: String, Sendable, CaseIterable {
        /// `on` for a horizon model, `off` for a next-step one. One step ahead the last value
        /// usually knows more than a day-old one: on the development data the season cost the
        /// next-step model accuracy on 8 of 28 files and 2.9 NAB points, while on exact daily
        /// patterns it took MASE from 1.00 to 0.18 (use `on` there).
        case auto
        /// Detect each series' season from its data; a series without one gets none.
        case on
        case off
    }

    /// Whether the model has the seasonal skip.
    public var usesSeason: Bool { seasonal == .on || (seasonal == .auto && horizon > 1) }

    public var cell: CellKind = .lstm
    /// Steps forecast at once (a direct multi-output head); 1 = next step only.
    public var horizon = 1
    public var seasonal: SeasonalContext = .auto
    /// A series that has never gone below zero gets no negative forecast or bound.
    public var nonNegative = true
    public var hiddenSizes: [Int] = [64, 64]
    public var dropout: Float = 0
    public var seqLength = 48
    /// Points of a series (model group) needed before the first training.
    public var warmup = 144
    /// Fine-tune after this many new points of the group.
    public var retrainEvery = 288
    /// Train on the last this-many points of each series.
    public var history = 1000
    public var initialEpochs = 8
    public var epochs = 2
    public var batchSize = 32
    public var learningRate: Float = 1e-3
    /// Global gradient-norm clip; nil disables clipping.
    public var clipNorm: Float? = 1.0
    public var seed: UInt64 = 0
    /// Training threads per model (data-parallel shards of a batch).
    public var threads = 1
    public var transform: TargetTransform = .level
    public var normalization: Normalization = .lastValue
    public var scope: ModelScope = .series
    /// Fraction of the newest training windows held back to judge a retrained model against the
    /// current one (0 = accept every finite retrain, as RP-1 does).
    public var holdoutFraction = 0.1
    /// Cap on windows per (re)train (the newest are kept); nil = all.
    public var maxTrainWindows: Int? = 8192
    /// A step whose pre-clip gradient norm exceeds this counts as exploding and rolls back the
    /// retrain (nil = only non-finite values roll back).
    public var explodingGradNorm: Float? = 1e6
    /// Interval coverage (0.95 = 2.5 % and 97.5 % residual quantiles).
    public var coverage = 0.95
    /// Residuals kept per series for intervals.
    public var residualWindow = 500
    public var anomaly = AnomalyConfig()
    /// Leave windows that contain a flagged point out of training, so an incident does not
    /// teach the model that incidents are normal. RP-1 trains on every window.
    public var excludeAnomaliesFromTraining = true
    /// Train with Huber loss of this delta (in normalised units) instead of MSE; nil = MSE (RP-1).
    public var huberDelta: Float? = 1.0
    /// Threads for forecasts: a batch of series is split across them; one series' forecast runs
    /// its layers as a two-thread pipeline.
    public var predictThreads = 1
    /// Move each forecast back toward persistence by the weight with the least recent absolute
    /// error for that series (PersistenceBlend), remembered over about this many points;
    /// nil = the model's forecast as it is (RP-1).
    public var blendMemory: Int? = 500

    public init() {}

    /// RP-1, the reference walk-forward protocol (shared/anchors/walk_forward.py).
    public static var rp1: EngineConfig {
        var c = EngineConfig()
        c.hiddenSizes = [64, 64]
        c.seqLength = 48
        c.warmup = 2000
        c.retrainEvery = 500
        c.history = 4000
        c.initialEpochs = 10
        c.epochs = 2
        c.batchSize = 32
        c.learningRate = 1e-3
        c.clipNorm = 1.0
        c.normalization = .zScore
        c.holdoutFraction = 0
        c.maxTrainWindows = nil
        c.explodingGradNorm = nil
        c.excludeAnomaliesFromTraining = false
        c.huberDelta = nil
        c.blendMemory = nil
        c.seasonal = .off
        c.nonNegative = false
        return c
    }

    public var modelConfig: ModelConfig {
        ModelConfig(cell: cell, inputSize: 1, hiddenSizes: hiddenSizes, dropout: dropout,
                    outputSize: horizon, seasonalSkip: usesSeason)
    }

    /// Checks every setting; the message names the setting (as the config file and flags spell it).
    public func validate() throws {
        func bad(_ name: String, _ why: String) -> ForecastError { .invalidSetting("\(name): \(why)") }
        if seqLength < 1 { throw bad("seq_length", "must be at least 1 (got \(seqLength))") }
        if horizon < 1 || horizon > 10_000 { throw bad("horizon", "must be in 1...10000 (got \(horizon))") }
        if horizon > 1 && transform != .level {
            throw bad("horizon", "a horizon of \(horizon) needs transform = \"level\" (got \"\(transform.rawValue)\")")
        }
        // A warm-up shorter than seq_length + horizon simply waits until the first window has all
        // its targets.
        if warmup <= seqLength { throw bad("warmup", "must be greater than seq_length (\(seqLength)), got \(warmup)") }
        if retrainEvery < 1 { throw bad("retrain_every", "must be at least 1 (got \(retrainEvery))") }
        if history <= seqLength + horizon - 1 {
            throw bad("history", "must be greater than seq_length + horizon - 1 (\(seqLength + horizon - 1)), got \(history)")
        }
        if initialEpochs < 1 { throw bad("initial_epochs", "must be at least 1 (got \(initialEpochs))") }
        if epochs < 0 { throw bad("epochs", "must not be negative (got \(epochs))") }
        if batchSize < 1 { throw bad("batch_size", "must be at least 1 (got \(batchSize))") }
        if !(learningRate > 0) || !learningRate.isFinite { throw bad("learning_rate", "must be a positive number (got \(learningRate))") }
        if let c = clipNorm, !(c > 0) || !c.isFinite { throw bad("clip_norm", "must be a positive number (got \(c))") }
        if threads < 1 { throw bad("threads", "must be at least 1 (got \(threads))") }
        if predictThreads < 1 { throw bad("predict_threads", "must be at least 1 (got \(predictThreads))") }
        if !(holdoutFraction >= 0 && holdoutFraction < 0.5) { throw bad("holdout", "must be in [0, 0.5) (got \(holdoutFraction))") }
        if let m = maxTrainWindows, m < 1 { throw bad("max_train_windows", "must be at least 1 (got \(m))") }
        if !(coverage > 0 && coverage < 1) { throw bad("coverage", "must be between 0 and 1 (got \(coverage))") }
        if residualWindow < 10 { throw bad("residual_window", "must be at least 10 (got \(residualWindow))") }
        if residualWindow > ResidualWindow.maxCapacity {
            throw bad("residual_window", "must be at most \(ResidualWindow.maxCapacity) (got \(residualWindow))")
        }
        if hiddenSizes.isEmpty || hiddenSizes.contains(where: { $0 < 1 }) {
            throw bad("hidden", "needs one or more positive sizes (got \(hiddenSizes))")
        }
        if !(dropout >= 0 && dropout < 1) { throw bad("dropout", "must be in [0, 1) (got \(dropout))") }
        try anomaly.validate()
        try modelConfig.validate()
    }
}
