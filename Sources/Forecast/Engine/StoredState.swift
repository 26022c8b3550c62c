/// A stored engine state as a restart reads it: its bytes in parts, in order, each pulled when
/// the decoder reaches it. At 100,000 series a state is several GB; a restart that read all of
/// it before decoding held it beside the engine it was rebuilding (the daemon's memory at its
/// peak, 8.3 GB against 4.6 GB after). Pulled a part at a time, a restart holds one part.
public struct StoredState {
    /// Names the state in warnings ("model * version 12").
    public let label: String
    /// Bytes in all parts together (the decoder finds the trailing checksum from it).
    public let count: Int
    private let open: () -> () throws -> [UInt8]?

    /// `parts` starts a read from the first part: the function it returns gives the parts in
    /// order and nil after the last. An error that function throws is the source's (a lost
    /// connection, a missing chunk), not the state's: it is passed on as `ReadFailed` rather
    /// than reported as an unusable state.
    public init(label: String, count: Int, parts: @escaping () -> () throws -> [UInt8]?) {
        self.label = label
        self.count = count
        open = parts
    }

    /// A state held whole already (one part).
    public init(label: String, bytes: [UInt8]) {
        self.init(label: label, count: bytes.count) {
            var given: [UInt8]? = bytes
            return {
                defer { given = nil }
                return given
            }
        }
    }

    /// The source could not give the state's next part: the state itself may be fine, so it is
    /// not thrown away (a restart that cannot read it fails and is tried again).
    public struct ReadFailed: Error, CustomStringConvertible {
        public let label: String
        public let underlying: any Error
        public var description: String { "\(label): reading the engine state failed: \(underlying)" }
    }

    /// A read from the first part on.
    public struct Parts {
        let label: String
        let pull: () throws -> [UInt8]?
        /// The next part (nil after the last).
        public func next() throws -> [UInt8]? {
            do { return try pull() } catch { throw ReadFailed(label: label, underlying: error) }
        }
    }

    public func parts() -> Parts { Parts(label: label, pull: open()) }

    /// Every part, joined (for callers that need the bytes themselves).
    public func bytes() throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(count)
        let p = parts()
        while let part = try p.next() { out += part }
        return out
    }
}
