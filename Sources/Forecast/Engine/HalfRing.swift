/// The last `capacity` values of a stream in two bytes each: the contextual check's three weeks
/// of values, which were two fifths of a series' memory as `Float`.
///
/// Values arrive into an open block of `blockSize` `Float`s. A full block is sealed: each value
/// is kept as a `Float16` offset from the block's median, scaled by a power of two so that the
/// largest offset fits. What is lost is below the eleventh significant bit of a value's distance
/// from its own block's typical level, so a level far from zero (a price, a temperature in
/// kelvin) costs no precision, and a spike costs precision only to itself: the rest of its block
/// sits near the median. The check compares the same hours of different days with medians and
/// windowed means; a few parts in ten thousand of the day's swing do not move those.
///
/// Sealing is idempotent: sealing the values a sealed block gives back yields the same values,
/// so a check restored from the values it saved (`stored`) holds exactly what it held.
struct HalfRing: Sendable {
    let capacity: Int
    static let blockSize = 256
    /// Sealed blocks kept: enough for `capacity` values when the open block is empty.
    private let maxBlocks: Int
    private var codes: [Float16] = []      // block slots of `blockSize`, in ring order from `first`
    private var medians: [Float] = []
    private var scales: [Float] = []       // powers of two
    private var first = 0
    private var sealed = 0
    private var open: [Float] = []
    /// How much of a difference between two held values may be the storage's rounding, for
    /// values of a typical block (set at each seal, from the blocks' scales).
    private(set) var resolution = 0.0

    init(capacity: Int) {
        precondition(capacity >= 1, "a ring holds at least one element")
        self.capacity = capacity
        maxBlocks = (capacity + Self.blockSize - 1) / Self.blockSize
    }

    /// Values held, the oldest of which may be older than the last `capacity`.
    private var held: Int { sealed * Self.blockSize + open.count }
    var count: Int { min(capacity, held) }
    /// The most values held at once (what a snapshot may save).
    var maxHeld: Int { maxBlocks * Self.blockSize + Self.blockSize - 1 }
    var isEmpty: Bool { held == 0 }

    /// The i-th of the last `count` values, oldest first.
    subscript(i: Int) -> Float { stored(at: held - count + i) }

    /// Every value held, oldest first, including the older part of the oldest block: what a
    /// snapshot saves, so that a restored ring seals its blocks where this one did.
    var stored: [Float] { (0..<held).map { stored(at: $0) } }

    /// The newest `capacity` values, oldest first.
    var elements: [Float] { (0..<count).map { self[$0] } }

    /// The ring's values as it holds them, oldest first: each sealed block's median, scale and
    /// codes (`blockSize` codes a block), then the open block's values. What a checkpoint
    /// writes, without decoding and sealing every value again.
    struct Sealed: Sendable, Equatable {
        var medians: [Float] = []
        var scales: [Float] = []
        var codes: [Float16] = []
        var open: [Float] = []
        var count: Int { medians.count * HalfRing.blockSize + open.count }
        /// Every value, oldest first (what `stored` gives for the ring they came from).
        var values: [Float] {
            var out: [Float] = []
            out.reserveCapacity(count)
            let b = HalfRing.blockSize
            for k in medians.indices {
                for i in 0..<b { out.append(HalfRing.decode(codes[k * b + i], median: medians[k], scale: scales[k])) }
            }
            return out + open
        }
    }

    var sealedForm: Sealed {
        var out = Sealed()
        let b = Self.blockSize
        out.medians.reserveCapacity(sealed)
        out.scales.reserveCapacity(sealed)
        out.codes.reserveCapacity(sealed * b)
        for k in 0..<sealed {
            var slot = first + k
            if slot >= maxBlocks { slot -= maxBlocks }
            out.medians.append(medians[slot])
            out.scales.append(scales[slot])
            out.codes.append(contentsOf: codes[(slot * b)..<((slot + 1) * b)])
        }
        out.open = open
        return out
    }

    /// A ring holding what `sealed` holds, as appending its values would make it (sealing is
    /// idempotent), but without sealing them again; nil when it holds more than this ring can
    /// (`maxHeld`: a state from other settings).
    init?(capacity: Int, restoring form: Sealed) {
        self.init(capacity: capacity)
        let b = Self.blockSize
        guard form.count <= maxHeld, form.open.count < b, form.codes.count == form.medians.count * b,
              form.scales.count == form.medians.count else { return nil }
        sealed = form.medians.count
        // Taken as they are (a checkpoint's decoder sizes them exactly): no copy.
        codes = form.codes
        medians = form.medians
        scales = form.scales
        open = form.open
        if !open.isEmpty { open.reserveCapacity(b) }
        if sealed > 0 {
            let used = scales.map(Double.init).sorted()
            resolution = 32 * used[used.count / 2]
        }
    }

    mutating func append(_ value: Float) {
        // A Double beyond Float's range arrives as an infinity: keep the largest finite value,
        // so one absurd point does not turn its whole block into NaN.
        let v = value.isInfinite ? (value > 0 ? Float.greatestFiniteMagnitude : -Float.greatestFiniteMagnitude) : value
        if open.isEmpty { open.reserveCapacity(Self.blockSize) }
        open.append(v)
        if open.count == Self.blockSize { seal() }
    }

    var bytesHeld: Int {
        codes.capacity * MemoryLayout<Float16>.stride + (medians.capacity + scales.capacity + open.capacity) * MemoryLayout<Float>.stride
    }

    private func stored(at p: Int) -> Float {
        let b = Self.blockSize
        let inSealed = sealed * b
        if p >= inSealed { return open[p - inSealed] }
        var slot = first + p / b        // no `%`: this runs for every value the check reads
        if slot >= maxBlocks { slot -= maxBlocks }
        return Self.decode(codes[slot * b + p % b], median: medians[slot], scale: scales[slot])
    }

    private static func exact<T>(_ a: [T]) -> [T] {
        [T](unsafeUninitializedCapacity: a.count) { buffer, initialized in
            _ = buffer.initialize(from: a)
            initialized = a.count
        }
    }

    static func decode(_ code: Float16, median: Float, scale: Float) -> Float {
        let v = Double(median) + Double(code.widened) * Double(scale)
        return Float(min(max(v, -Double(Float.greatestFiniteMagnitude)), Double(Float.greatestFiniteMagnitude)))
    }

    /// A full block as the ring seals it: its median, the power of two its offsets are in, and
    /// the offsets. `decode` of each gives the values the ring holds (snapshots use the same).
    static func seal(_ block: [Float]) -> (median: Float, scale: Float, codes: [Float16]) {
        let median = middle(block)
        var widest = 0.0
        for v in block where v == v { widest = max(widest, abs(Double(v) - Double(median))) }
        // The smallest power of two that brings the widest offset to 32,768 or below (Float16
        // reaches 65,504), so the offsets keep all eleven bits Float16 has.
        var scale = 1.0
        if widest > 0 {
            let e = (widest / 32768).exponent
            scale = Double(sign: .plus, exponent: e, significand: 1)
            if scale * 32768 < widest { scale *= 2 }
        }
        return (median, Float(scale), block.map { Float16((Double($0) - Double(median)) / scale) })
    }

    /// `block.sorted()[block.count / 2]` by selection (linear, not a sort: a restart and a
    /// checkpoint seal every block of every series once).
    static func middle(_ block: [Float]) -> Float {
        let k = block.count / 2
        // NaN orders nothing: keep the sort's answer for such a block.
        guard !block.isEmpty, !block.contains(where: { $0 != $0 }) else { return block.sorted()[k] }
        var a = block
        return a.withUnsafeMutableBufferPointer { p in
            var lo = 0, hi = p.count - 1
            while lo < hi {
                let x = p[lo], y = p[(lo + hi) / 2], z = p[hi]
                let pivot = max(min(x, y), min(max(x, y), z))
                var i = lo, j = hi
                while i <= j {
                    while p[i] < pivot { i += 1 }
                    while p[j] > pivot { j -= 1 }
                    if i <= j { p.swapAt(i, j); i += 1; j -= 1 }
                }
                // [lo, j] <= pivot <= [i, hi], and what lies between equals the pivot.
                if k <= j { hi = j } else if k >= i { lo = i } else { return pivot }
            }
            return p[k]
        }
    }

    private mutating func seal() {
        let b = Self.blockSize
        let (median, scale, blockCodes) = Self.seal(open)
        let slot: Int
        if sealed < maxBlocks {
            slot = (first + sealed) % maxBlocks
            sealed += 1
            if codes.count < maxBlocks * b {
                codes.append(contentsOf: repeatElement(0, count: b))
                medians.append(0)
                scales.append(0)
                // Full size reached: drop the spare capacity that array growth left.
                if codes.count == maxBlocks * b {
                    codes = Self.exact(codes)
                    medians = Self.exact(medians)
                    scales = Self.exact(scales)
                }
            }
        } else {
            slot = first
            first = (first + 1) % maxBlocks
        }
        medians[slot] = median
        scales[slot] = scale
        for k in 0..<b { codes[slot * b + k] = blockCodes[k] }
        open.removeAll(keepingCapacity: true)
        // A value is rounded by at most half a Float16 step at its offset, 8 scales at the widest
        // (offsets up to 32,768 have steps of 16); a difference of two values, twice that; and a
        // block of half or twice the typical width, within a factor of two: 32 typical scales.
        // Blocks with a spike have a scale far from the typical one, but their other values sit
        // near the median and are rounded far less.
        let used = (0..<sealed).map { Double(scales[(first + $0) % maxBlocks]) }.sorted()
        resolution = 32 * used[used.count / 2]
    }
}
