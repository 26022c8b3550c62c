import CKernels
import Dispatch
import Glibc

/// The single-window LSTM forward, on one thread or two.
///
/// One window cannot be split by rows, and its cost is not arithmetic: every step streams the
/// layer's recurrent matrix (64 KB at hidden 64, twice the L1 cache) from L2. Split by hidden
/// units into two halves, each half's step streams only its own gate rows, so two threads can
/// run a step in half the time, trading their halves of h after every step.
///
/// The work is a sequence of tasks per half: each layer's input projection, then its steps.
/// Two workers claim tasks (own half first, then the other half if still unclaimed) and wait
/// until both halves of a task are done before the next. A partner that loses its CPU only
/// costs the task it holds; the other worker takes the rest. Whoever runs a task runs the same
/// arithmetic, so the prediction is the same to the bit on one thread or two.
///
/// The caller's thread is worker 0; worker 1 is the process's one `SplitForwardHelper` thread.
/// With one thread, or when the helper is still busy with another call (a daemon with a model
/// per series must not grow a thread per model), the caller runs every task itself.
final class SingleWindowLSTM: @unchecked Sendable {
    /// One half of one layer: gate rows (i, f, g, o) of units u0 ..< u0 + n.
    private struct Share {
        let u0: Int, n: Int
        let whhT: UnsafeMutablePointer<Float>   // [4n][H] packed with fk_pack_panels
        let wih: UnsafeMutablePointer<Float>    // [4n][In]
        let bias: UnsafeMutablePointer<Float>   // [4n], b_ih + b_hh
    }

    private let layout: ParameterLayout
    private let inputSize: Int
    private let fcBias: Float
    private let fcWeight: [Float]
    private let maxH: Int
    private var shares: [[Share]] = [[], []]  // [half][layer]

    // Per-call buffers, grown only while no helper works on this instance.
    private var seqCapacity = 0
    private var h: [UnsafeMutablePointer<Float>] = []      // per layer [T][H], halves side by side
    private var z: [UnsafeMutablePointer<Float>?] = [nil, nil]  // per half [T][4n]
    private let c: [UnsafeMutablePointer<Float>]           // per half: c ping-pong [2][maxH]
    private let scratch: [UnsafeMutablePointer<Float>]     // per worker: tanh c

    // The call in progress (written before the helper's generation is published).
    private var callInput: UnsafePointer<Float>?

    init(parameters: [Float], layout: ParameterLayout, inputSize: Int) {
        self.layout = layout
        self.inputSize = inputSize
        fcBias = parameters[layout.fcBias]
        fcWeight = Array(parameters[layout.fcWeight..<(layout.fcWeight + layout.layers.last!.hiddenSize)])
        for l in layout.layers {
            let (H, In) = (l.hiddenSize, l.inputSize)
            let half = H / 2
            for (w, (u0, n)) in [(0, half), (half, H - half)].enumerated() {
                let rows = 4 * n
                var sub = [Float](repeating: 0, count: rows * H)
                let wih = alignedFloats(rows * In), bias = alignedFloats(rows)
                let whhT = alignedFloats(rows * H)
                for g in 0..<4 {
                    for j in 0..<n {
                        let src = g * H + u0 + j, dst = g * n + j
                        for k in 0..<H { sub[dst * H + k] = parameters[l.weightHH + src * H + k] }
                        for k in 0..<In { wih[dst * In + k] = parameters[l.weightIH + src * In + k] }
                        bias[dst] = parameters[l.biasIH + src] + parameters[l.biasHH + src]
                    }
                }
                sub.withUnsafeBufferPointer { fk_pack_panels(rows, H, $0.baseAddress!, whhT) }
                shares[w].append(Share(u0: u0, n: n, whhT: whhT, wih: wih, bias: bias))
            }
        }
        maxH = layout.layers.map(\.hiddenSize).max()!
        c = [alignedFloats(2 * maxH), alignedFloats(2 * maxH)]
        scratch = [alignedFloats(maxH), alignedFloats(maxH)]
    }

    deinit {
        for w in shares { for s in w { free(s.whhT); free(s.wih); free(s.bias) } }
        for p in h + z.compactMap({ $0 }) + c + scratch { free(p) }
    }

    /// Prediction for one window x [T][inputSize].
    func predict(_ x: UnsafePointer<Float>, seqLength T: Int, twoThreads: Bool) -> Float {
        let helper = SplitForwardHelper.shared
        let tasks = layout.layers.count * (T + 1)
        if twoThreads, let call = helper.begin(self, tasks: tasks, steps: T, prepare: { self.prepare(x, T) }) {
            runTasks(worker: 0, steps: T, generation: call.generation, board: call.board)
            helper.end()
        } else {
            prepare(x, T)
            runTasks(worker: 0, steps: T, generation: 0, board: nil)
        }
        let H = layout.layers.last!.hiddenSize
        let top = h[layout.layers.count - 1] + (T - 1) * H
        var s = fcBias
        for j in 0..<H { s += top[j] * fcWeight[j] }
        return s
    }

    /// Every task of the call in order. Without a board, run both halves of each. With one
    /// (two workers): claim and run the own half, then wait for the partner's half; if it is
    /// not done within a few steps' time and still unclaimed, run it too, and keep taking the
    /// partner's halves without waiting until the partner claims one again. A stale worker
    /// (its call already finished) finds everything claimed and only reads the board.
    fileprivate func runTasks(worker: Int, steps T: Int, generation g: Int, board: SplitForwardHelper.Board?) {
        let other = 1 - worker
        var partnerAway = false
        var task = 0
        for k in 0..<layout.layers.count {
            for t in -1..<T {
                defer { task += 1 }
                guard let board else {
                    run(layer: k, step: t, half: 0, worker: worker, steps: T)
                    run(layer: k, step: t, half: 1, worker: worker, steps: T)
                    continue
                }
                // Halves finish their tasks in order (a task starts when both halves of the
                // previous one are done), so one counter per half says how far it has got.
                let done = board.stamp(generation: g, tasksDone: task + 1)
                let gotMine = fk_claim(board.claim(half: worker, task: task), g) != 0
                if gotMine {
                    run(layer: k, step: t, half: worker, worker: worker, steps: T)
                    fk_store_release(board.progress(half: worker), done)
                } else {
                    partnerAway = false
                }
                if partnerAway || fk_wait_at_least_for(board.progress(half: other), done, 5_000) == 0 {
                    if fk_claim(board.claim(half: other, task: task), g) != 0 {
                        partnerAway = true
                        run(layer: k, step: t, half: other, worker: worker, steps: T)
                        fk_store_release(board.progress(half: other), done)
                    } else {
                        partnerAway = false
                    }
                }
                fk_wait_at_least(board.progress(half: other), done)
                if !gotMine { fk_wait_at_least(board.progress(half: worker), done) }
            }
        }
    }

    /// One half of one task: step -1 is the layer's input projection for all steps (one GEMM),
    /// step t the recurrent product and cell update of step t.
    private func run(layer k: Int, step t: Int, half: Int, worker: Int, steps T: Int) {
        let s = shares[half][k], H = layout.layers[k].hiddenSize, G = 4 * s.n
        let zh = z[half]!
        if t < 0 {
            let (input, inSize) = k == 0 ? (callInput!, inputSize) : (UnsafePointer(h[k - 1]), layout.layers[k - 1].hiddenSize)
            fk_fill_rows(zh, T, G, s.bias)
            gemm(transB: true, m: T, n: G, k: inSize, a: input, lda: inSize, b: s.wih, ldb: inSize,
                 beta: 1, c: zh, ldc: G)
            return
        }
        let zt = zh + t * G
        if t > 0 { fk_gemv_t(H, G, s.whhT, h[k] + (t - 1) * H, zt) }
        let cPrev = c[half] + ((t + 1) & 1) * maxH, cCur = c[half] + (t & 1) * maxH
        fk_lstm_cell_forward(1, s.n, zt, t > 0 ? cPrev : nil, cCur, scratch[worker], h[k] + t * H + s.u0)
    }

    /// Sets up a call (no worker is using this instance's buffers).
    private func prepare(_ x: UnsafePointer<Float>, _ T: Int) {
        callInput = x
        guard T > seqCapacity else { return }
        for p in h + z.compactMap({ $0 }) { free(p) }
        h = layout.layers.map { alignedFloats(T * $0.hiddenSize) }
        z = (0..<2).map { w in alignedFloats(T * shares[w].map { 4 * $0.n }.max()!) }
        seqCapacity = T
    }
}

/// Worker 1 of two-thread SingleWindowLSTM calls: one thread for the process, started on first
/// use, that spins 200 µs after a call (back-to-back calls pay no wake-up) and then sleeps.
final class SplitForwardHelper: @unchecked Sendable {
    static let shared = SplitForwardHelper()

    // Control words, each on its own cache line: call generation, helper-asleep flag, busy flag
    // (a call in progress), idle flag (the helper has finished its last call).
    private let control: UnsafeMutablePointer<Int>
    private var generation: UnsafeMutablePointer<Int> { control }
    private var sleeping: UnsafeMutablePointer<Int> { control + 8 }
    private var busy: UnsafeMutablePointer<Int> { control + 16 }
    private var idle: UnsafeMutablePointer<Int> { control + 24 }
    /// Where two workers coordinate a call: per half, a progress counter on its own cache line
    /// and the claims of its tasks, contiguous (its owner claims them in order: the lines stay
    /// in the owner's cache unless the other worker has to take a task).
    struct Board {
        let base: UnsafeMutablePointer<Int>
        let tasks: Int
        func progress(half: Int) -> UnsafeMutablePointer<Int> { base + 8 * half }
        func claim(half: Int, task: Int) -> UnsafeMutablePointer<Int> { base + 16 + half * tasks + task }
        /// Progress value "this many tasks done in this call"; grows across calls.
        func stamp(generation g: Int, tasksDone: Int) -> Int { g << 24 | tasksDone }
        static func allocate(tasks: Int) -> Board {
            let padded = (tasks + 7) & ~7
            return Board(base: aligned(Int.self, 16 + 2 * padded), tasks: padded)
        }
    }
    private var board = Board.allocate(tasks: 128)
    private let wake = DispatchSemaphore(value: 0)
    private var thread: pthread_t?
    // The call handed to the helper (written before `generation` is published).
    private var job: Unmanaged<SingleWindowLSTM>?
    private var jobSteps = 0

    private init() {
        control = aligned(Int.self, 32)
        control[24] = 1
    }

    /// Starts a two-worker call, or returns nil when another call holds the helper or the helper
    /// is still leaving its last one. `prepare` runs before the helper can see the call.
    func begin(_ forward: SingleWindowLSTM, tasks: Int, steps: Int, prepare: () -> Void)
        -> (generation: Int, board: Board)?
    {
        guard fk_load_acquire(idle) == 1, fk_exchange(busy, 1) == 0 else { return nil }
        guard fk_load_acquire(idle) == 1 else { fk_store_release(busy, 0); return nil }
        if thread == nil {
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { _ in
                SplitForwardHelper.shared.loop()
                return nil
            }, nil)
            precondition(rc == 0, "pthread_create failed: \(rc)")
            thread = tid
        }
        precondition(tasks < 1 << 24, "window too long for the two-thread path")
        if tasks > board.tasks {
            // Generations only grow, so a fresh zeroed board reads as "nothing claimed".
            free(board.base)
            board = Board.allocate(tasks: tasks)
        }
        prepare()
        job = Unmanaged.passRetained(forward)
        jobSteps = steps
        fk_store_release(idle, 0)
        let g = generation.pointee + 1
        fk_store_release(generation, g)
        if fk_exchange(sleeping, 0) == 1 { wake.signal() }
        return (g, board)
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
            let forward = job!.takeRetainedValue()
            job = nil
            forward.runTasks(worker: 1, steps: jobSteps, generation: seen, board: board)
            fk_store_release(idle, 1)
        }
    }
}

/// 64-byte aligned floats: cache-line aligned halves of h (no false sharing between workers).
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

