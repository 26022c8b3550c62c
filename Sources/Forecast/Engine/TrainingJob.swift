import Foundation

/// A (re)training of one model group, detached from the engine: it holds copies of the model,
/// the optimizer state and the windows, so it can run on another thread while the engine keeps
/// predicting with the current model (the daemon), or inline (replay).
public final class TrainingJob: @unchecked Sendable {
    public let groupIndex: Int
    /// The version the model gets if it is accepted.
    public let version: Int
    public let epochs: Int
    public let windows: Int
    public let holdoutWindows: Int
    let settings: EngineConfig
    let start: Model
    let current: Model?
    let adam: Adam
    /// Windows [n][L], targets [n][horizon] and, with a seasonal skip, the skip's inputs
    /// [n][horizon] (empty without); `h…` the held-back windows.
    let x: [Float], y: [Float], s: [Float], hx: [Float], hy: [Float], hs: [Float]
    let scalers: [(series: Int, scaler: Scaler)]
    let seed: UInt64
    /// Loss weight per step of a multi-step head (see `Trainer.outputWeights`); nil for one step.
    var outputWeights: [Float]?
    /// The engine that made the job: an outcome is installed only there (a daemon that reloads
    /// its models drops what the old engine still had in training).
    var origin: ObjectIdentifier?

    init(groupIndex: Int, version: Int, epochs: Int, settings: EngineConfig, start: Model, current: Model?,
         adam: Adam, x: [Float], y: [Float], s: [Float] = [], hx: [Float], hy: [Float], hs: [Float] = [],
         scalers: [(series: Int, scaler: Scaler)], seed: UInt64) {
        self.groupIndex = groupIndex
        self.version = version
        self.epochs = epochs
        self.settings = settings
        self.start = start
        self.current = current
        self.adam = adam
        self.x = x; self.y = y; self.s = s; self.hx = hx; self.hy = hy; self.hs = hs
        self.scalers = scalers
        self.seed = seed
        let outputs = start.config.outputSize
        windows = y.count / outputs
        holdoutWindows = hy.count / outputs
    }

    /// Trains and judges the result. Never throws: divergence is an outcome, not an error.
    public func run() -> TrainingOutcome {
        let t0 = DispatchTime.now().uptimeNanoseconds
        let L = settings.seqLength
        let trainer = Trainer(model: start, optimizer: adam, maxGradNorm: settings.clipNorm,
                              threads: settings.threads, seed: seed)
        trainer.huberDelta = settings.huberDelta
        trainer.outputWeights = outputWeights
        let skip = start.config.seasonalSkip
        let losses = trainer.fit(x: x, y: y, seasonal: skip ? s : nil, seqLength: L, epochs: epochs, batchSize: settings.batchSize)
        let trainLoss = losses.last.map(Double.init)
        var verdict = TrainingOutcome.Verdict.accepted
        if trainer.skippedSteps > 0 || !(trainLoss?.isFinite ?? false) {
            verdict = .diverged("non-finite loss or gradient in \(trainer.skippedSteps) step(s)")
        } else if let limit = settings.explodingGradNorm, trainer.largestGradNorm > limit {
            verdict = .diverged("gradient norm \(trainer.largestGradNorm) exceeded \(limit)")
        }
        let candidate = trainer.model
        var holdout: Double?
        var currentHoldout: Double?
        if case .accepted = verdict, !hy.isEmpty {
            let hsIn = skip ? hs : nil
            holdout = Double(mseLoss(candidate.predict(hx, seasonal: hsIn, batch: holdoutWindows, seqLength: L), hy))
            if let current {
                currentHoldout = Double(mseLoss(current.predict(hx, seasonal: hsIn, batch: holdoutWindows, seqLength: L), hy))
            }
            if !(holdout?.isFinite ?? false) {
                verdict = .diverged("non-finite holdout loss")
            } else if let c = currentHoldout, c.isFinite, holdout! > c {
                verdict = .worseOnHoldout
            }
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        return TrainingOutcome(job: self, verdict: verdict, model: candidate, adam: trainer.optimizer,
                               trainLoss: trainLoss, holdoutLoss: holdout, currentHoldoutLoss: currentHoldout,
                               seconds: seconds, steps: trainer.appliedSteps + trainer.skippedSteps)
    }
}

/// What a training job produced and whether the engine should use it.
public struct TrainingOutcome: @unchecked Sendable {
    public enum Verdict: Sendable, Equatable {
        case accepted
        /// The candidate's loss on the held-back newest windows was worse than the current model's.
        case worseOnHoldout
        /// Non-finite loss or gradients, or an exploding gradient norm: rolled back.
        case diverged(String)
    }

    public let job: TrainingJob
    public let verdict: Verdict
    let model: Model
    let adam: Adam
    /// Mean training MSE (normalised units) of the last epoch.
    public let trainLoss: Double?
    /// Candidate's MSE on the held-back windows.
    public let holdoutLoss: Double?
    /// The current model's MSE on the same windows (nil for a first model).
    public let currentHoldoutLoss: Double?
    public let seconds: Double
    public let steps: Int
}

/// One entry of a group's retraining history, for status views and reports.
public struct RetrainRecord: Sendable, Equatable, Codable {
    public var version: Int
    public var atPoint: Int
    public var windows: Int
    public var epochs: Int
    public var accepted: Bool
    public var reason: String?
    public var trainLoss: Double?
    public var holdoutLoss: Double?
    public var currentHoldoutLoss: Double?
    public var seconds: Double
}
