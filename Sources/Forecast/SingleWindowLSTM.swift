import CKernels
import Dispatch
import Glibc

/// The single-window LSTM forward on two threads.
///
/// One window cannot be split by rows, and its cost is not arithmetic: every step streams the
/// layer's recurrent matrix (64 KB at hidden 64, twice the L1 cache) from L2. Split by hidden
/// units, each thread owns the gate rows of half the units, streams only those, and the two
/// trade their halves of h after every step. Each unit goes through exactly the arithmetic of
/// the one-thread path, so the prediction is the same to the bit.
///
/// The caller's thread is worker 0; worker 1 is the process's one `SplitForwardHelper` thread.
/// With one thread, or when the helper is busy with another call (a daemon with a model per
/// series must not grow a thread per model), the caller runs both halves itself.
final class SingleWindowLSTM: @unchecked Sendable {
    /// One worker's share of one layer: gate rows (i, f, g, o) of units u0 ..< u0 + n.
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
    private var shares: [[Share]] = [[], []]  // [worker][layer]

    // Per-call buffers, grown by the caller while the helper is not working for this instance.
    private var seqCapacity = 0
    private var h: [UnsafeMutablePointer<Float>] = []      // per layer [T][H], both workers write
    private var z: [UnsafeMutablePointer<Float>?] = [nil, nil]  // per worker [T][4n]
    private var state: [UnsafeMutablePointer<Float>] = []  // per worker: c, c', tanh c

    // The call in progress (written before the helper's generation is published).
    private var callInput: UnsafePointer<Float>?
    private var callSteps = 0

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
        let maxH = layout.layers.map(\.hiddenSize).max()!
        state = [alignedFloats(3 * maxH), alignedFloats(3 * maxH)]
    }

    deinit {
        for w in shares { for s in w { free(s.whhT); free(s.wih); free(s.bias) } }
        for p in h { free(p) }
        for p in z { free(p) }
        for p in state { free(p) }
    }

    /// Prediction for one window x [T][inputSize].
    func predict(_ x: UnsafePointer<Float>, seqLength T: Int, twoThreads: Bool) -> Float {
        reserve(seqLength: T)
        callInput = x
        callSteps = T
        let helper = SplitForwardHelper.shared
        if twoThreads && helper.tryAcquire() {
            helper.start(self)
            run(worker: 0, mine: helper.progress0, other: helper.progress1)
            fk_wait_at_least(helper.progress1, layout.layers.count * T)
            helper.release()
        } else {
            runAlone()
        }
        let H = layout.layers.last!.hiddenSize
        let top = h[layout.layers.count - 1] + (T - 1) * H
        var s = fcBias
        for j in 0..<H { s += top[j] * fcWeight[j] }
        return s
    }

    /// One worker's half of every layer. `mine`/`other`: steps finished so far in this call
    /// (counted across layers) by this worker and by its partner.
    fileprivate func run(worker w: Int, mine: UnsafeMutablePointer<Int>, other: UnsafeMutablePointer<Int>) {
        let T = callSteps
        var input = callInput!, inSize = inputSize
        let zw = z[w]!, st = state[w]
        for (k, l) in layout.layers.enumerated() {
            let s = shares[w][k], H = l.hiddenSize, G = 4 * s.n
            let hk = h[k]
            // The next layer's input projection needs all of this layer's h, both halves.
            if k > 0 { fk_wait_at_least(other, k * T) }
            fk_fill_rows(zw, T, G, s.bias)
            gemm(transB: true, m: T, n: G, k: inSize, a: input, lda: inSize, b: s.wih, ldb: inSize,
                 beta: 1, c: zw, ldc: G)
            var cPrev = st, cCur = st + H
            for t in 0..<T {
                let zt = zw + t * G
                if t > 0 {
                    fk_wait_at_least(other, k * T + t)
                    fk_gemv_t(H, G, s.whhT, hk + (t - 1) * H, zt)
                }
                fk_lstm_cell_forward(1, s.n, zt, t > 0 ? cPrev : nil, cCur, st + 2 * H, hk + t * H + s.u0)
                swap(&cPrev, &cCur)
                fk_store_release(mine, k * T + t + 1)
            }
            input = UnsafePointer(hk)
            inSize = H
        }
    }

    /// Both workers' halves on the calling thread, step by step: the same arithmetic per unit.
    private func runAlone() {
        let T = callSteps
        var input = callInput!, inSize = inputSize
        for (k, l) in layout.layers.enumerated() {
            let H = l.hiddenSize, hk = h[k]
            for w in 0..<2 {
                let s = shares[w][k]
                fk_fill_rows(z[w]!, T, 4 * s.n, s.bias)
                gemm(transB: true, m: T, n: 4 * s.n, k: inSize, a: input, lda: inSize, b: s.wih,
                     ldb: inSize, beta: 1, c: z[w]!, ldc: 4 * s.n)
            }
            for t in 0..<T {
                for w in 0..<2 where t > 0 {
                    let s = shares[w][k]
                    fk_gemv_t(H, 4 * s.n, s.whhT, hk + (t - 1) * H, z[w]! + t * 4 * s.n)
                }
                for w in 0..<2 {
                    let s = shares[w][k], st = state[w]
                    // c ping-pongs between st and st + H with the step's parity.
                    let cPrev = st + (t & 1 == 1 ? 0 : H), cCur = st + (t & 1 == 1 ? H : 0)
                    fk_lstm_cell_forward(1, s.n, z[w]! + t * 4 * s.n, t > 0 ? cPrev : nil, cCur,
                                         st + 2 * H, hk + t * H + s.u0)
                }
            }
            input = UnsafePointer(hk)
            inSize = H
        }
    }

    private func reserve(seqLength T: Int) {
        guard T > seqCapacity else { return }
        for p in h { free(p) }
        for p in z { free(p) }
        h = layout.layers.map { alignedFloats(T * $0.hiddenSize) }
        z = (0..<2).map { w in alignedFloats(T * shares[w].map { 4 * $0.n }.max()!) }
        seqCapacity = T
    }
}

/// Worker 1 of every two-thread SingleWindowLSTM call in the process: one thread, started on first use,
/// that spins 200 µs after a call (back-to-back calls pay no wake-up) and then sleeps.
final class SplitForwardHelper: @unchecked Sendable {
    static let shared = SplitForwardHelper()

    // Control words, each on its own cache line: progress of worker 0 and 1, call generation,
    // helper-asleep flag, busy flag (one call at a time).
    private let control: UnsafeMutablePointer<Int>
    var progress0: UnsafeMutablePointer<Int> { control }
    var progress1: UnsafeMutablePointer<Int> { control + 8 }
    private var generation: UnsafeMutablePointer<Int> { control + 16 }
    private var sleeping: UnsafeMutablePointer<Int> { control + 24 }
    private var busy: UnsafeMutablePointer<Int> { control + 32 }
    private let wake = DispatchSemaphore(value: 0)
    private var thread: pthread_t?
    /// The instance whose call is in progress; it outlives the call (its caller is inside it).
    private var job: Unmanaged<SingleWindowLSTM>?

    private init() {
        control = aligned(Int.self, 40)
    }

    func tryAcquire() -> Bool { fk_exchange(busy, 1) == 0 }
    func release() { fk_store_release(busy, 0) }

    /// Hand worker 1 of `forward`'s call to the helper thread (caller holds the busy flag).
    func start(_ forward: SingleWindowLSTM) {
        if thread == nil {
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { _ in
                SplitForwardHelper.shared.loop()
                return nil
            }, nil)
            precondition(rc == 0, "pthread_create failed: \(rc)")
            thread = tid
        }
        job = Unmanaged.passUnretained(forward)
        fk_store_release(progress0, 0)
        fk_store_release(progress1, 0)
        fk_store_release(generation, generation.pointee + 1)
        if fk_exchange(sleeping, 0) == 1 { wake.signal() }
    }

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
            job!.takeUnretainedValue().run(worker: 1, mine: progress1, other: progress0)
        }
    }
}

/// 64-byte aligned floats: cache-line aligned halves of h and control words (no false sharing).
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
