import Foundation

/// How raw values are mapped to model space before windows are built. Raw values are stored
/// in checkpoints: never renumber, only append.
public enum TransformKind: UInt8, Sendable, Equatable, Codable {
    /// model = raw (mean/std ignored)
    case identity = 0
    /// model = (raw - mean) / std
    case zScore = 1
    /// model = (log1p(raw) - mean) / std, for non-negative heavy-tailed series
    case log1pZScore = 2
}

/// The normalisation saved with a model, so predictions can be mapped back to raw units.
public struct Scaler: Sendable, Equatable, Codable {
    public var kind: TransformKind
    public var mean: Double
    public var std: Double

    public init(kind: TransformKind = .zScore, mean: Double = 0, std: Double = 1) {
        self.kind = kind
        self.mean = mean
        self.std = std
    }

    /// Fit mean / population std on `values` (after log1p for .log1pZScore). A constant series
    /// gets std 1 so transforms stay finite.
    public init(fitting values: [Float], kind: TransformKind = .zScore) {
        self.kind = kind
        guard kind != .identity, !values.isEmpty else { mean = 0; std = 1; return }
        let xs = values.map { kind == .log1pZScore ? Self.log1p(Double($0)) : Double($0) }
        let m = xs.reduce(0, +) / Double(xs.count)
        let v = xs.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(xs.count)
        mean = m
        std = v > 0 ? v.squareRoot() : 1
    }

    public func transform(_ x: Float) -> Float {
        switch kind {
        case .identity: return x
        case .zScore: return Float((Double(x) - mean) / std)
        case .log1pZScore: return Float((Self.log1p(Double(x)) - mean) / std)
        }
    }

    public func inverse(_ z: Float) -> Float {
        switch kind {
        case .identity: return z
        case .zScore: return Float(Double(z) * std + mean)
        case .log1pZScore: return Float(Self.expm1(Double(z) * std + mean))
        }
    }

    public func transform(_ xs: [Float]) -> [Float] { xs.map(transform) }
    public func inverse(_ zs: [Float]) -> [Float] { zs.map(inverse) }

    private static func log1p(_ x: Double) -> Double { Foundation.log1p(x) }
    private static func expm1(_ x: Double) -> Double { Foundation.expm1(x) }
}
