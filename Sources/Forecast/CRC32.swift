/// CRC-32 (IEEE 802.3, the polynomial of zlib and PNG) over a checkpoint's bytes.
enum CRC32 {
    /// `tables[k * 256 + b]`: the CRC of byte `b` followed by `k` zero bytes (slicing by 8).
    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 { t[k * 256 + i] = (t[(k - 1) * 256 + i] >> 8) ^ t[Int(t[(k - 1) * 256 + i] & 0xFF)] }
        }
        return t
    }()

    /// Eight bytes per step on contiguous bytes: a checkpoint of 100,000 series is 2.6 GB,
    /// checked once when written and once when read.
    static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        if let c = bytes.withContiguousStorageIfAvailable({ sliced($0, 0xFFFF_FFFF) ^ 0xFFFF_FFFF }) { return c }
        return bytewise(bytes)
    }

    /// The checksum of bytes that arrive in parts: a restart reads a stored state a chunk at a
    /// time and checks it as it goes, never holding all of it.
    struct Running {
        private var register: UInt32 = 0xFFFF_FFFF
        mutating func update(_ part: UnsafeBufferPointer<UInt8>) { register = CRC32.sliced(part, register) }
        var value: UInt32 { register ^ 0xFFFF_FFFF }
    }

    static func bytewise<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        tables.withUnsafeBufferPointer { t in
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
            return c ^ 0xFFFF_FFFF
        }
    }

    /// `register`: the CRC's register before these bytes (not inverted).
    private static func sliced(_ p: UnsafeBufferPointer<UInt8>, _ register: UInt32) -> UInt32 {
        tables.withUnsafeBufferPointer { t in
            var c = register
            var i = 0
            let n = p.count
            guard let base = p.baseAddress else { return register }
            let raw = UnsafeRawPointer(base)
            while i + 8 <= n {
                let one = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt32.self)) ^ c
                let two = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
                c = t[7 * 256 + Int(one & 0xFF)] ^ t[6 * 256 + Int((one >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((one >> 16) & 0xFF)] ^ t[4 * 256 + Int(one >> 24)]
                    ^ t[3 * 256 + Int(two & 0xFF)] ^ t[2 * 256 + Int((two >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((two >> 16) & 0xFF)] ^ t[Int(two >> 24)]
                i += 8
            }
            while i < n {
                c = t[Int((c ^ UInt32(base[i])) & 0xFF)] ^ (c >> 8)
                i += 1
            }
            return c
        }
    }
}
