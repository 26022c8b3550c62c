/// The last N residuals of a series, in arrival order (to drop the oldest) with their sorted
/// order beside them (so interval quantiles are a lookup, not a sort per prediction).
///
/// Residuals are in units of the series' spread and only feed quantiles, so they are held as
/// Float32, as checkpoints store them: a restored window is the window that was saved. The
/// sorted order is kept as two-byte slot numbers into the residuals, not as a second copy of
/// them: 1 KB a series instead of 2 KB at the default 500, for the same quantiles (the same
/// values by rank).
struct ResidualWindow: Sendable {
    let capacity: Int
    /// Residuals in slot order: appended until full, then a ring whose oldest slot is `head`.
    private var stored: [Float] = []
    private var head = 0
    /// Slots of `stored`, by residual ascending.
    private var order: [UInt16] = []

    /// Slot numbers are two bytes.
    static let maxCapacity = Int(UInt16.max) + 1

    init(capacity: Int) {
        precondition(capacity >= 1 && capacity <= Self.maxCapacity, "a residual window holds 1...\(Self.maxCapacity)")
        self.capacity = capacity
    }

    var count: Int { stored.count }
    /// Oldest first.
    var values: [Double] {
        let inOrder = stored.count < capacity ? stored[...] : stored[head...] + stored[..<head]
        return inOrder.map(Double.init)
    }
    var bytesHeld: Int { stored.capacity * MemoryLayout<Float>.stride + order.capacity * MemoryLayout<UInt16>.stride }

    mutating func add(_ residual: Double) {
        let r = Float(residual)
        guard r.isFinite else { return }
        let slot: Int
        if stored.count < capacity {
            slot = stored.count
            stored.append(r)
        } else {
            slot = head
            // The oldest residual's place in the order: among the residuals equal to it, the
            // one in this slot.
            let old = stored[slot]
            var k = lowerBound(old)
            while Int(order[k]) != slot { k += 1 }
            order.remove(at: k)
            stored[slot] = r
            head += 1
            if head == capacity { head = 0 }
        }
        order.insert(UInt16(truncatingIfNeeded: slot), at: lowerBound(r))
        if slot == capacity - 1 && stored.count == capacity { shrinkToFit() }
    }

    /// Multiplies every residual by `factor` (> 0, so the sorted order stands: rounding is
    /// monotone, at worst making neighbours equal).
    mutating func rescale(by factor: Double) {
        guard factor > 0, factor.isFinite, factor != 1 else { return }
        for i in stored.indices { stored[i] = Float(Double(stored[i]) * factor) }
    }

    /// Empirical quantile with linear interpolation (numpy's default), q in [0, 1].
    func quantile(_ q: Double) -> Double? {
        guard !order.isEmpty else { return nil }
        let pos = q * Double(order.count - 1)
        let lo = Int(pos.rounded(.down)), hi = min(lo + 1, order.count - 1)
        let a = Double(stored[Int(order[lo])]), b = Double(stored[Int(order[hi])])
        return a + (b - a) * (pos - Double(lo))
    }

    /// The first place in `order` whose residual is not below `v`.
    private func lowerBound(_ v: Float) -> Int {
        var lo = 0, hi = order.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if stored[Int(order[mid])] < v { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    /// Once full, both arrays are cut to `capacity`: the spare room array growth leaves behind
    /// would otherwise be kept for the life of the series.
    private mutating func shrinkToFit() {
        if stored.capacity > capacity { stored = Self.exactly(stored) }
        if order.capacity > capacity { order = Self.exactly(order) }
    }

    private static func exactly<T>(_ a: [T]) -> [T] {
        [T](unsafeUninitializedCapacity: a.count) { buffer, initialized in
            _ = buffer.initialize(from: a)
            initialized = a.count
        }
    }
}
