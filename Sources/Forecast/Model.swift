import Foundation

/// A stacked LSTM/GRU with a Linear(H_last, outputSize) head on the last time step (and an
/// optional per-output seasonal skip, see `ModelConfig`).
/// All parameters live in one flat buffer laid out by `ParameterLayout` (PyTorch order).
/// Value type: copying a Model copies its weights (copy-on-write).
public struct Model: Sendable {
    public let config: ModelConfig
    public let layout: ParameterLayout
    /// Flat parameters. Any mutation drops the cached inference workspace (it holds a
    /// pre-transposed copy of the recurrent weights).
    public var parameters: [Float] {
        didSet { cache = PredictorCache() }
    }
    private var cache = PredictorCache()

    /// PyTorch initialisation: every weight and bias of a layer with hidden size H is
    /// uniform(-1/sqrt(H), 1/sqrt(H)); the head is nn.Linear's: uniform(-1/sqrt(fan_in), ...)
    /// for both weight and bias (fan_in = H_last). Draws are taken in layout order. The seasonal
    /// skip starts at 0 (no draws), so a model starts as the plain LSTM and learns how much of
    /// the season to use.
    public init(config: ModelConfig, seed: UInt64) throws {
        try config.validate()
        self.config = config
        self.layout = ParameterLayout(config: config)
        var rng = SeededGenerator(seed: seed)
        var p = [Float](repeating: 0, count: layout.count)
        for (k, l) in layout.layers.enumerated() {
            let bound = 1 / Float(config.hiddenSizes[k]).squareRoot()
            let end = l.biasHH + l.gateWidth
            for i in l.weightIH..<end { p[i] = rng.nextUniform(bound: bound) }
        }
        let fanIn = config.hiddenSizes.last!
        let bound = 1 / Float(fanIn).squareRoot()
        for i in layout.fcWeight..<(layout.fcBias + layout.outputs) { p[i] = rng.nextUniform(bound: bound) }
        self.parameters = p
    }

    /// A model with given parameters (e.g. from a checkpoint).
    public init(config: ModelConfig, parameters: [Float]) throws {
        try config.validate()
        let layout = ParameterLayout(config: config)
        guard parameters.count == layout.count else {
            throw ForecastError.shapeMismatch("config needs \(layout.count) parameters, got \(parameters.count)")
        }
        self.config = config
        self.layout = layout
        self.parameters = parameters
    }

    public var parameterCount: Int { layout.count }

    /// The tensor with a PyTorch name ("lstm.weight_ih_l0", "fc.bias", ...), row-major.
    public func parameter(named name: String) throws -> [Float] {
        guard let e = layout.entry(named: name) else { throw ForecastError.unknownParameter(name) }
        return Array(parameters[e.offset..<(e.offset + e.count)])
    }

    /// Overwrite one tensor by PyTorch name (used to load PyTorch weights in tests and imports).
    public mutating func setParameter(named name: String, to values: [Float]) throws {
        guard let e = layout.entry(named: name) else { throw ForecastError.unknownParameter(name) }
        guard values.count == e.count else {
            throw ForecastError.shapeMismatch("\(name) has \(e.count) elements, got \(values.count)")
        }
        parameters.replaceSubrange(e.offset..<(e.offset + e.count), with: values)
    }

    /// Inference on `batch` windows, flat [batch][seqLength][inputSize] (with a seasonal skip,
    /// `seasonal` is [batch][outputSize]). Returns [batch][outputSize] predictions. Reuses a
    /// cached workspace; concurrent callers on the same model value fall back to a private one
    /// instead of waiting.
    public func predict(_ windows: [Float], seasonal: [Float]? = nil, batch: Int, seqLength: Int) -> [Float] {
        cache.withPredictor(model: self) { $0.predict(windows, seasonal: seasonal, batch: batch, seqLength: seqLength) }
    }

    public func predict(_ windows: UnsafeBufferPointer<Float>, batch: Int, seqLength: Int) -> [Float] {
        cache.withPredictor(model: self) { p in
            var out = [Float](repeating: 0, count: batch * config.outputSize)
            out.withUnsafeMutableBufferPointer { p.predict(windows, seasonal: nil, batch: batch, seqLength: seqLength, into: $0) }
            return out
        }
    }
}

extension Model: Equatable {
    public static func == (a: Model, b: Model) -> Bool {
        a.config == b.config && a.parameters == b.parameters
    }
}

/// Lazily built Predictor shared by copies of one Model value until its parameters change.
final class PredictorCache: @unchecked Sendable {
    private let lock = NSLock()
    private var predictor: Predictor?

    func withPredictor<R>(model: Model, _ body: (Predictor) -> R) -> R {
        guard lock.try() else { return body(Predictor(model: model)) }
        defer { lock.unlock() }
        if predictor == nil { predictor = Predictor(model: model) }
        return body(predictor!)
    }
}
