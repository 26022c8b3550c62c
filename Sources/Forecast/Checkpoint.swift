import Foundation

/// Why a checkpoint could not be decoded. Decoding never traps and never returns a model that
/// differs from what was encoded: any damage is one of these.
public enum CheckpointError: Error, Equatable, CustomStringConvertible {
    case truncated(needed: Int, available: Int)
    case badMagic
    case unsupportedVersion(found: UInt32, supported: UInt32)
    case checksumMismatch(stored: UInt32, computed: UInt32)
    case trailingBytes(Int)
    case malformed(String)

    public var description: String {
        switch self {
        case .truncated(let n, let a): return "checkpoint truncated: need \(n) bytes, have \(a)"
        case .badMagic: return "not a forecastd checkpoint (bad magic)"
        case .unsupportedVersion(let f, let s): return "checkpoint format version \(f) is not supported (this build reads 1 to \(s))"
        case .checksumMismatch(let s, let c): return "checkpoint corrupted: CRC32 stored \(String(s, radix: 16)), computed \(String(c, radix: 16))"
        case .trailingBytes(let n): return "checkpoint has \(n) unexpected trailing bytes"
        case .malformed(let why): return "checkpoint malformed: \(why)"
        }
    }
}

/// Everything needed to resume training or serve a model: config, weights, Adam state, scaler.
///
/// Binary layout (all integers and floats little-endian; floats as IEEE-754 bit patterns, so a
/// round trip is bit-identical):
///
///     magic          8 bytes  "FCSTDCKP"
///     formatVersion  u32      (= Checkpoint.formatVersion)
///     payloadLength  u64      bytes of payload that follow
///     payload:
///       cell u8, inputSize u32, layerCount u32, hiddenSizes u32 * layerCount, dropout f32
///       (format 2 only) outputSize u32, seasonalSkip u8
///       parameterCount u64, parameters f32 * parameterCount
///       adam: lr f32, beta1 f32, beta2 f32, eps f32, step u64, stateCount u64 (0 or
///             parameterCount), m f32 * stateCount, v f32 * stateCount
///       scaler: kind u8, mean f64, std f64
///     crc32          u32      CRC-32 of every byte before it (magic .. payload)
///
/// The version is checked before the checksum so an old/new file gets a version error, not a
/// "corrupted" one. Format 1 is written for next-step models (so their checkpoints stay what
/// they were), format 2 for multi-step heads and seasonal skips; both are read.
public struct Checkpoint: Sendable, Equatable {
    public static let formatVersion: UInt32 = 2
    static let magic: [UInt8] = Array("FCSTDCKP".utf8)
    static let headerSize = 8 + 4 + 8
    /// Largest input or hidden size a checkpoint may declare.
    static let maxSize = 1 << 16

    public var config: ModelConfig
    public var parameters: [Float]
    public var adam: Adam
    public var scaler: Scaler

    public init(config: ModelConfig, parameters: [Float], adam: Adam = Adam(), scaler: Scaler = Scaler()) {
        self.config = config
        self.parameters = parameters
        self.adam = adam
        self.scaler = scaler
    }

    public init(model: Model, adam: Adam = Adam(), scaler: Scaler = Scaler()) {
        self.init(config: model.config, parameters: model.parameters, adam: adam, scaler: scaler)
    }

    public func makeModel() throws -> Model {
        try Model(config: config, parameters: parameters)
    }

    // MARK: encode

    public func encoded() -> [UInt8] {
        var p = ByteWriter()
        p.u8(config.cell.rawValue)
        p.u32(UInt32(config.inputSize))
        p.u32(UInt32(config.hiddenSizes.count))
        for h in config.hiddenSizes { p.u32(UInt32(h)) }
        p.f32(config.dropout)
        if !config.isNextStepOnly {
            p.u32(UInt32(config.outputSize))
            p.u8(config.seasonalSkip ? 1 : 0)
        }
        p.u64(UInt64(parameters.count))
        p.floats(parameters)
        p.f32(adam.learningRate); p.f32(adam.beta1); p.f32(adam.beta2); p.f32(adam.epsilon)
        p.u64(UInt64(adam.step))
        p.u64(UInt64(adam.m.count))
        p.floats(adam.m)
        p.floats(adam.v)
        p.u8(scaler.kind.rawValue)
        p.f64(scaler.mean)
        p.f64(scaler.std)

        var out = ByteWriter()
        out.bytes.reserveCapacity(Self.headerSize + p.bytes.count + 4)
        out.bytes += Self.magic
        out.u32(config.isNextStepOnly ? 1 : Self.formatVersion)
        out.u64(UInt64(p.bytes.count))
        out.bytes += p.bytes
        out.u32(CRC32.checksum(out.bytes))
        return out.bytes
    }

    public func encodedData() -> Data { Data(encoded()) }

    // MARK: decode

    public init(decoding data: Data) throws {
        try self.init(decoding: [UInt8](data))
    }

    public init(decoding bytes: [UInt8]) throws {
        guard bytes.count >= Self.magic.count else {
            throw CheckpointError.truncated(needed: Self.headerSize + 4, available: bytes.count)
        }
        guard Array(bytes[0..<8]) == Self.magic else { throw CheckpointError.badMagic }
        var header = ByteReader(bytes, from: 8, to: bytes.count)
        let version = try header.u32()
        guard version == 1 || version == Self.formatVersion else {
            throw CheckpointError.unsupportedVersion(found: version, supported: Self.formatVersion)
        }
        let payloadLength = try header.u64()
        let (total, overflow) = UInt64(Self.headerSize).addingReportingOverflow(payloadLength)
        guard !overflow, total <= UInt64(Int.max - 4) else { throw CheckpointError.malformed("payload length \(payloadLength)") }
        let end = Int(total)
        guard bytes.count >= end + 4 else { throw CheckpointError.truncated(needed: end + 4, available: bytes.count) }
        guard bytes.count == end + 4 else { throw CheckpointError.trailingBytes(bytes.count - end - 4) }
        var crcReader = ByteReader(bytes, from: end, to: end + 4)
        let stored = try crcReader.u32()
        let computed = CRC32.checksum(bytes[0..<end])
        guard stored == computed else { throw CheckpointError.checksumMismatch(stored: stored, computed: computed) }

        var r = ByteReader(bytes, from: Self.headerSize, to: end)
        guard let cell = CellKind(rawValue: try r.u8()) else { throw CheckpointError.malformed("unknown cell kind") }
        let inputSize = Int(try r.u32())
        let layerCount = Int(try r.u32())
        guard layerCount >= 1, layerCount <= ModelConfig.maxLayers else {
            throw CheckpointError.malformed("layer count \(layerCount)")
        }
        var hidden: [Int] = []
        for _ in 0..<layerCount { hidden.append(Int(try r.u32())) }
        // Sizes are checked before anything is computed from them: a corrupted file whose CRC
        // happens to match must give an error, never an overflow trap or a huge allocation.
        guard inputSize >= 1, inputSize <= Self.maxSize, hidden.allSatisfy({ $0 >= 1 && $0 <= Self.maxSize }) else {
            throw CheckpointError.malformed("sizes input \(inputSize), hidden \(hidden) (at most \(Self.maxSize) each)")
        }
        var config = ModelConfig(cell: cell, inputSize: inputSize, hiddenSizes: hidden, dropout: try r.f32())
        if version >= 2 {
            let outputs = Int(try r.u32())
            guard outputs >= 1, outputs <= Self.maxSize else { throw CheckpointError.malformed("output size \(outputs)") }
            config.outputSize = outputs
            switch try r.u8() {
            case 0: config.seasonalSkip = false
            case 1: config.seasonalSkip = true
            case let b: throw CheckpointError.malformed("seasonal skip flag \(b)")
            }
        }
        do { try config.validate() } catch { throw CheckpointError.malformed("\(error)") }
        let expected = ParameterLayout(config: config).count
        let pCount = try r.u64()
        guard pCount == UInt64(expected) else {
            throw CheckpointError.malformed("config needs \(expected) parameters, file has \(pCount)")
        }
        guard expected <= r.remaining / 4 else { throw CheckpointError.truncated(needed: expected * 4, available: r.remaining) }
        let params = try r.floats(expected)
        let lr = try r.f32(), b1 = try r.f32(), b2 = try r.f32(), eps = try r.f32()
        let step = try r.u64()
        let stateCount = try r.u64()
        guard stateCount == 0 || stateCount == UInt64(expected), step <= UInt64(Int.max) else {
            throw CheckpointError.malformed("Adam state of \(stateCount) for \(expected) parameters")
        }
        guard Int(stateCount) <= r.remaining / 8 else { throw CheckpointError.truncated(needed: Int(stateCount) * 8, available: r.remaining) }
        let m = try r.floats(Int(stateCount)), v = try r.floats(Int(stateCount))
        guard let kind = TransformKind(rawValue: try r.u8()) else { throw CheckpointError.malformed("unknown transform kind") }
        let scaler = Scaler(kind: kind, mean: try r.f64(), std: try r.f64())
        guard r.remaining == 0 else { throw CheckpointError.malformed("\(r.remaining) unread payload bytes") }
        self.config = config
        self.parameters = params
        self.adam = try Adam(learningRate: lr, beta1: b1, beta2: b2, epsilon: eps, m: m, v: v, step: Int(step))
        self.scaler = scaler
    }
}

private struct ByteWriter {
    var bytes: [UInt8] = []
    mutating func u8(_ x: UInt8) { bytes.append(x) }
    mutating func u32(_ x: UInt32) { withUnsafeBytes(of: x.littleEndian) { bytes += $0 } }
    mutating func u64(_ x: UInt64) { withUnsafeBytes(of: x.littleEndian) { bytes += $0 } }
    mutating func f32(_ x: Float) { u32(x.bitPattern) }
    mutating func f64(_ x: Double) { u64(x.bitPattern) }
    mutating func floats(_ xs: [Float]) {
        bytes.reserveCapacity(bytes.count + xs.count * 4)
        for x in xs { u32(x.bitPattern) }
    }
}

/// Bounds-checked reads: every read checks what is left first, so a lying length field
/// produces `.truncated`, never an out-of-range trap or a huge allocation.
private struct ByteReader {
    let bytes: [UInt8]
    var pos: Int
    let end: Int
    init(_ bytes: [UInt8], from: Int, to: Int) { self.bytes = bytes; pos = from; self.end = to }
    var remaining: Int { end - pos }

    mutating func take(_ n: Int) throws -> Int {
        guard n >= 0, n <= remaining else { throw CheckpointError.truncated(needed: pos + n, available: end) }
        defer { pos += n }
        return pos
    }
    mutating func u8() throws -> UInt8 { bytes[try take(1)] }
    mutating func u32() throws -> UInt32 {
        let p = try take(4)
        var x: UInt32 = 0
        for i in 0..<4 { x |= UInt32(bytes[p + i]) << (8 * UInt32(i)) }
        return x
    }
    mutating func u64() throws -> UInt64 {
        let p = try take(8)
        var x: UInt64 = 0
        for i in 0..<8 { x |= UInt64(bytes[p + i]) << (8 * UInt64(i)) }
        return x
    }
    mutating func f32() throws -> Float { Float(bitPattern: try u32()) }
    mutating func f64() throws -> Double { Double(bitPattern: try u64()) }
    mutating func floats(_ n: Int) throws -> [Float] {
        guard n <= remaining / 4 else { throw CheckpointError.truncated(needed: pos + n * 4, available: end) }
        var out = [Float](repeating: 0, count: n)
        for i in 0..<n { out[i] = try f32() }
        return out
    }
}
