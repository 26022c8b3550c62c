/// The last N residuals of a series, kept both in arrival order (to drop the oldest) and sorted
/// (so interval quantiles are a lookup, not a sort per prediction).
///
/// Residuals are in units of the series' spread and only feed quantiles, so they are held as
/// Float32, as checkpoints store them: a restored window is the window that was saved.
struct ResidualWindow: Sendable {
    private var ring: Ring<Float>
    private var sorted: [Float] = []

    init(capacity: Int) {
        ring = Ring(capacity: capacity)
    }

    var capacity: Int { ring.capacity }
    var count: Int { sorted.count }
    var values: [Double] { ring.elements.map(Double.init) }
    var bytesHeld: Int { ring.bytesHeld + sorted.capacity * MemoryLayout<Float>.stride }

    mutating func add(_ residual: Double) {
        let r = Float(residual)
        guard r.isFinite else { return }
        if sorted.isEmpty { sorted.reserveCapacity(ring.capacity) }
        if let old = ring.append(r) { sorted.remove(at: insertionIndex(old)) }
        sorted.insert(r, at: insertionIndex(r))
    }

    /// Multiplies every residual by `factor` (> 0, so the sorted order stands).
    mutating func rescale(by factor: Double) {
        guard factor > 0, factor.isFinite, factor != 1 else { return }
        // Each element is rounded the same way in both copies, so they stay equal as sets.
        let f = { (x: inout Float) in x = Float(Double(x) * factor) }
        ring.update(f)
        for i in sorted.indices { f(&sorted[i]) }
    }

    /// Empirical quantile with linear interpolation (numpy's default), q in [0, 1].
    func quantile(_ q: Double) -> Double? {
        guard !sorted.isEmpty else { return nil }
        let pos = q * Double(sorted.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        let a = Double(sorted[lo]), b = Double(sorted[hi])
        return a + (b - a) * (pos - Double(lo))
    }

    private func insertionIndex(_ v: Float) -> Int {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < v { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
