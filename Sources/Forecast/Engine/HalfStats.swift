import CKernels

/// `RollingStats` in two bytes a value, for the windowed checks' histories of differences
/// (three of them per series, a thousand values each).
///
/// A difference is in the series' own units, anything from 1e-6 to 1e12, which Float16 alone
/// cannot hold (it reaches 65,504). So the values are kept as Float16 multiples of a power of
/// two, `unit`, set so the largest value held lies in [2^14, 2^15): every value within 2^28 of
/// the largest keeps Float16's eleven significant bits, and scaling by a power of two is exact.
/// A value beyond the range raises the unit at once; once per `capacity` values the unit is
/// lowered again if the largest value has left. The sums run in Float64 over the values as held
/// and are recomputed whenever the unit changes, so removing a value removes exactly what adding
/// it added.
struct HalfStats: Sendable {
    private var ring: Ring<Float16>
    private(set) var sum = 0.0
    private var sumSq = 0.0
    /// unit = 2^exponent; nil until a nonzero value arrives (zeros are held exactly).
    private var exponent: Int?
    private var sinceReview = 0

    init(capacity: Int) {
        ring = Ring(capacity: capacity)
    }

    var capacity: Int { ring.capacity }
    var count: Int { ring.count }
    var mean: Double { sum / Double(max(ring.count, 1)) }
    /// Population variance (never negative, despite rounding of the running sums).
    var variance: Double { max(sumSq / Double(max(ring.count, 1)) - mean * mean, 0) }
    /// Oldest first.
    var values: [Double] { let u = unit; return ring.elements.map { $0.asDouble * u } }
    var bytesHeld: Int { ring.bytesHeld }
    /// Values held with max(|v − median| − floor, 0), rounded to Float, at least `distance`
    /// (F16C: Swift's own Float16 conversions are a library call a value).
    func count(fartherFrom median: Double, than distance: Float, floor: Double) -> Int {
        let u = unit
        return ring.withStoredBuffer { b in
            b.withMemoryRebound(to: UInt16.self) { codes in
                codes.isEmpty ? 0 : fk_halves_count_far(codes.baseAddress!, codes.count, u, median, floor, distance)
            }
        }
    }

    private var unit: Double { exponent.map(Self.power) ?? 1 }

    private static func power(_ e: Int) -> Double { Double(sign: .plus, exponent: e, significand: 1) }

    /// The exponent that puts |v| in [2^14, 2^15).
    private static func exponent(for v: Double) -> Int { max(v.exponent - 14, -1000) }

    mutating func push(_ value: Double) {
        if value.isFinite && value != 0 {
            let need = Self.exponent(for: value)
            if exponent == nil { exponent = need } else if need > exponent! { rescale(to: need) }
        }
        let u = unit
        let held = Float16(value / u)
        if let old = ring.append(held) {
            let o = old.asDouble * u
            sum -= o
            sumSq -= o * o
        }
        let v = held.asDouble * u
        sum += v
        sumSq += v * v
        sinceReview += 1
        if sinceReview >= ring.capacity {
            sinceReview = 0
            lowerUnitIfRoom()
        }
    }

    private mutating func lowerUnitIfRoom() {
        guard let e = exponent else { return }
        var largest: Float16 = 0
        ring.forEachStored { if $0.isFinite { largest = max(largest, abs($0)) } }
        guard largest > 0 else { return }
        let need = e + Self.exponent(for: largest.asDouble)
        if need < e { rescale(to: need) }
    }

    /// Re-expresses every held value in units of 2^e (exact but for values that fall below
    /// Float16's range when the unit rises 2^28-fold or more) and recomputes the sums.
    private mutating func rescale(to e: Int) {
        let factor = Self.power(exponent! - e)
        ring.update { $0 = Float16($0.asDouble * factor) }
        exponent = e
        let u = unit
        sum = 0
        sumSq = 0
        ring.forEachStored { h in
            let v = h.asDouble * u
            sum += v
            sumSq += v * v
        }
    }
}
