/// Errors thrown by the forecast core. Messages name the offending value so a daemon log line
/// is enough to see what was wrong.
public enum ForecastError: Error, Equatable, CustomStringConvertible {
    case invalidSequenceLength(Int)
    case invalidConfig(String)
    case shapeMismatch(String)
    case unknownParameter(String)
    /// A setting out of range; the text starts with the setting's name.
    case invalidSetting(String)

    public var description: String {
        switch self {
        case .invalidSequenceLength(let l): return "sequence length must be >= 1, got \(l)"
        case .invalidConfig(let why): return "invalid model config: \(why)"
        case .shapeMismatch(let why): return "shape mismatch: \(why)"
        case .unknownParameter(let name): return "unknown parameter name '\(name)'"
        case .invalidSetting(let why): return why
        }
    }
}
