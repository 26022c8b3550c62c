/// The last N residuals of a series, in arrival order (to drop the oldest) with their sorted
/// order beside them (so interval quantiles are a lookup, not a sort per prediction).
///
/// Residuals are in units of the series' spread and only feed quantiles, so they are held as
/// Float32, as checkpoints store them: a restored window is the window that was saved. The
/// sorted order is kept as two-byte storage slots of the ring, not as a second copy of the
/// residuals: 1 KB a series instead of 2 KB at the default 500, for the same quantiles (the
/// same values by rank).
struct ResidualWindow: Sendable {
    private var ring: Ring<Float>
    /// Storage slots of `ring`, by residual ascending.
    private var order: [UInt16] = []

    /// Slots are two bytes.
    static let maxCapacity = Int(UInt16.max) + 1

    init(capacity: Int) {
        precondition(capacity <= Self.maxCapacity, "a residual window holds at most \(Self.maxCapacity)")
        ring = Ring(capacity: capacity)
    }

    var capacity: Int { ring.capacity }
    var count: Int { ring.count }
    var values: [Double] { ring.elements.map(Double.init) }
    var bytesHeld: Int { ring.bytesHeld + order.capacity * MemoryLayout<UInt16>.stride }

    mutating func add(_ residual: Double) {
        let r = Float(residual)
        guard r.isFinite else { return }
        if order.isEmpty { order.reserveCapacity(ring.capacity) }
        let slot = ring.nextSlot
        if ring.isFull {
            // The oldest residual's place in the order: among the residuals equal to it, the
            // one in this slot.
            var k = lowerBound(ring[stored: slot])
            while Int(order[k]) != slot { k += 1 }
            order.remove(at: k)
        }
        ring.append(r)
        order.insert(UInt16(truncatingIfNeeded: slot), at: lowerBound(r))
    }

    /// Multiplies every residual by `factor` (> 0, so the sorted order stands: rounding is
    /// monotone, at worst making neighbours equal).
    mutating func rescale(by factor: Double) {
        guard factor > 0, factor.isFinite, factor != 1 else { return }
        ring.update { $0 = Float(Double($0) * factor) }
    }

    /// Empirical quantile with linear interpolation (numpy's default), q in [0, 1].
    func quantile(_ q: Double) -> Double? {
        guard !order.isEmpty else { return nil }
        let pos = q * Double(order.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, order.count - 1)
        let a = Double(ring[stored: Int(order[lo])]), b = Double(ring[stored: Int(order[hi])])
        return a + (b - a) * (pos - Double(lo))
    }

    /// The first place in `order` whose residual is not below `v`.
    private func lowerBound(_ v: Float) -> Int {
        var lo = 0, hi = order.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ring[stored: Int(order[mid])] < v { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
