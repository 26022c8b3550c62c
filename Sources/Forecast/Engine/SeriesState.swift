import Foundation

/// Per-series state: the recent raw values, the normalisation, the pending forecast, residuals
/// and anomaly state. The model itself lives in the series' `ModelGroup`.
struct SeriesState: Sendable {
    let key: String
    let groupIndex: Int
    /// The last `keep` raw values, oldest first, with `flagged` marking points judged anomalous.
    private(set) var raw: DecimalRing
    private(set) var flagged: BitRing
    var lastTime: Double?
    /// Recent time steps, for the time of the next forecast.
    private var steps: [Double] = []
    var scaler: Scaler?
    var pending: Forecast?
    var residuals: ResidualWindow
    var anomaly: AnomalyScorer
    var blend = PersistenceBlend()
    var observations = 0
    /// The season in points (nil: none found); `periodChecked` once it has been looked for.
    var period: Int?
    var periodChecked = false
    /// The smallest value seen: a series that never went below zero gets no negative forecast.
    private(set) var minimum = Double.infinity
    /// Residuals of steps 2...H and the paths they are measured against (horizon > 1 only).
    var horizon: HorizonResiduals?

    init(key: String, groupIndex: Int, keep: Int, config: EngineConfig) {
        self.key = key
        self.groupIndex = groupIndex
        raw = DecimalRing(capacity: keep)
        flagged = BitRing(capacity: keep)
        residuals = ResidualWindow(capacity: config.residualWindow)
        anomaly = AnomalyScorer(config: config.anomaly)
        if config.horizon > 1 { horizon = HorizonResiduals(horizon: config.horizon, capacity: config.residualWindow, coverage: config.coverage) }
    }

    mutating func append(_ value: Double, time: Double) {
        raw.append(value)
        if value < minimum { minimum = value }
        flagged.append(false)
        if let lastTime {
            steps.append(time - lastTime)
            if steps.count > 16 { steps.removeFirst(steps.count - 16) }
        }
        lastTime = time
        observations += 1
    }

    mutating func markLastFlagged() {
        if !flagged.isEmpty { flagged[flagged.count - 1] = true }
    }

    /// The kept values and what was learned from their times, as a checkpoint stores them: a
    /// restart takes the window from the checkpoint and reads from the source only the rows after it.
    var window: SeriesWindow? {
        guard let lastTime, !raw.isEmpty else { return nil }
        return SeriesWindow(values: raw.elements, flagged: (0..<flagged.count).map { flagged[$0] }, lastTime: lastTime,
                            steps: steps, observations: observations, minimum: minimum)
    }

    /// Puts a stored window back in place of what the series holds.
    mutating func restore(_ w: SeriesWindow) {
        raw = DecimalRing(capacity: raw.capacity, restoring: w.values)
        flagged = BitRing(capacity: flagged.capacity)
        for f in w.flagged.suffix(raw.count) { flagged.append(f) }
        while flagged.count < raw.count { flagged.append(false) }
        lastTime = w.lastTime
        steps = Array(w.steps.suffix(16))
        observations = w.observations
        minimum = w.minimum
        periodChecked = false
    }

    /// Forgets the kept values (not the counts): rows after them are missing, so the window
    /// starts again from the rows that follow.
    mutating func clearWindow() {
        raw = DecimalRing(capacity: raw.capacity)
        flagged = BitRing(capacity: flagged.capacity)
        lastTime = nil
        steps = []
        periodChecked = false
    }

    /// The usual step between observations (median of recent steps).
    var typicalStep: Double { Self.typicalStep(steps) }

    static func typicalStep(_ steps: [Double]) -> Double {
        guard !steps.isEmpty else { return 0 }
        // At most 16 steps, usually all equal: take the median without sorting a copy.
        let k = steps.count / 2
        for v in steps {
            var less = 0, equal = 0
            for w in steps {
                if w < v { less += 1 } else if w == v { equal += 1 }
            }
            if less <= k && k < less + equal { return v }
        }
        return steps.sorted()[k]  // NaN steps: keep sorted()'s answer
    }

    /// Model-space values of the last `count` raw points (fewer when the transform needs a
    /// previous value that is not kept). Index-aligned with `flags`.
    func modelSpace(last count: Int, transform: TargetTransform) -> (u: [Double], flags: [Bool]) {
        let n = raw.count
        let start = max(0, n - count)
        var u: [Double] = []
        var f: [Bool] = []
        u.reserveCapacity(n - start)
        f.reserveCapacity(n - start)
        for i in start..<n {
            let prev = i > 0 ? raw[i - 1] : nil
            if let v = transform.forward(raw[i], previous: prev) {
                u.append(v)
                f.append(flagged[i] || (transform != .level && i > 0 && flagged[i - 1]))
            }
        }
        return (u, f)
    }

    /// The model-space values of `modelSpace(last:transform:)` without the flags, written into a
    /// reused buffer (the per-forecast path).
    func modelValues(last count: Int, transform: TargetTransform, into u: inout [Double]) {
        u.removeAll(keepingCapacity: true)
        let n = raw.count
        for i in max(0, n - count)..<n {
            if let v = transform.forward(raw[i], previous: i > 0 ? raw[i - 1] : nil) { u.append(v) }
        }
    }

    /// Bytes of element storage this series holds beyond the struct itself: its values, residuals
    /// and the anomaly checks' memory.
    var bytesHeld: Int {
        raw.bytesHeld + flagged.bytesHeld + steps.capacity * 8 + key.utf8.count + residuals.bytesHeld
            + anomaly.bytesHeld + (horizon?.bytesHeld ?? 0) + MemoryLayout<SeriesState>.stride
    }

    var lastRaw: Double? { raw.last }
    /// The kept raw values that were not flagged, oldest first.
    var rawValues: [Double] { (0..<raw.count).filter { !flagged[$0] }.map { raw[$0] } }
}

/// Turns model-space windows into normalised model inputs and back.
struct WindowCodec {
    let normalization: EngineConfig.Normalization
    let seqLength: Int

    /// Writes the normalised window ending at u[end-1] into `out`; returns the reference value
    /// the prediction is relative to.
    func encode(_ u: [Double], end: Int, scaler: Scaler, into out: inout [Float], at offset: Int) -> Double {
        let ref = reference(u[end - 1], scaler: scaler)
        let s = scaler.std
        for k in 0..<seqLength { out[offset + k] = Float((u[end - seqLength + k] - ref) / s) }
        return ref
    }

    func reference(_ last: Double, scaler: Scaler) -> Double {
        normalization == .zScore ? scaler.mean : last
    }

    func decode(_ y: Float, reference: Double, scaler: Scaler) -> Double {
        Double(y) * scaler.std + reference
    }

    func target(_ u: Double, reference: Double, scaler: Scaler) -> Float {
        Float((u - reference) / scaler.std)
    }
}

extension Scaler {
    /// Statistics of model-space values for a normalisation. z-score: mean and population std
    /// (RP-1). last-value: the mean absolute one-step move, so targets (the next move) are of
    /// order one whatever the level. Not the RMS move: on spiky series (network, disk, CPU) a
    /// few huge moves dominate the RMS and squash the ordinary moves to near zero, where the
    /// model never learns them and the Huber loss cannot tell a spike from the rest.
    /// Values marked in `skipping` (flagged anomalies), and moves into or out of them, are left
    /// out: one spike would otherwise widen every interval until it leaves the history.
    /// A constant series gets std 1 so everything stays finite.
    init(fitting u: [Double], skipping flags: [Bool]? = nil, for normalization: EngineConfig.Normalization) {
        let keep: (Int) -> Bool = { i in !(flags?[i] ?? false) }
        var kept = 0, sum = 0.0
        for i in u.indices where keep(i) { kept += 1; sum += u[i] }
        guard kept > 0 else { self.init(kind: .zScore, mean: 0, std: 1); return }
        let m = sum / Double(kept)
        var s: Double
        switch normalization {
        case .zScore:
            var sq = 0.0
            for i in u.indices where keep(i) { sq += (u[i] - m) * (u[i] - m) }
            s = (sq / Double(kept)).squareRoot()
        case .lastValue:
            var moves = 0.0, count = 0
            for i in u.indices.dropFirst() where keep(i) && keep(i - 1) {
                moves += abs(u[i] - u[i - 1])
                count += 1
            }
            s = count > 0 ? moves / Double(count) : 0
        }
        self.init(kind: .zScore, mean: m, std: s > 0 && s.isFinite ? s : 1)
    }
}
