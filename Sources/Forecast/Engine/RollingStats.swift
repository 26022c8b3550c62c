/// The last `capacity` values with their running sum and sum of squares, so the mean and the
/// variance of a sliding window cost O(1) per point.
struct RollingStats: Sendable {
    let capacity: Int
    private var ring: [Double] = []
    private var head = 0
    private(set) var sum = 0.0
    private var sumSq = 0.0

    init(capacity: Int) {
        self.capacity = capacity
    }

    var count: Int { ring.count }
    var mean: Double { sum / Double(max(ring.count, 1)) }
    /// Population variance (never negative, despite rounding of the running sums).
    var variance: Double { max(sumSq / Double(max(ring.count, 1)) - mean * mean, 0) }
    /// Oldest first.
    var values: [Double] { Array(ring[head...] + ring[..<head]) }

    mutating func push(_ v: Double) {
        if ring.count < capacity {
            ring.append(v)
        } else {
            let old = ring[head]
            sum -= old
            sumSq -= old * old
            ring[head] = v
            head = (head + 1) % capacity
        }
        sum += v
        sumSq += v * v
    }
}
