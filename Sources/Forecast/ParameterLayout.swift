/// Where each tensor lives in the model's single flat parameter buffer. One buffer means Adam,
/// gradient clipping, checkpoints and gradient reduction across threads are one loop each.
///
/// Order (and so the initialisation order) mirrors PyTorch's `named_parameters()`:
/// per layer k: weight_ih_lk [G*H][in], weight_hh_lk [G*H][H], bias_ih_lk [G*H], bias_hh_lk [G*H];
/// then fc.weight [O][H_last], fc.bias [O] (O = outputSize) and, with a seasonal skip,
/// seasonal.weight [O].  Both biases are kept, as in PyTorch, so their
/// gradients and Adam state match PyTorch one to one.
public struct ParameterLayout: Sendable, Equatable {
    public struct Layer: Sendable, Equatable {
        public let inputSize: Int
        public let hiddenSize: Int
        public let gateCount: Int
        public let weightIH: Int
        public let weightHH: Int
        public let biasIH: Int
        public let biasHH: Int
        public var gateWidth: Int { gateCount * hiddenSize }
    }

    public struct Entry: Sendable, Equatable {
        public let name: String
        public let offset: Int
        public let shape: [Int]
        public var count: Int { shape.reduce(1, *) }
    }

    public let layers: [Layer]
    public let fcWeight: Int
    public let fcBias: Int
    /// Offset of seasonal.weight, nil without a seasonal skip.
    public let seasonalWeight: Int?
    public let outputs: Int
    public let count: Int
    public let entries: [Entry]

    public init(config: ModelConfig) {
        let g = config.cell.gateCount
        let prefix = config.cell == .lstm ? "lstm" : "gru"
        var layers: [Layer] = []
        var entries: [Entry] = []
        var offset = 0
        var input = config.inputSize
        for (k, h) in config.hiddenSizes.enumerated() {
            let l = Layer(
                inputSize: input, hiddenSize: h, gateCount: g,
                weightIH: offset, weightHH: offset + g * h * input,
                biasIH: offset + g * h * (input + h), biasHH: offset + g * h * (input + h + 1))
            entries.append(Entry(name: "\(prefix).weight_ih_l\(k)", offset: l.weightIH, shape: [g * h, input]))
            entries.append(Entry(name: "\(prefix).weight_hh_l\(k)", offset: l.weightHH, shape: [g * h, h]))
            entries.append(Entry(name: "\(prefix).bias_ih_l\(k)", offset: l.biasIH, shape: [g * h]))
            entries.append(Entry(name: "\(prefix).bias_hh_l\(k)", offset: l.biasHH, shape: [g * h]))
            offset += g * h * (input + h + 2)
            layers.append(l)
            input = h
        }
        let o = config.outputSize
        outputs = o
        fcWeight = offset
        entries.append(Entry(name: "fc.weight", offset: offset, shape: [o, input]))
        fcBias = offset + o * input
        entries.append(Entry(name: "fc.bias", offset: fcBias, shape: [o]))
        if config.seasonalSkip {
            seasonalWeight = fcBias + o
            entries.append(Entry(name: "seasonal.weight", offset: fcBias + o, shape: [o]))
            count = fcBias + 2 * o
        } else {
            seasonalWeight = nil
            count = fcBias + o
        }
        self.layers = layers
        self.entries = entries
    }

    public func entry(named name: String) -> Entry? {
        entries.first { $0.name == name }
    }
}
