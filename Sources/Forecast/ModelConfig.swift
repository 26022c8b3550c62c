/// Which recurrent cell the stack uses. Raw values are stored in checkpoints: never renumber.
public enum CellKind: UInt8, Sendable, Equatable, Codable {
    /// PyTorch nn.LSTM semantics, gate order (i, f, g, o).
    case lstm = 0
    /// PyTorch nn.GRU semantics, gate order (r, z, n).
    case gru = 1

    /// Gate blocks per layer: rows of weight_ih / weight_hh are gateCount * H.
    public var gateCount: Int { self == .lstm ? 4 : 3 }
}

/// Shape of a stacked recurrent model with a Linear(H_last, outputSize) head on the last step.
/// `outputSize` > 1 is a direct multi-step head: output k is the forecast k+1 steps ahead.
/// `seasonalSkip` adds one weight per output that multiplies a per-output side input (the
/// value one season before that output's target, see `StreamingEngine`): the head is
/// `y_k = fc(h_T)_k + seasonal_k · s_k`.
/// `hiddenSizes` has one entry per layer: [64, 64] is PyTorch's num_layers=2, hidden 64;
/// [64, 32, 16] is a Keras-style tapering stack.
public struct ModelConfig: Sendable, Equatable, Codable {
    public var cell: CellKind
    public var inputSize: Int
    public var hiddenSizes: [Int]
    /// Dropout on the outputs of every layer except the last (PyTorch's `dropout`), training only.
    public var dropout: Float
    /// Outputs of the head (forecast steps 1...outputSize).
    public var outputSize: Int
    public var seasonalSkip: Bool

    public init(cell: CellKind = .lstm, inputSize: Int = 1, hiddenSizes: [Int] = [64, 64], dropout: Float = 0,
                outputSize: Int = 1, seasonalSkip: Bool = false) {
        self.cell = cell
        self.inputSize = inputSize
        self.hiddenSizes = hiddenSizes
        self.dropout = dropout
        self.outputSize = outputSize
        self.seasonalSkip = seasonalSkip
    }

    /// Whether the head is the plain Linear(H_last, 1) of a next-step model (checkpoint format 1).
    public var isNextStepOnly: Bool { outputSize == 1 && !seasonalSkip }

    /// Caps exist so a corrupted or hostile config cannot ask for terabytes.
    public static let maxWidth = 1 << 16
    public static let maxLayers = 64

    public func validate() throws {
        guard inputSize >= 1, inputSize <= Self.maxWidth else {
            throw ForecastError.invalidConfig("inputSize must be in 1...\(Self.maxWidth), got \(inputSize)")
        }
        guard !hiddenSizes.isEmpty, hiddenSizes.count <= Self.maxLayers else {
            throw ForecastError.invalidConfig("need 1...\(Self.maxLayers) layers, got \(hiddenSizes.count)")
        }
        for h in hiddenSizes where h < 1 || h > Self.maxWidth {
            throw ForecastError.invalidConfig("hidden sizes must be in 1...\(Self.maxWidth), got \(hiddenSizes)")
        }
        guard outputSize >= 1, outputSize <= Self.maxWidth else {
            throw ForecastError.invalidConfig("outputSize must be in 1...\(Self.maxWidth), got \(outputSize)")
        }
        guard dropout >= 0, dropout < 1 else {
            throw ForecastError.invalidConfig("dropout must be in [0, 1), got \(dropout)")
        }
    }
}
