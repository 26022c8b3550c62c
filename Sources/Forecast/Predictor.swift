import CKernels
import Dispatch

/// Inference for one parameter snapshot: holds pre-transposed recurrent weights for the
/// batch-1 path and reusable workspaces. Not safe for concurrent calls on one instance
/// (Model.predict handles that); build a new one when the parameters change.
public final class Predictor: @unchecked Sendable {
    public let config: ModelConfig
    public let layout: ParameterLayout
    public let threads: Int
    private let parameters: [Float]
    /// Windows per chunk on the batched path: keeps a chunk's activations near the caches.
    private let chunk = 16

    private var workspaces: [Workspace] = []

    // Batch-1 LSTM path; layers pipelined over two threads when threads >= 2.
    private var single: SingleWindowLSTM?

    // Batched LSTM path (batch > 1): batch-in-lanes kernels (fk_lstm_lanes_*). Chunks of up to
    // `laneChunk` windows run the whole recursion (all steps, all layers) with their h/c state
    // in L1; workers take chunks from a shared counter, so a worker slowed by other load on the
    // machine simply takes fewer chunks. No activations are kept: only h (ping-pong) and c.
    private let laneChunk = fk_lanes_chunk()
    private let laneWidth = fk_lanes_width()
    private let lanesW = FloatBuffer(), lanesB = FloatBuffer(), lanesFC = FloatBuffer()
    private var lanesWOffset: [Int] = [], lanesBOffset: [Int] = []
    private var laneWorkers: [LaneWorker] = []
    private let nextChunk = UnsafeMutablePointer<Int>.allocate(capacity: 1)

    public init(model: Model, threads: Int = 1) {
        config = model.config
        layout = model.layout
        parameters = model.parameters
        self.threads = max(1, threads)
        if config.cell == .lstm {
            single = SingleWindowLSTM(parameters: parameters, layout: layout)
            var wTotal = 0, bTotal = 0
            for l in layout.layers {
                lanesWOffset.append(wTotal); lanesBOffset.append(bTotal)
                wTotal += l.gateWidth * (l.inputSize + l.hiddenSize); bTotal += l.gateWidth
            }
            lanesW.reserve(wTotal); lanesB.reserve(bTotal)
            let HL = layout.layers.last!.hiddenSize
            lanesFC.reserve(HL)
            for j in 0..<HL { lanesFC.pointer[j] = parameters[layout.fcWeight + j] }
            parameters.withUnsafeBufferPointer { pp in
                let P = pp.baseAddress!
                for (k, l) in layout.layers.enumerated() {
                    fk_lstm_lanes_pack(l.hiddenSize, l.inputSize, P + l.weightIH, P + l.weightHH,
                                       P + l.biasIH, P + l.biasHH, lanesW.pointer + lanesWOffset[k],
                                       lanesB.pointer + lanesBOffset[k])
                }
            }
        }
        useSingleThreadedBLAS()
        nextChunk.initialize(to: 0)
    }

    deinit { nextChunk.deallocate() }

    public func predict(_ windows: [Float], seasonal: [Float]? = nil, batch: Int, seqLength: Int) -> [Float] {
        var out = [Float](repeating: 0, count: batch * layout.outputs)
        windows.withUnsafeBufferPointer { w in
            withOptionalBuffer(seasonal) { s in
                out.withUnsafeMutableBufferPointer { predict(w, seasonal: s, batch: batch, seqLength: seqLength, into: $0) }
            }
        }
        return out
    }

    /// windows: [batch][seqLength][inputSize]; seasonal: [batch][outputs] (with a seasonal
    /// skip); writes [batch][outputs] predictions into `out`.
    public func predict(_ windows: UnsafeBufferPointer<Float>, seasonal: UnsafeBufferPointer<Float>? = nil,
                        batch: Int, seqLength: Int, into out: UnsafeMutableBufferPointer<Float>) {
        let O = layout.outputs
        precondition(windows.count >= batch * seqLength * config.inputSize && out.count >= batch * O,
                     "windows/out too small for batch \(batch) x seqLength \(seqLength)")
        precondition(layout.seasonalWeight == nil || (seasonal?.count ?? 0) >= batch * O,
                     "a seasonal skip needs batch x outputs seasonal inputs")
        guard batch > 0, seqLength > 0 else { return }
        let s = layout.seasonalWeight != nil ? seasonal?.baseAddress : nil
        if batch == 1, let single {
            if config.isNextStepOnly {
                out[0] = single.predict(windows.baseAddress!, seqLength: seqLength, twoThreads: threads > 1)
            } else {
                let top = single.run(windows.baseAddress!, seqLength: seqLength, twoThreads: threads > 1)
                applyHead(top, laneStride: 1, rows: 1, seasonal: s, into: out.baseAddress!)
            }
            return
        }
        if config.cell == .lstm {
            predictLanes(windows.baseAddress!, seasonal: s, batch: batch, seqLength: seqLength, into: out.baseAddress!)
            return
        }
        let nChunks = (batch + chunk - 1) / chunk
        let nWorkers = min(threads, nChunks)
        while workspaces.count < nWorkers { workspaces.append(Workspace(config: config, layout: layout)) }
        let w = seqLength * config.inputSize
        let xs = UncheckedPointer(windows.baseAddress!), os = UncheckedMutablePointer(out.baseAddress!)
        let ss = s.map { UncheckedPointer($0) }
        let workspaces = self.workspaces, chunk = self.chunk
        parameters.withUnsafeBufferPointer { pp in
            let P = UncheckedPointer(pp.baseAddress!)
            let work: @Sendable (Int) -> Void = { worker in
                let ws = workspaces[worker]
                // Static round-robin of chunks: no shared counter, same work split every call.
                for c in stride(from: worker, to: nChunks, by: nWorkers) {
                    let r0 = c * chunk, rows = min(chunk, batch - r0)
                    ws.forward(P.p, x: xs.p + r0 * w, seasonal: ss.map { $0.p + r0 * O }, batch: rows, seqLength: seqLength, dropoutRNG: nil)
                    copyFloats(os.p + r0 * O, ws.pred.pointer, rows * O)
                }
            }
            if nWorkers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: nWorkers, execute: work) }
        }
    }

    /// The head for `rows` hidden states h[j * laneStride + r] (lanes layout; 1 for one window):
    /// out[r][o] = fc.bias[o] + Σ_j fc.weight[o][j] h[j][r] + seasonal.weight[o] s[r][o].
    private func applyHead(_ h: UnsafePointer<Float>, laneStride: Int, rows: Int, seasonal s: UnsafePointer<Float>?,
                           into out: UnsafeMutablePointer<Float>) {
        let O = layout.outputs, H = layout.layers.last!.hiddenSize
        parameters.withUnsafeBufferPointer { pp in
            let P = pp.baseAddress!
            for r in 0..<rows {
                for o in 0..<O {
                    var y = P[layout.fcBias + o]
                    let w = P + layout.fcWeight + o * H
                    for j in 0..<H { y += h[j * laneStride + r] * w[j] }
                    if let sw = layout.seasonalWeight, let s { y += P[sw + o] * s[r * O + o] }
                    out[r * O + o] = y
                }
            }
        }
    }

    // MARK: batched LSTM

    private func predictLanes(_ x: UnsafePointer<Float>, seasonal: UnsafePointer<Float>?, batch: Int, seqLength T: Int,
                              into out: UnsafeMutablePointer<Float>) {
        let nChunks = (batch + laneChunk - 1) / laneChunk
        let nWorkers = min(threads, nChunks)
        let maxH = layout.layers.map(\.hiddenSize).max()!
        while laneWorkers.count < nWorkers { laneWorkers.append(LaneWorker(layers: layout.layers.count, stateSize: maxH * laneChunk)) }
        for w in 0..<nWorkers { laneWorkers[w].x.reserve(T * config.inputSize * laneChunk) }
        nextChunk.pointee = 0
        let xs = UncheckedPointer(x), os = UncheckedMutablePointer(out)
        let ss = seasonal.map { UncheckedPointer($0) }
        if nWorkers == 1 {
            runLaneChunks(worker: 0, x: xs, seasonal: ss, batch: batch, seqLength: T, nChunks: nChunks, out: os)
        } else {
            DispatchQueue.concurrentPerform(iterations: nWorkers) { w in
                self.runLaneChunks(worker: w, x: xs, seasonal: ss, batch: batch, seqLength: T, nChunks: nChunks, out: os)
            }
        }
    }

    private func runLaneChunks(worker: Int, x: UncheckedPointer, seasonal: UncheckedPointer?, batch: Int, seqLength T: Int,
                               nChunks: Int, out: UncheckedMutablePointer) {
        let wk = laneWorkers[worker]
        let inSize = config.inputSize
        let stride = wk.stateSize
        let W = lanesW.pointer, Bs = lanesB.pointer
        let h = wk.h.pointer, c = wk.c.pointer, xT = wk.x.pointer
        let L = layout.layers.count
        let fcW = lanesFC.pointer
        let fcB = parameters[layout.fcBias]
        while true {
            let chunk = fk_fetch_add(nextChunk, 1)
            if chunk >= nChunks { break }
            let r0 = chunk * laneChunk, rows = min(laneChunk, batch - r0)
            let NB = (rows + laneWidth - 1) / laneWidth * laneWidth
            fk_lanes_from_windows(rows, T, inSize, x.p + r0 * T * inSize, NB, xT)
            for t in 0..<T {
                var input = UnsafePointer(xT + t * inSize * NB)
                for k in 0..<L {
                    let l = layout.layers[k]
                    let cur = h + (2 * k + (t & 1)) * stride
                    let prev: UnsafePointer<Float>? = t > 0 ? UnsafePointer(h + (2 * k + 1 - (t & 1)) * stride) : nil
                    fk_lstm_lanes_step(l.inputSize, l.hiddenSize, NB, W + lanesWOffset[k], Bs + lanesBOffset[k],
                                       input, NB, prev, c + k * stride, cur, NB)
                    input = UnsafePointer(cur)
                }
            }
            let top = h + (2 * (L - 1) + ((T - 1) & 1)) * stride
            if config.isNextStepOnly {
                fk_lanes_head(layout.layers[L - 1].hiddenSize, NB, rows, top, fcW, fcB, out.p + r0)
            } else {
                let O = layout.outputs
                applyHead(top, laneStride: NB, rows: rows, seasonal: seasonal.map { $0.p + r0 * O }, into: out.p + r0 * O)
            }
        }
    }
}

/// One worker's state for the batched LSTM path: h ping-pong [layer][2][H][NB], c [layer][H][NB],
/// this chunk's inputs [T][in][NB].
private final class LaneWorker {
    let stateSize: Int
    let h: FloatBuffer, c: FloatBuffer
    let x = FloatBuffer()
    init(layers: Int, stateSize: Int) {
        self.stateSize = stateSize
        h = FloatBuffer(2 * layers * stateSize)
        c = FloatBuffer(layers * stateSize)
    }
}
