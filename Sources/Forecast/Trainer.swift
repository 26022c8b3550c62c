import CKernels
import Dispatch

/// Outcome of one optimisation step.
public struct StepResult: Sendable, Equatable {
    /// MSE of the batch before the update.
    public let loss: Float
    /// Global gradient norm before clipping.
    public let gradNorm: Float
    /// false when the loss or a gradient was not finite: the step was skipped (not applied).
    public let applied: Bool
}

/// Workspaces are touched by exactly one thread each during a step; the box only carries
/// them across the concurrentPerform boundary.
private final class Shard: @unchecked Sendable {
    let workspace: Workspace
    let grads: FloatBuffer
    var sse = 0.0
    init(config: ModelConfig, layout: ParameterLayout) {
        workspace = Workspace(config: config, layout: layout)
        grads = FloatBuffer(layout.count)
    }
}

/// Model parameters + Adam + per-thread workspaces. A step splits the batch into `threads`
/// contiguous shards, runs forward/backward for each on its own thread, sums the shard
/// gradients in a fixed order, clips, and applies Adam. Results depend on the seed and on
/// `threads` (the shard split fixes the summation order), not on thread timing.
public final class Trainer: @unchecked Sendable {
    public let config: ModelConfig
    public let layout: ParameterLayout
    public var optimizer: Adam
    /// Clip the global gradient norm to this (nil = no clipping).
    public var maxGradNorm: Float?
    /// Huber loss with this delta instead of MSE (nil = MSE): errors beyond delta pull linearly,
    /// so a few spikes in a noisy series do not drag the fit towards them. Reported losses stay MSE.
    public var huberDelta: Float?
    /// Per-output loss weights of a multi-step head (nil = all 1). Far steps' targets spread
    /// wider, so with equal weights their errors dominate the loss and the near steps (the
    /// next-step forecast among them) get little of the model; weighting each step by the
    /// inverse of its targets' mean square gives every step an equal share.
    public var outputWeights: [Float]?
    public let threads: Int
    /// Steps whose loss or gradients were non-finite: counted, never applied.
    public private(set) var skippedSteps = 0
    public private(set) var appliedSteps = 0
    /// The largest pre-clip gradient norm seen so far (to notice exploding gradients that
    /// clipping hides).
    public private(set) var largestGradNorm: Float = 0

    private var parameters: [Float]
    private var shards: [Shard] = []
    private let seed: UInt64
    private var stepCounter: UInt64 = 0
    private var shuffleRNG: SeededGenerator

    public init(model: Model, optimizer: Adam = Adam(), maxGradNorm: Float? = 1.0, threads: Int = 1, seed: UInt64 = 0) {
        config = model.config
        layout = model.layout
        parameters = model.parameters
        self.optimizer = optimizer
        self.maxGradNorm = maxGradNorm
        self.threads = max(1, threads)
        self.seed = seed
        shuffleRNG = SeededGenerator(seed: seed, stream: 0x5348_5546)
        shards = (0..<self.threads).map { _ in Shard(config: config, layout: layout) }
        useSingleThreadedBLAS()
    }

    /// The current model (a copy of the trainer's parameters).
    public var model: Model {
        try! Model(config: config, parameters: parameters)
    }

    /// Gradients of the last step (after clipping if it was applied).
    public var lastGradients: [Float] {
        Array(UnsafeBufferPointer(start: shards[0].grads.pointer, count: layout.count))
    }

    /// Shard 0's workspace (activations of the last forward), for white-box tests.
    var workspaceForTesting: Workspace { shards[0].workspace }

    // MARK: steps

    /// One training step on `batch` windows x: [batch][seqLength][inputSize], y: [batch][O]
    /// (and, with a seasonal skip, its inputs `seasonal`: [batch][O]).
    @discardableResult
    public func step(x: [Float], y: [Float], seasonal: [Float]? = nil, batch: Int, seqLength: Int) -> StepResult {
        x.withUnsafeBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in
                withOptionalBuffer(seasonal) { sp in step(x: xp, y: yp, seasonal: sp, batch: batch, seqLength: seqLength) }
            }
        }
    }

    @discardableResult
    public func step(x: UnsafeBufferPointer<Float>, y: UnsafeBufferPointer<Float>, seasonal: UnsafeBufferPointer<Float>? = nil,
                     batch: Int, seqLength: Int) -> StepResult {
        let loss = computeGradients(x: x, y: y, seasonal: seasonal, batch: batch, seqLength: seqLength, training: true, inputGradient: nil)
        let n = layout.count
        let g = shards[0].grads.pointer
        let norm = Float(fk_sum_squares(g, n).squareRoot())
        if norm > largestGradNorm { largestGradNorm = norm }
        guard loss.isFinite, norm.isFinite else {
            skippedSteps += 1
            return StepResult(loss: loss, gradNorm: norm, applied: false)
        }
        if let maxNorm = maxGradNorm { clipGradNorm(g, count: n, maxNorm: maxNorm) }
        parameters.withUnsafeMutableBufferPointer { p in
            optimizer.update(parameters: p.baseAddress!, gradients: g, count: n)
        }
        appliedSteps += 1
        return StepResult(loss: loss, gradNorm: norm, applied: true)
    }

    /// Loss and unclipped gradients without updating anything (training mode: dropout on).
    /// Also returns dLoss/dx, batch-first like x.
    public func gradients(x: [Float], y: [Float], seasonal: [Float]? = nil, batch: Int, seqLength: Int, training: Bool = true)
        -> (loss: Float, gradients: [Float], inputGradient: [Float])
    {
        var gx = [Float](repeating: 0, count: x.count)
        let loss = x.withUnsafeBufferPointer { xp in
            y.withUnsafeBufferPointer { yp in
                gx.withUnsafeMutableBufferPointer { gp in
                    withOptionalBuffer(seasonal) { sp in
                        computeGradients(x: xp, y: yp, seasonal: sp, batch: batch, seqLength: seqLength, training: training,
                                         inputGradient: gp.baseAddress!)
                    }
                }
            }
        }
        return (loss, lastGradients, gx)
    }

    /// Forward + backward over shards; leaves the summed gradients in shards[0].grads.
    private func computeGradients(x: UnsafeBufferPointer<Float>, y: UnsafeBufferPointer<Float>,
                                  seasonal: UnsafeBufferPointer<Float>?, batch: Int,
                                  seqLength: Int, training: Bool,
                                  inputGradient: UnsafeMutablePointer<Float>?) -> Float {
        let inSize = config.inputSize
        let O = layout.outputs
        precondition(batch >= 1 && seqLength >= 1, "empty batch")
        precondition(x.count == batch * seqLength * inSize && y.count == batch * O,
                     "x/y do not match batch x seqLength x inputSize / batch x outputs")
        precondition(layout.seasonalWeight == nil || (seasonal?.count ?? 0) == batch * O,
                     "a seasonal skip needs batch x outputs seasonal inputs")
        stepCounter &+= 1
        let nShards = min(threads, batch)
        let n = layout.count
        let step = stepCounter
        let seed = self.seed
        let huber = huberDelta
        let weights = outputWeights
        precondition(weights == nil || weights!.count == O, "one weight per output")
        let shards = self.shards
        let xBase = UncheckedPointer(x.baseAddress!), yBase = UncheckedPointer(y.baseAddress!)
        let sBase = layout.seasonalWeight != nil ? seasonal.map { UncheckedPointer($0.baseAddress!) } : nil
        let gxBase = inputGradient.map { UncheckedMutablePointer($0) }
        parameters.withUnsafeBufferPointer { pp in
            let P = UncheckedPointer(pp.baseAddress!)
            let work: @Sendable (Int) -> Void = { s in
                let r0 = batch * s / nShards, r1 = batch * (s + 1) / nShards
                let sh = shards[s], ws = sh.workspace
                let rows = r1 - r0
                let rng: SeededGenerator? = training ? SeededGenerator(seed: seed, stream: step &* 1024 &+ UInt64(s)) : nil
                ws.forward(P.p, x: xBase.p + r0 * seqLength * inSize, seasonal: sBase.map { $0.p + r0 * O },
                           batch: rows, seqLength: seqLength, dropoutRNG: rng)
                var sse = 0.0
                let scale = 2 / Float(batch * O)  // d mean((p - y)^2) / dp over every output of the batch
                for i in 0..<(rows * O) {
                    let d = ws.pred.pointer[i] - yBase.p[r0 * O + i]
                    let w = weights?[i % O] ?? 1
                    sse += Double(w) * Double(d) * Double(d)
                    ws.dPred.pointer[i] = w * scale * (huber.map { max(-$0, min($0, d)) } ?? d)
                }
                sh.sse = sse
                zeroFloats(sh.grads.pointer, n)
                ws.backward(P.p, grads: sh.grads.pointer, inputGradient: gxBase.map { $0.p + r0 * seqLength * inSize })
            }
            if nShards == 1 {
                work(0)
            } else if nShards == 2, PipelineHelper.shared.begin(task: { _ in work(1) }) != nil {
                // The process's spinning helper thread picks the shard up within microseconds;
                // a dispatch worker parked between steps takes tens of them to wake.
                work(0)
                PipelineHelper.shared.waitForHelper()
                PipelineHelper.shared.end()
            } else {
                DispatchQueue.concurrentPerform(iterations: nShards, execute: work)
            }
        }
        var sse = shards[0].sse
        for s in 1..<max(1, nShards) {
            fk_add(shards[0].grads.pointer, shards[s].grads.pointer, n)
            sse += shards[s].sse
        }
        return Float(sse / Double(batch * O))
    }

    // MARK: epochs

    /// Shuffled mini-batch epochs over windows x: [count][seqLength][inputSize], y: [count][O]
    /// (seasonal: [count][O] with a seasonal skip). The last partial batch is kept. Returns the
    /// mean training loss of each epoch (over applied steps, weighted by batch size).
    @discardableResult
    public func fit(x: [Float], y: [Float], seasonal: [Float]? = nil, seqLength: Int, epochs: Int, batchSize: Int) -> [Float] {
        let O = layout.outputs
        let count = y.count / O
        precondition(y.count == count * O, "y does not hold whole rows of \(O) outputs")
        let skip = layout.seasonalWeight != nil
        precondition(!skip || seasonal?.count == y.count, "a seasonal skip needs one seasonal input per target")
        let w = seqLength * config.inputSize
        precondition(x.count == count * w, "x does not hold \(count) windows of \(w)")
        precondition(batchSize >= 1, "batchSize must be >= 1")
        guard count > 0, epochs > 0 else { return [] }
        var order = Array(0..<count)
        var bx = [Float](repeating: 0, count: min(batchSize, count) * w)
        var by = [Float](repeating: 0, count: min(batchSize, count) * O)
        var bs = [Float](repeating: 0, count: skip ? min(batchSize, count) * O : 0)
        var losses: [Float] = []
        for _ in 0..<epochs {
            // Fisher-Yates with our own generator (Array.shuffle's algorithm is not specified).
            for i in stride(from: count - 1, to: 0, by: -1) {
                let j = Int(shuffleRNG.next() % UInt64(i + 1))
                order.swapAt(i, j)
            }
            var total = 0.0, seen = 0
            var start = 0
            while start < count {
                let b = min(batchSize, count - start)
                x.withUnsafeBufferPointer { xs in
                    bx.withUnsafeMutableBufferPointer { bxp in
                        for r in 0..<b {
                            let src = xs.baseAddress! + order[start + r] * w
                            copyFloats(bxp.baseAddress! + r * w, src, w)
                        }
                    }
                }
                for r in 0..<b {
                    let src = order[start + r] * O
                    for o in 0..<O { by[r * O + o] = y[src + o] }
                    if skip { for o in 0..<O { bs[r * O + o] = seasonal![src + o] } }
                }
                let res = bx.withUnsafeBufferPointer { xp in
                    by.withUnsafeBufferPointer { yp in
                        bs.withUnsafeBufferPointer { sp in
                            step(x: UnsafeBufferPointer(rebasing: xp[0..<(b * w)]),
                                 y: UnsafeBufferPointer(rebasing: yp[0..<(b * O)]),
                                 seasonal: skip ? UnsafeBufferPointer(rebasing: sp[0..<(b * O)]) : nil,
                                 batch: b, seqLength: seqLength)
                        }
                    }
                }
                if res.applied {
                    total += Double(res.loss) * Double(b)
                    seen += b
                }
                start += b
            }
            losses.append(seen > 0 ? Float(total / Double(seen)) : .nan)
        }
        return losses
    }

    /// Test-set MSE of the current parameters (inference mode).
    public func evaluate(x: [Float], y: [Float], seasonal: [Float]? = nil, seqLength: Int) -> Float {
        let pred = model.predict(x, seasonal: seasonal, batch: y.count / layout.outputs, seqLength: seqLength)
        return mseLoss(pred, y)
    }
}

/// Calls `body` with a buffer over `array`, or nil when there is no array.
func withOptionalBuffer<R>(_ array: [Float]?, _ body: (UnsafeBufferPointer<Float>?) -> R) -> R {
    guard let array else { return body(nil) }
    return array.withUnsafeBufferPointer { body($0) }
}

/// Raw pointers are not Sendable; these carry them into concurrentPerform, where each shard
/// reads shared inputs and writes only its own rows.
struct UncheckedPointer: @unchecked Sendable {
    let p: UnsafePointer<Float>
    init(_ p: UnsafePointer<Float>) { self.p = p }
}

struct UncheckedMutablePointer: @unchecked Sendable {
    let p: UnsafeMutablePointer<Float>
    init(_ p: UnsafeMutablePointer<Float>) { self.p = p }
}
