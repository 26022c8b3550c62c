/// The last `capacity` values with their running sum and sum of squares, so the mean and the
/// variance of a sliding window cost O(1) per point.
///
/// Values are held as `Stored`: Float32 for differences in a series' own units (as checkpoints
/// store them), Float16 for the residual check's raw scores, which lie in [0, 1). They only
/// feed means, spreads and tails, and the smaller memory is what lets a daemon follow 100,000
/// series. The sums run in Float64 over the rounded values, so removing a value removes exactly
/// what adding it added.
struct RollingStats<Stored: StoredFloat>: Sendable {
    private var ring: Ring<Stored>
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
    var values: [Double] { ring.elements.map(\.asDouble) }
    var bytesHeld: Int { ring.bytesHeld }

    mutating func push(_ value: Double) {
        let stored = Stored(value)
        let v = stored.asDouble
        if let old = ring.append(stored)?.asDouble {
            sum -= old
            sumSq -= old * old
        }
        sum += v
        sumSq += v * v
    }
}

/// The history of a windowed check: what it has seen over `span` points, kept as at most
/// `maxSamples` of them, one every `stride` points.
///
/// The windows of such a check overlap (a day-long window moves by one point per point), so
/// neighbouring values differ by a point's worth of the window and a sample every few points
/// has the same mean, spread and tail as all of them. At one-minute steps a three-day history
/// is 4,320 values per check; sampled, it is 864, and a series keeps four of these. At steps of
/// about four minutes or more the span fits in `maxSamples` and every value is kept. Samples
/// are held in two bytes each (`HalfStats`).
struct SpacedHistory: Sendable {
    let span: Int
    let stride: Int
    private var samples: HalfStats
    /// Values offered since the last one kept.
    private var skipped = 0

    init(span: Int, maxSamples: Int) {
        self.span = max(1, span)
        stride = max(1, (self.span + maxSamples - 1) / max(1, maxSamples))
        samples = HalfStats(capacity: (self.span + stride - 1) / stride)
    }

    /// Points the kept samples stand for (what a check's minimum history is measured in).
    var pointsCovered: Int { samples.count * stride }
    var count: Int { samples.count }
    var mean: Double { samples.mean }
    var variance: Double { samples.variance }
    /// The kept samples, oldest first (what checkpoints store).
    var values: [Double] { samples.values }
    /// Kept samples at least `distance` from `median`, `floor` taken off (see `HalfStats`).
    func count(fartherFrom median: Double, than distance: Float, floor: Double) -> Int {
        samples.count(fartherFrom: median, than: distance, floor: floor)
    }
    var bytesHeld: Int { samples.bytesHeld }

    /// Offers the next value; one in `stride` is kept.
    mutating func push(_ value: Double) {
        if skipped == 0 { samples.push(value) }
        skipped += 1
        if skipped == stride { skipped = 0 }
    }

    /// Restores kept samples (from `values`). Samples saved more densely than this history
    /// keeps them (a checkpoint from before sampling, or from a finer window) are thinned to
    /// about its spacing, so they still span the history rather than its last stretch.
    mutating func restore(_ saved: [Double]) {
        let every = max(1, (saved.count + samples.capacity - 1) / samples.capacity)
        let kept = every == 1 ? saved : Swift.stride(from: saved.count - 1, through: 0, by: -every).reversed().map { saved[$0] }
        for v in kept.suffix(samples.capacity) { samples.push(v) }
    }
}
