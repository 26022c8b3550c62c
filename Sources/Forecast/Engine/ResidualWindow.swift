/// The last N residuals of a series, kept both in arrival order (to drop the oldest) and sorted
/// (so interval quantiles are a lookup, not a sort per prediction).
struct ResidualWindow: Sendable {
    let capacity: Int
    private var ring: [Double] = []
    private var head = 0
    private var sorted: [Double] = []

    init(capacity: Int) {
        self.capacity = capacity
        ring.reserveCapacity(capacity)
        sorted.reserveCapacity(capacity)
    }

    var count: Int { sorted.count }
    var values: [Double] { Array(ring[head...] + ring[..<head]) }

    mutating func add(_ r: Double) {
        guard r.isFinite else { return }
        if ring.count < capacity {
            ring.append(r)
        } else {
            let old = ring[head]
            ring[head] = r
            head = (head + 1) % capacity
            sorted.remove(at: insertionIndex(old))
        }
        sorted.insert(r, at: insertionIndex(r))
    }

    /// Multiplies every residual by `factor` (> 0, so the sorted order stands).
    mutating func rescale(by factor: Double) {
        guard factor > 0, factor.isFinite, factor != 1 else { return }
        for i in ring.indices { ring[i] *= factor }
        for i in sorted.indices { sorted[i] *= factor }
    }

    /// Empirical quantile with linear interpolation (numpy's default), q in [0, 1].
    func quantile(_ q: Double) -> Double? {
        guard !sorted.isEmpty else { return nil }
        let pos = q * Double(sorted.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
        return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - Double(lo))
    }

    private func insertionIndex(_ v: Double) -> Int {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < v { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
