/// The last `capacity` values with their running sum and sum of squares, so the mean and the
/// variance of a sliding window cost O(1) per point.
///
/// Values are held as Float32, as checkpoints store them: they are scores and differences that
/// only feed means, spreads and tails, and the halved memory is what lets a daemon follow
/// 100,000 series. The sums run in Float64 over the rounded values, so removing a value
/// removes exactly what adding it added.
struct RollingStats: Sendable {
    private var ring: Ring<Float>
    private(set) var sum = 0.0
    private var sumSq = 0.0

    init(capacity: Int) {
        ring = Ring(capacity: capacity)
    }

    var capacity: Int { ring.capacity }
    var count: Int { ring.count }
    var mean: Double { sum / Double(max(ring.count, 1)) }
    /// Population variance (never negative, despite rounding of the running sums).
    var variance: Double { max(sumSq / Double(max(ring.count, 1)) - mean * mean, 0) }
    /// Oldest first.
    var values: [Double] { ring.elements.map(Double.init) }
    var bytesHeld: Int { ring.bytesHeld }

    mutating func push(_ value: Double) {
        let v = Double(Float(value))
        if let old = ring.append(Float(v)).map(Double.init) {
            sum -= old
            sumSq -= old * old
        }
        sum += v
        sumSq += v * v
    }
}
