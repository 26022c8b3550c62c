/// A series' last `capacity` raw values, oldest first, in four bytes each while they are decimals
/// of at most nine digits (as sensors, meters and prices write them: 21.5, 1013.25, 0.0042), else
/// in eight: they are the model's inputs and a series' largest array after the checks.
///
/// Lossless by construction. A value is held as an integer m with a count of decimals k only when
/// m / 10^k gives back the very `Double`: IEEE division is correctly rounded, so the `Double`
/// nearest a decimal (what parsing "21.5" or reading a numeric column gives) is recovered from
/// the decimal, and every value is checked as it arrives. A value with more decimals than those
/// held so far re-expresses them with more (the same rationals, so the same `Double`s); the first
/// value that is no such decimal (a computed one, a −0, a NaN) turns the ring to `Double`s.
struct DecimalRing: Sendable {
    let capacity: Int
    private var codes: Ring<Int32>
    private var plain: Ring<Double>
    /// Decimals of `codes`; nil once the values are held as `Double`s.
    private(set) var decimals: Int? = 0

    static let maxDecimals = 9
    private static let powers: [Double] = (0...maxDecimals).map { k in (0..<k).reduce(1.0) { p, _ in p * 10 } }

    init(capacity: Int) {
        self.capacity = capacity
        codes = Ring(capacity: capacity)
        plain = Ring(capacity: capacity)
    }

    /// A ring holding the last `capacity` of `values` (oldest first).
    init(capacity: Int, restoring values: [Double]) {
        self.init(capacity: capacity)
        let kept = values.suffix(capacity)
        // Decimals found first, so the codes are written once; `Double`s are taken as they are.
        var k: Int? = 0
        for v in kept where k != nil { k = Self.decimals(of: v, atLeast: k!) }
        var held: [Int32] = []
        if let k {
            held.reserveCapacity(kept.count)
            for v in kept {
                guard let c = Self.code(v, decimals: k) else { break }   // too many digits with k decimals
                held.append(c)
            }
        }
        if let k, held.count == kept.count {
            codes = Ring(capacity: capacity, restoring: held)
            decimals = k
        } else {
            plain = Ring(capacity: capacity, restoring: Array(kept))
            decimals = nil
        }
    }

    var count: Int { decimals == nil ? plain.count : codes.count }
    var isEmpty: Bool { count == 0 }
    var last: Double? { isEmpty ? nil : self[count - 1] }

    /// The i-th value, oldest first.
    subscript(i: Int) -> Double {
        guard let k = decimals else { return plain[i] }
        return Double(codes[i]) / Self.powers[k]
    }

    /// Every value, oldest first.
    var elements: [Double] { decimals == nil ? plain.elements : (0..<count).map { self[$0] } }

    var bytesHeld: Int { codes.bytesHeld + plain.bytesHeld }

    mutating func append(_ v: Double) {
        guard let k = decimals else {
            plain.append(v)
            return
        }
        if let c = Self.code(v, decimals: k) {
            codes.append(c)
            return
        }
        if let more = Self.decimals(of: v, atLeast: k + 1), rescale(to: more) {
            codes.append(Self.code(v, decimals: more)!)
            return
        }
        // Held as `Double`s from now on (the values so far, exactly as they were).
        plain = Ring(capacity: capacity, restoring: elements)
        plain.append(v)
        codes = Ring(capacity: capacity)
        decimals = nil
    }

    /// The code of `v` with `k` decimals, if it gives back `v` bit for bit.
    private static func code(_ v: Double, decimals k: Int) -> Int32? {
        let p = powers[k]
        let scaled = (v * p).rounded()
        guard abs(scaled) <= Double(Int32.max) else { return nil }   // also NaN and infinities
        let c = Int32(scaled)
        return (Double(c) / p).bitPattern == v.bitPattern ? c : nil
    }

    /// The fewest decimals from `k` on that hold `v`; nil when none up to `maxDecimals` does.
    private static func decimals(of v: Double, atLeast k: Int) -> Int? {
        guard k <= maxDecimals else { return nil }
        for d in k...maxDecimals where code(v, decimals: d) != nil { return d }
        return nil
    }

    /// Re-expresses the codes with `k` decimals; false (nothing changed) if one would overflow.
    private mutating func rescale(to k: Int) -> Bool {
        let factor = Int32(Self.powers[k - decimals!])
        var fits = true
        codes.forEachStored { c in if fits && c.multipliedReportingOverflow(by: factor).overflow { fits = false } }
        guard fits else { return false }
        codes.update { $0 *= factor }
        decimals = k
        return true
    }
}
