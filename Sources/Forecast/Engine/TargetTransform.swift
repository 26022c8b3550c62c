import Foundation

/// What the model learns to predict. Predictions are always reported in the series' own units;
/// the transform only changes the space the model works in.
public enum TargetTransform: String, Sendable, CaseIterable {
    /// The values themselves.
    case level
    /// x[t] − x[t−1]: for trending series.
    case difference
    /// log(x[t] / x[t−1]): for prices; needs positive values.
    case logReturn = "log-return"

    /// The model-space value for `value` given the previous raw value, or nil when it has none
    /// (the first point of a differenced series, or a non-positive price).
    func forward(_ value: Double, previous: Double?) -> Double? {
        switch self {
        case .level:
            return value
        case .difference:
            guard let previous else { return nil }
            return value - previous
        case .logReturn:
            guard let previous, previous > 0, value > 0 else { return nil }
            return log(value / previous)
        }
    }

    /// Back to the series' units: `u` is a model-space value that follows raw value `previous`.
    func inverse(_ u: Double, previous: Double) -> Double {
        switch self {
        case .level: return u
        case .difference: return previous + u
        case .logReturn: return previous * exp(u)
        }
    }

    /// Whether `value` can be used at all under this transform.
    func accepts(_ value: Double) -> Bool {
        self != .logReturn || value > 0
    }
}
