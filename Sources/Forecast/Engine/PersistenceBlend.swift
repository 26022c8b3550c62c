/// How far to move a series' forecast from persistence (the last value) toward the model.
///
/// Some series move in steps that no model can foresee (a host's CPU that jumps between load
/// levels, a counter that is flat between bursts); there persistence is very hard to beat and a
/// model's small moves between the steps only add error. Per series we keep, for each weight
/// w in {0, ¼, ½, ¾, 1}, the recent absolute error of "persistence + w × model's move", and
/// forecast with the weight that has the least. Where the model is good that is w = 1 and
/// nothing changes; where it is not, the forecast falls back toward the last value.
public struct PersistenceBlend: Sendable, Equatable, Codable {
    static let weights: [Double] = [0, 0.25, 0.5, 0.75, 1]
    /// Forecasts scored before the blend may leave the model alone.
    static let minimumScored = 48

    /// Exponentially weighted absolute error per weight, in model-space units.
    public private(set) var errors: [Double]
    public private(set) var scored: Int

    public init(errors: [Double] = Array(repeating: 0, count: 5), scored: Int = 0) {
        self.errors = errors.count == Self.weights.count ? errors : Array(repeating: 0, count: Self.weights.count)
        self.scored = max(0, scored)
    }

    /// The weight on the model's move. Ties go to the larger weight (the model).
    public var weight: Double {
        guard scored >= Self.minimumScored else { return 1 }
        var best = Self.weights.count - 1
        for i in stride(from: best - 1, through: 0, by: -1) where errors[i] < errors[best] { best = i }
        return Self.weights[best]
    }

    public func blend(model: Double, persistence: Double) -> Double {
        persistence + weight * (model - persistence)
    }

    /// Scores every weight against the actual value; `memory` is the number of points that
    /// carry about two thirds of the weight.
    public mutating func record(actual: Double, model: Double, persistence: Double, memory: Int) {
        let decay = 1 - 1 / Double(max(memory, 1))
        for (i, w) in Self.weights.enumerated() {
            errors[i] = decay * errors[i] + abs(actual - (persistence + w * (model - persistence)))
        }
        scored += 1
    }
}
