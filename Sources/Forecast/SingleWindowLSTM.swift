import CKernels
import Dispatch
import Glibc

/// The single-window LSTM forward, on one thread or two.
///
/// One window cannot be split by rows, and within a layer every step needs the whole of the
/// previous step's h. What two threads can share is the layers: layer k's steps t0..<t1 need
/// only layer k-1's h for those steps, so the layers run as a pipeline over blocks of steps
/// (a wavefront). A block of a layer is three tasks: the two column halves of the input
/// projection of its steps (W_ih read once for the block) and the recurrent steps (a W_hhᵀ
/// sweep per step: the layer's 64 KB recurrent matrix streamed from L2, which is what a step
/// costs at hidden 64).
///
/// Workers claim tasks whose inputs are ready: the caller (worker 0) prefers the lowest layer,
/// the helper the highest, so in a two-layer model one runs layer 0 and the other follows one
/// block behind on layer 1. Handing a block over is a counter the follower reads while it still
/// has work, so the cost of cache-line transfers between cores is paid once, not per step. A
/// helper that loses its CPU costs at most the block it holds; the caller takes the rest. Block
/// boundaries are fixed by the window length, so the arithmetic, and the prediction, is the same
/// to the bit on one thread or two.
///
/// Worker 1 is the process's one `PipelineHelper` thread. With one thread, or when the
/// helper is still busy with another call (a daemon with a model per series must not grow a
/// thread per model), the caller runs every task itself.
final class SingleWindowLSTM: @unchecked Sendable {
    private struct Layer {
        let inputSize: Int, hiddenSize: Int
        let whhT: UnsafeMutablePointer<Float>   // W_hhᵀ packed with fk_pack_panels
        let wihT: UnsafeMutablePointer<Float>   // W_ihᵀ packed with fk_pack_panels
        let bias: UnsafeMutablePointer<Float>   // [4H], b_ih + b_hh
    }

    private let layers: [Layer]
    private let fcBias: Float
    private let fcWeight: [Float]

    // Per-call buffers, grown only while no helper works on this instance.
    private var seqCapacity = 0
    private var h: [UnsafeMutablePointer<Float>] = []   // per layer [T][H]
    private var z: [UnsafeMutablePointer<Float>] = []   // per layer [T][4H]
    private let c: [UnsafeMutablePointer<Float>]        // per layer: c ping-pong [2][H]
    private let scratch: [UnsafeMutablePointer<Float>]  // per worker: tanh c

    // The call in progress (written before the helper's generation is published).
    private var callInput: UnsafePointer<Float>?

    init(parameters: [Float], layout: ParameterLayout) {
        layers = layout.layers.map { l in
            let (H, In, G) = (l.hiddenSize, l.inputSize, l.gateWidth)
            let whhT = alignedFloats(G * H), wihT = alignedFloats(G * In), bias = alignedFloats(G)
            parameters.withUnsafeBufferPointer { p in
                fk_pack_panels(G, H, p.baseAddress! + l.weightHH, whhT)
                fk_pack_panels(G, In, p.baseAddress! + l.weightIH, wihT)
            }
            for r in 0..<G { bias[r] = parameters[l.biasIH + r] + parameters[l.biasHH + r] }
            return Layer(inputSize: In, hiddenSize: H, whhT: whhT, wihT: wihT, bias: bias)
        }
        fcBias = parameters[layout.fcBias]
        fcWeight = Array(parameters[layout.fcWeight..<(layout.fcWeight + layout.layers.last!.hiddenSize)])
        c = layers.map { alignedFloats(2 * $0.hiddenSize) }
        let maxH = layers.map(\.hiddenSize).max()!
        scratch = [alignedFloats(maxH), alignedFloats(maxH)]
    }

    deinit {
        for l in layers { free(l.whhT); free(l.wihT); free(l.bias) }
        for p in h + z + c + scratch { free(p) }
    }

    /// Steps per block: about sixteen blocks per layer, so the pipeline fills quickly, and four
    /// steps or more, so handing a block over costs little next to running it.
    static func blockSteps(_ T: Int) -> Int { max(1, (T + 15) / 16) }

    /// The tasks of a call form chains, each done block by block in order: per layer, the two
    /// column halves of its input projection and its recurrent steps.
    private enum Kind: Int, CaseIterable { case projectLow, projectHigh, recur }
    private static func chain(_ layer: Int, _ kind: Kind) -> Int { 3 * layer + kind.rawValue }

    /// Chains in the order a worker looks for work. Two layers: the caller runs layer 0's steps
    /// and then the low half of layer 1's projection of that block; the helper the high half and
    /// then layer 1's steps: 4.75 block-times each instead of 4 and 5.5.
    private func preference(worker: Int) -> [Int] {
        let L = layers.count
        var order: [Int] = []
        if worker == 0 {
            order += [Self.chain(0, .projectLow), Self.chain(0, .projectHigh)]
            for k in 0..<L {
                if k + 1 < L { order.append(Self.chain(k + 1, .projectLow)) }
                order.append(Self.chain(k, .recur))
                if k + 1 < L { order.append(Self.chain(k + 1, .projectHigh)) }
            }
        } else {
            for k in (0..<L).reversed() {
                order += [Self.chain(k, .projectHigh), Self.chain(k, .recur), Self.chain(k, .projectLow)]
            }
        }
        return order
    }

    /// Prediction for one window x [T][inputSize] through a Linear(H_last, 1) head.
    func predict(_ x: UnsafePointer<Float>, seqLength T: Int, twoThreads: Bool) -> Float {
        let top = run(x, seqLength: T, twoThreads: twoThreads)
        let H = layers.last!.hiddenSize
        var s = fcBias
        for j in 0..<H { s += top[j] * fcWeight[j] }
        return s
    }

    /// Runs the stack over one window; returns the top layer's last hidden state (valid until
    /// the next call), for heads other than the next-step one.
    func run(_ x: UnsafePointer<Float>, seqLength T: Int, twoThreads: Bool) -> UnsafePointer<Float> {
        let helper = PipelineHelper.shared
        let blocks = (T + Self.blockSteps(T) - 1) / Self.blockSteps(T)
        if twoThreads, layers.count > 1,
           let call = helper.begin(self, chains: 3 * layers.count, blocks: blocks, steps: T, prepare: { self.prepare(x, T) }) {
            runTasks(worker: 0, steps: T, generation: call.generation, board: call.board)
            helper.end()
        } else {
            prepare(x, T)
            for k in layers.indices {
                for j in 0..<blocks {
                    for kind in Kind.allCases { run(layer: k, kind, block: j, worker: 0, steps: T) }
                }
            }
        }
        let H = layers.last!.hiddenSize
        return UnsafePointer(h[layers.count - 1] + (T - 1) * H)
    }

    /// Claims and runs ready tasks until the top layer's last block is done. A stale worker
    /// (its call already finished) finds nothing to do and returns.
    fileprivate func runTasks(worker: Int, steps T: Int, generation g: Int, board: PipelineHelper.Board) {
        let L = layers.count, blocks = board.blocks
        let order = preference(worker: worker)
        let base = board.stamp(generation: g, blocksDone: 0)
        /// Blocks of `chain` done in this call.
        func done(_ chain: Int) -> Int { max(0, fk_load_acquire(board.progress(chain: chain)) - base) }
        let top = board.progress(chain: Self.chain(L - 1, .recur))
        var idle = 0
        while fk_load_acquire(top) < base + blocks {
            var ran = false
            for chain in order {
                let k = chain / 3, kind = Kind(rawValue: chain % 3)!
                let j = done(chain)
                guard j < blocks else { continue }
                switch kind {
                case .projectLow, .projectHigh:
                    if k > 0 && done(Self.chain(k - 1, .recur)) <= j { continue }
                case .recur:
                    if done(Self.chain(k, .projectLow)) <= j || done(Self.chain(k, .projectHigh)) <= j { continue }
                }
                guard fk_claim(board.claim(chain: chain, block: j), g) != 0 else { continue }
                run(layer: k, kind, block: j, worker: worker, steps: T)
                fk_store_release(board.progress(chain: chain), base + j + 1)
                ran = true
                break
            }
            if ran {
                idle = 0
            } else {
                // Waiting on a block the other worker holds; if that takes far longer than a
                // block should, it has lost its CPU: give ours up rather than spin its slice away.
                idle += 1
                if idle % 4096 == 0 { sched_yield() } else { fk_pause() }
            }
        }
    }

    /// One block of one chain: steps t0..<t1 of layer k. The projection halves split the gate
    /// columns at a 64-column panel boundary of the packed W_ihᵀ.
    private func run(layer k: Int, _ kind: Kind, block j: Int, worker: Int, steps T: Int) {
        let l = layers[k], H = l.hiddenSize, G = 4 * H, In = l.inputSize
        let bs = Self.blockSteps(T), t0 = j * bs, t1 = min(T, t0 + bs)
        let zk = z[k], hk = h[k]
        switch kind {
        case .projectLow, .projectHigh:
            let split = min(G, ((G / 64 + 1) / 2) * 64)
            let (n0, n) = kind == .projectLow ? (0, split) : (split, G - split)
            guard n > 0 else { return }
            let input = k == 0 ? callInput! + t0 * In : UnsafePointer(h[k - 1] + t0 * In)
            for t in t0..<t1 { (zk + t * G + n0).update(from: l.bias + n0, count: n) }
            fk_gemm_rows(t1 - t0, In, n, l.wihT + n0 * In, input, In, zk + t0 * G + n0, G)
        case .recur:
            for t in t0..<t1 {
                let zt = zk + t * G
                if t > 0 { fk_gemv_t(H, G, l.whhT, hk + (t - 1) * H, zt) }
                let cPrev = c[k] + ((t + 1) & 1) * H, cCur = c[k] + (t & 1) * H
                fk_lstm_cell_forward(1, H, zt, t > 0 ? cPrev : nil, cCur, scratch[worker], hk + t * H)
            }
        }
    }

    /// Sets up a call (no worker is using this instance's buffers).
    private func prepare(_ x: UnsafePointer<Float>, _ T: Int) {
        callInput = x
        guard T > seqCapacity else { return }
        for p in h + z { free(p) }
        h = layers.map { alignedFloats(T * $0.hiddenSize) }
        z = layers.map { alignedFloats(T * 4 * $0.hiddenSize) }
        seqCapacity = T
    }
}

/// Worker 1 of two-thread SingleWindowLSTM calls and of two-shard training steps: one thread
/// for the process, started on first use, that spins 200 µs after a call (back-to-back calls
/// pay no wake-up) and then sleeps. One call holds it at a time; a caller that finds it busy
/// runs its work another way (alone, or on dispatch workers), so results never depend on it.
final class PipelineHelper: @unchecked Sendable {
    static let shared = PipelineHelper()

    // Control words, each on its own cache line: call generation, helper-asleep flag, busy flag
    // (a call in progress), idle flag (the helper has finished its last call).
    private let control: UnsafeMutablePointer<Int>
    private var generation: UnsafeMutablePointer<Int> { control }
    private var sleeping: UnsafeMutablePointer<Int> { control + 8 }
    private var busy: UnsafeMutablePointer<Int> { control + 16 }
    private var idle: UnsafeMutablePointer<Int> { control + 24 }
    /// Where two workers coordinate a call: per chain of tasks, a count of finished blocks on
    /// its own cache line, and one claim word per block (the generation that claimed it).
    struct Board {
        let base: UnsafeMutablePointer<Int>
        let chains: Int, blocks: Int
        func progress(chain: Int) -> UnsafeMutablePointer<Int> { base + 8 * chain }
        func claim(chain: Int, block: Int) -> UnsafeMutablePointer<Int> { base + 8 * chains + chain * blocks + block }
        /// Progress value "this many blocks done in this call"; grows across calls.
        func stamp(generation g: Int, blocksDone: Int) -> Int { g << 24 | blocksDone }
        static func allocate(chains: Int, blocks: Int) -> Board {
            Board(base: aligned(Int.self, 8 * chains + chains * blocks), chains: chains, blocks: blocks)
        }
    }
    private var board = Board.allocate(chains: 6, blocks: 10)
    private let wake = DispatchSemaphore(value: 0)
    private var thread: pthread_t?
    // The helper's part of the call, given the call's generation (written before `generation`
    // is published, cleared by the helper).
    private var task: ((Int) -> Void)?

    private init() {
        control = aligned(Int.self, 32)
        control[24] = 1
    }

    /// Hands `task` to the helper thread and returns the call's generation, or nil when another
    /// call holds the helper or the helper is still leaving its last one. `prepare` runs before
    /// the helper can see the call. The caller does its own part, then calls `end()`.
    func begin(prepare: () -> Void = {}, task: @escaping (Int) -> Void) -> Int? {
        guard fk_load_acquire(idle) == 1, fk_exchange(busy, 1) == 0 else { return nil }
        guard fk_load_acquire(idle) == 1 else { fk_store_release(busy, 0); return nil }
        if thread == nil {
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { _ in
                PipelineHelper.shared.loop()
                return nil
            }, nil)
            precondition(rc == 0, "pthread_create failed: \(rc)")
            thread = tid
        }
        prepare()
        self.task = task
        fk_store_release(idle, 0)
        let g = generation.pointee + 1
        fk_store_release(generation, g)
        if fk_exchange(sleeping, 0) == 1 { wake.signal() }
        return g
    }

    /// A pipelined single-window call: both workers claim blocks from the board.
    func begin(_ forward: SingleWindowLSTM, chains: Int, blocks: Int, steps: Int, prepare: () -> Void)
        -> (generation: Int, board: Board)?
    {
        let g = begin(prepare: {
            if chains != board.chains || blocks != board.blocks {
                // Generations only grow, so a fresh zeroed board reads as "nothing claimed".
                free(board.base)
                board = Board.allocate(chains: chains, blocks: blocks)
            }
            prepare()
        }, task: { g in
            // The board only changes while a call holds the helper and the helper is idle.
            forward.runTasks(worker: 1, steps: steps, generation: g, board: PipelineHelper.shared.board)
        })
        return g.map { ($0, board) }
    }

    /// Waits (spinning) until the helper has finished its part of the current call.
    func waitForHelper() {
        while fk_load_acquire(idle) == 0 { fk_pause() }
    }

    func end() { fk_store_release(busy, 0) }

    private func loop() {
        var seen = 0
        while true {
            var next = fk_spin_until_changed(generation, seen, 200_000)
            while next == seen {
                _ = fk_exchange(sleeping, 1)
                next = fk_load_acquire(generation)
                if next != seen {
                    // Either we clear the flag, or the caller did and its signal must be consumed.
                    if fk_exchange(sleeping, 0) == 0 { wake.wait() }
                    break
                }
                wake.wait()
                next = fk_load_acquire(generation)
            }
            seen = next
            let run = task!
            task = nil
            run(seen)
            fk_store_release(idle, 1)
        }
    }
}

/// 64-byte aligned floats (rows of h start on cache lines).
private func alignedFloats(_ count: Int) -> UnsafeMutablePointer<Float> {
    aligned(Float.self, count)
}

private func aligned<T>(_ type: T.Type, _ count: Int) -> UnsafeMutablePointer<T> {
    var raw: UnsafeMutableRawPointer?
    let bytes = max(count * MemoryLayout<T>.stride, 64)
    precondition(posix_memalign(&raw, 64, bytes) == 0, "out of memory")
    memset(raw!, 0, bytes)
    return raw!.bindMemory(to: T.self, capacity: max(count, 1))
}

