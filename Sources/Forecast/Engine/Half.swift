/// Float16 → Float by moving bits. Without F16C in the Swift code (the binary runs on any x86-64),
/// `Float(h)` is a library call; the checks widen a few hundred stored values per point, where
/// that call was a fifth of the engine's time. Exact for every Float16, NaNs and subnormals too.
extension Float16 {
    @inline(__always) var widened: Float {
        let h = UInt32(bitPattern)
        let sign = (h & 0x8000) << 16
        let exponent = (h >> 10) & 0x1F
        let mantissa = h & 0x3FF
        if exponent == 0x1F { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
        if exponent != 0 { return Float(bitPattern: sign | ((exponent + 112) << 23) | (mantissa << 13)) }
        // Zero or subnormal: mantissa × 2^-24, exact in Float.
        let magnitude = Float(mantissa) * 0x1p-24
        return sign != 0 ? -magnitude : magnitude
    }
}

/// What a `RollingStats` stores its values as.
protocol StoredFloat: BinaryFloatingPoint, Sendable {
    var asDouble: Double { get }
}

extension Float: StoredFloat {
    @inline(__always) var asDouble: Double { Double(self) }
}

extension Float16: StoredFloat {
    @inline(__always) var asDouble: Double { Double(widened) }
}
