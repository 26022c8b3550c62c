import CKernels

/// Forward and backward pass of the stacked recurrent model for one shard of a batch (one
/// thread owns one Workspace). Explicit buffers in the llm.c style: every activation the
/// backward pass needs is kept, time-major ([T][B][width]) so that each step's rows are
/// contiguous and the input projections / weight gradients of all steps are single GEMMs.
/// `@unchecked Sendable`: handed to one worker thread per step, never shared during one.
final class Workspace: @unchecked Sendable {
    let config: ModelConfig
    let layout: ParameterLayout
    private(set) var batch = 0
    private(set) var seqLength = 0

    // Forward activations, one buffer per layer.
    /// [T][B][G*H] post-activation gates (LSTM i, f, g, o; GRU r, z, n).
    let gates: [FloatBuffer]
    /// LSTM: c_t [T][B][H].  GRU: h_{t-1} W_hnᵀ + b_hn [T][B][H] (needed for dr).
    let cells: [FloatBuffer]
    /// LSTM: tanh(c_t) [T][B][H] (kept so backward does not recompute it).
    let tanhC: [FloatBuffer]
    /// h_t [T][B][H].
    let hidden: [FloatBuffer]
    /// Input of layer k >= 1 after dropout, and the dropout mask (0 or 1/(1-p)).
    let dropped: [FloatBuffer]
    let masks: [FloatBuffer]
    private(set) var dropoutActive = false

    let xT = FloatBuffer()        // [T][B][in0]
    let pred = FloatBuffer()      // [B][O]
    let dPred = FloatBuffer()     // [B][O]
    let seasonal = FloatBuffer()  // [B][O] the seasonal skip's inputs

    // Backward scratch.
    let dZ = FloatBuffer()        // [T][B][G*Hmax] d(pre-activation), input-side for GRU
    let dGH = FloatBuffer()       // GRU: [T][B][3Hmax] d(h W_hhᵀ + b_hh)
    let dAbove = FloatBuffer()    // [T][B][widthMax] gradient into this layer's h
    let dBelow = FloatBuffer()    // [T][B][widthMax] gradient into this layer's input
    let dh = FloatBuffer()        // [B][Hmax]
    let carry = FloatBuffer()     // [B][Hmax] LSTM dc / GRU z*dh carried to t-1
    let ones = FloatBuffer()      // [T*B] of 1 (column sums via gemv)
    private var onesCount = 0
    let rowVec = FloatBuffer()    // [G*Hmax] bias sum / column sums
    // LSTM per-step products with W_hh through fk_gemm_rows on panels packed once per pass
    // (a BLAS call per step re-packs the 64 KB matrix every time): W_hhᵀ for forward, W_hh for
    // backward.
    let packedForward = FloatBuffer(), packedBackward = FloatBuffer()
    let stepTmp = FloatBuffer()   // GRU: [B][3Hmax]

    private let maxGateWidth: Int
    private let maxWidth: Int
    private let maxHidden: Int

    init(config: ModelConfig, layout: ParameterLayout) {
        self.config = config
        self.layout = layout
        let n = layout.layers.count
        gates = (0..<n).map { _ in FloatBuffer() }
        cells = (0..<n).map { _ in FloatBuffer() }
        tanhC = (0..<n).map { _ in FloatBuffer() }
        hidden = (0..<n).map { _ in FloatBuffer() }
        dropped = (0..<n).map { _ in FloatBuffer() }
        masks = (0..<n).map { _ in FloatBuffer() }
        maxGateWidth = layout.layers.map(\.gateWidth).max()!
        maxHidden = layout.layers.map(\.hiddenSize).max()!
        maxWidth = max(maxHidden, config.inputSize)
    }

    /// Size the buffers for `batch` x `seqLength` (grow only).
    func prepare(batch: Int, seqLength: Int) {
        self.batch = batch
        self.seqLength = seqLength
        let tb = batch * seqLength
        for (k, l) in layout.layers.enumerated() {
            gates[k].reserve(tb * l.gateWidth)
            cells[k].reserve(tb * l.hiddenSize)
            if config.cell == .lstm { tanhC[k].reserve(tb * l.hiddenSize) }
            hidden[k].reserve(tb * l.hiddenSize)
        }
        xT.reserve(tb * config.inputSize)
        pred.reserve(batch * layout.outputs)
        dPred.reserve(batch * layout.outputs)
        if layout.seasonalWeight != nil { seasonal.reserve(batch * layout.outputs) }
        dh.reserve(batch * maxHidden)
        carry.reserve(batch * maxHidden)
        rowVec.reserve(maxGateWidth)
        stepTmp.reserve(batch * maxGateWidth)
        packedForward.reserve(maxGateWidth * maxHidden)
        packedBackward.reserve(maxGateWidth * maxHidden)
        if onesCount < tb {  // capacity alone is not enough: a fresh buffer holds zeros
            ones.reserve(tb)
            for i in 0..<tb { ones.pointer[i] = 1 }
            onesCount = tb
        }
    }

    private func reserveBackward() {
        let tb = batch * seqLength
        dZ.reserve(tb * maxGateWidth)
        if config.cell == .gru { dGH.reserve(tb * maxGateWidth) }
        dAbove.reserve(tb * maxWidth)
        dBelow.reserve(tb * maxWidth)
    }

    /// Input of layer k as seen by its input projection.
    func layerInput(_ k: Int) -> UnsafeMutablePointer<Float> {
        k == 0 ? xT.pointer : (dropoutActive ? dropped[k].pointer : hidden[k - 1].pointer)
    }

    // MARK: forward

    /// x: [B][T][inputSize] batch-first; `s` [B][O] the seasonal skip's inputs (required with a
    /// skip, ignored without). Writes `pred` [B][O]. `dropoutRNG` non-nil = training mode
    /// (dropout applied if the config has any).
    func forward(_ P: UnsafePointer<Float>, x: UnsafePointer<Float>, seasonal s: UnsafePointer<Float>? = nil,
                 batch B: Int, seqLength T: Int, dropoutRNG: SeededGenerator?) {
        prepare(batch: B, seqLength: T)
        let O = layout.outputs
        if layout.seasonalWeight != nil {
            precondition(s != nil, "a seasonal skip needs its inputs")
            copyFloats(seasonal.pointer, s!, B * O)
        }
        let inSize = config.inputSize
        // batch-first -> time-major
        for b in 0..<B {
            for t in 0..<T {
                for i in 0..<inSize { xT.pointer[(t * B + b) * inSize + i] = x[(b * T + t) * inSize + i] }
            }
        }
        let p = config.dropout
        dropoutActive = dropoutRNG != nil && p > 0 && layout.layers.count > 1
        var rng = dropoutRNG ?? SeededGenerator(seed: 0)
        for k in 0..<layout.layers.count {
            switch config.cell {
            case .lstm: lstmForward(P, layer: k)
            case .gru: gruForward(P, layer: k)
            }
            if dropoutActive && k + 1 < layout.layers.count {
                let n = T * B * layout.layers[k].hiddenSize
                dropped[k + 1].reserve(n)
                masks[k + 1].reserve(n)
                let keep = 1 / (1 - p)
                let h = hidden[k].pointer, m = masks[k + 1].pointer, d = dropped[k + 1].pointer
                for i in 0..<n {
                    m[i] = rng.nextUnitFloat() < p ? 0 : keep
                    d[i] = h[i] * m[i]
                }
            }
        }
        // Linear head on the last step of the last layer.
        let last = layout.layers.count - 1
        let H = layout.layers[last].hiddenSize
        let hl = hidden[last].pointer + (T - 1) * B * H
        for b in 0..<B {
            for o in 0..<O {
                var y = P[layout.fcBias + o]
                let w = layout.fcWeight + o * H
                for j in 0..<H { y += hl[b * H + j] * P[w + j] }
                if let sw = layout.seasonalWeight { y += P[sw + o] * seasonal.pointer[b * O + o] }
                pred.pointer[b * O + o] = y
            }
        }
    }

    private func lstmForward(_ P: UnsafePointer<Float>, layer k: Int) {
        let l = layout.layers[k]
        let (B, T, H, G, inW) = (batch, seqLength, l.hiddenSize, l.gateWidth, l.inputSize)
        let z = gates[k].pointer, c = cells[k].pointer, tc = tanhC[k].pointer, h = hidden[k].pointer
        // Both biases folded into the rows first, then all T input projections in one GEMM.
        for j in 0..<G { rowVec.pointer[j] = P[l.biasIH + j] + P[l.biasHH + j] }
        fk_fill_rows(z, T * B, G, rowVec.pointer)
        gemm(transB: true, m: T * B, n: G, k: inW, a: layerInput(k), lda: inW,
             b: P + l.weightIH, ldb: inW, beta: 1, c: z, ldc: G)
        let wp = packedForward.pointer
        fk_pack_panels(G, H, P + l.weightHH, wp)
        for t in 0..<T {
            let zt = z + t * B * G
            if t > 0 { fk_gemm_rows(B, H, G, wp, h + (t - 1) * B * H, H, zt, G) }
            fk_lstm_cell_forward(B, H, zt, t > 0 ? c + (t - 1) * B * H : nil,
                                 c + t * B * H, tc + t * B * H, h + t * B * H)
        }
    }

    private func gruForward(_ P: UnsafePointer<Float>, layer k: Int) {
        let l = layout.layers[k]
        let (B, T, H, G, inW) = (batch, seqLength, l.hiddenSize, l.gateWidth, l.inputSize)
        let z = gates[k].pointer, ghn = cells[k].pointer, h = hidden[k].pointer
        let gh = stepTmp.pointer
        fk_fill_rows(z, T * B, G, P + l.biasIH)
        gemm(transB: true, m: T * B, n: G, k: inW, a: layerInput(k), lda: inW,
             b: P + l.weightIH, ldb: inW, beta: 1, c: z, ldc: G)
        for t in 0..<T {
            fk_fill_rows(gh, B, G, P + l.biasHH)
            if t > 0 {
                gemm(transB: true, m: B, n: G, k: H, a: h + (t - 1) * B * H, lda: H,
                     b: P + l.weightHH, ldb: H, beta: 1, c: gh, ldc: G)
            }
            for b in 0..<B {
                let zr = z + (t * B + b) * G, gr = gh + b * G
                let hn = ghn + (t * B + b) * H, ht = h + (t * B + b) * H
                for j in 0..<(2 * H) { zr[j] += gr[j] }
                fk_sigmoid(zr, 2 * H)  // r, z
                for j in 0..<H {
                    hn[j] = gr[2 * H + j]
                    zr[2 * H + j] += zr[j] * hn[j]  // n = tanh(gi_n + r * (W_hn h + b_hn))
                }
                fk_tanh(zr + 2 * H, H)
                for j in 0..<H {
                    let hp: Float = t > 0 ? h[((t - 1) * B + b) * H + j] : 0
                    let u = zr[H + j]
                    ht[j] = (1 - u) * zr[2 * H + j] + u * hp
                }
            }
        }
    }

    // MARK: backward

    /// Accumulates dLoss/dparams into `grads` given `dPred` [B][O] (already holding dLoss/dpred).
    /// If `inputGradient` is non-nil it receives dLoss/dx, batch-first [B][T][inputSize].
    func backward(_ P: UnsafePointer<Float>, grads: UnsafeMutablePointer<Float>,
                  inputGradient: UnsafeMutablePointer<Float>?) {
        reserveBackward()
        let (B, T) = (batch, seqLength)
        let L = layout.layers.count
        let HL = layout.layers[L - 1].hiddenSize
        var above = dAbove.pointer, below = dBelow.pointer
        // Head: only the last step of the top layer receives gradient from the loss.
        zeroFloats(above, T * B * HL)
        let hl = hidden[L - 1].pointer + (T - 1) * B * HL
        let dTop = above + (T - 1) * B * HL
        let O = layout.outputs
        for b in 0..<B {
            for o in 0..<O {
                let d = dPred.pointer[b * O + o]
                grads[layout.fcBias + o] += d
                let w = layout.fcWeight + o * HL
                for j in 0..<HL {
                    dTop[b * HL + j] += d * P[w + j]
                    grads[w + j] += d * hl[b * HL + j]
                }
                if let sw = layout.seasonalWeight { grads[sw + o] += d * seasonal.pointer[b * O + o] }
            }
        }
        for k in stride(from: L - 1, through: 0, by: -1) {
            let wantDX = k > 0 || inputGradient != nil
            switch config.cell {
            case .lstm: lstmBackward(P, grads, layer: k, dH: above, dX: wantDX ? below : nil)
            case .gru: gruBackward(P, grads, layer: k, dH: above, dX: wantDX ? below : nil)
            }
            if k > 0 {
                if dropoutActive {
                    let n = T * B * layout.layers[k].inputSize
                    let m = masks[k].pointer
                    for i in 0..<n { below[i] *= m[i] }
                }
                swap(&above, &below)
            }
        }
        if let gx = inputGradient {
            let inSize = config.inputSize
            for b in 0..<B {
                for t in 0..<T {
                    for i in 0..<inSize { gx[(b * T + t) * inSize + i] = below[(t * B + b) * inSize + i] }
                }
            }
        }
    }

    /// Weight gradients of all steps at once (dZᵀ·X, dZᵀ·H_{t-1}) after the sequential sweep.
    private func weightGradients(_ P: UnsafePointer<Float>, _ grads: UnsafeMutablePointer<Float>,
                                 layer k: Int, dInputSide: UnsafePointer<Float>,
                                 dHiddenSide: UnsafePointer<Float>, dX: UnsafeMutablePointer<Float>?) {
        let l = layout.layers[k]
        let (B, T, H, G, inW) = (batch, seqLength, l.hiddenSize, l.gateWidth, l.inputSize)
        gemm(transA: true, m: G, n: inW, k: T * B, a: dInputSide, lda: G, b: layerInput(k), ldb: inW,
             beta: 1, c: grads + l.weightIH, ldc: inW)
        if T > 1 {  // h_{-1} = 0, so step 0 contributes nothing to dW_hh
            gemm(transA: true, m: G, n: H, k: (T - 1) * B, a: dHiddenSide + B * G, lda: G,
                 b: hidden[k].pointer, ldb: H, beta: 1, c: grads + l.weightHH, ldc: H)
        }
        columnSums(dInputSide, rows: T * B, cols: G, ones: ones.pointer, into: grads + l.biasIH, accumulate: true)
        columnSums(dHiddenSide, rows: T * B, cols: G, ones: ones.pointer, into: grads + l.biasHH, accumulate: true)
        if let dX {
            gemm(m: T * B, n: inW, k: G, a: dInputSide, lda: G, b: P + l.weightIH, ldb: inW,
                 beta: 0, c: dX, ldc: inW)
        }
    }

    private func lstmBackward(_ P: UnsafePointer<Float>, _ grads: UnsafeMutablePointer<Float>, layer k: Int,
                              dH: UnsafePointer<Float>, dX: UnsafeMutablePointer<Float>?) {
        let l = layout.layers[k]
        let (B, T, H, G) = (batch, seqLength, l.hiddenSize, l.gateWidth)
        let z = gates[k].pointer, c = cells[k].pointer, tc = tanhC[k].pointer
        let dz = dZ.pointer, dht = dh.pointer, dc = carry.pointer
        zeroFloats(dc, B * H)
        let wp = packedBackward.pointer
        fk_pack_panels_t(H, G, P + l.weightHH, wp)
        for t in stride(from: T - 1, through: 0, by: -1) {
            copyFloats(dht, dH + t * B * H, B * H)
            // recurrent path: dh_t += dz_{t+1} · W_hh
            if t < T - 1 { fk_gemm_rows(B, G, H, wp, dz + (t + 1) * B * G, G, dht, H) }
            fk_lstm_cell_backward(B, H, z + t * B * G, t > 0 ? c + (t - 1) * B * H : nil,
                                  tc + t * B * H, dht, dc, dz + t * B * G)
        }
        // One pre-activation feeds both biases: each bias gradient is d(pre-gate).
        weightGradients(P, grads, layer: k, dInputSide: dz, dHiddenSide: dz, dX: dX)
    }

    private func gruBackward(_ P: UnsafePointer<Float>, _ grads: UnsafeMutablePointer<Float>, layer k: Int,
                             dH: UnsafePointer<Float>, dX: UnsafeMutablePointer<Float>?) {
        let l = layout.layers[k]
        let (B, T, H, G) = (batch, seqLength, l.hiddenSize, l.gateWidth)
        let zg = gates[k].pointer, ghn = cells[k].pointer, h = hidden[k].pointer
        let dgi = dZ.pointer, dgh = dGH.pointer, dht = dh.pointer, zCarry = carry.pointer
        for t in stride(from: T - 1, through: 0, by: -1) {
            copyFloats(dht, dH + t * B * H, B * H)
            if t < T - 1 {
                for i in 0..<(B * H) { dht[i] += zCarry[i] }
                gemm(m: B, n: H, k: G, a: dgh + (t + 1) * B * G, lda: G, b: P + l.weightHH, ldb: H,
                     beta: 1, c: dht, ldc: H)
            }
            for b in 0..<B {
                let row = t * B + b
                let g = zg + row * G, hn = ghn + row * H, di = dgi + row * G, dg = dgh + row * G
                for j in 0..<H {
                    let r = g[j], u = g[H + j], n = g[2 * H + j]
                    let hp: Float = t > 0 ? h[((t - 1) * B + b) * H + j] : 0
                    let d = dht[b * H + j]
                    zCarry[b * H + j] = d * u
                    let dn = d * (1 - u) * (1 - n * n)
                    let dr = dn * hn[j] * r * (1 - r)
                    let du = d * (hp - n) * u * (1 - u)
                    di[j] = dr; di[H + j] = du; di[2 * H + j] = dn
                    dg[j] = dr; dg[H + j] = du; dg[2 * H + j] = dn * r
                }
            }
        }
        weightGradients(P, grads, layer: k, dInputSide: dgi, dHiddenSide: dgh, dX: dX)
    }
}
