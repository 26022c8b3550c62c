/// One value of one series, as the engine receives it. Where it came from (a CSV row, a
/// database row) is the caller's business.
public struct Observation: Sendable, Equatable {
    public var series: String
    /// Seconds since the Unix epoch.
    public var time: Double
    /// nil for a missing value (NULL, empty cell): the row is reported but teaches nothing.
    public var value: Double?

    public init(series: String, time: Double, value: Double?) {
        self.series = series
        self.time = time
        self.value = value
    }
}

/// A next-step forecast with its interval, in the series' own units.
public struct Forecast: Sendable, Equatable {
    /// The time the forecast is for (the previous time plus the series' usual step).
    public var time: Double
    public var value: Double
    public var lower: Double
    public var upper: Double
    public var modelVersion: Int
    /// With a horizon H > 1: the forecasts for steps 1...H issued together (step 1 is this
    /// forecast itself); empty for a next-step model.
    public var path: [PathPoint] = []
    /// With a path: the time of the last observation it was made from.
    public var issuedAt: Double?

    public init(time: Double, value: Double, lower: Double, upper: Double, modelVersion: Int, path: [PathPoint] = []) {
        self.time = time
        self.value = value
        self.lower = lower
        self.upper = upper
        self.modelVersion = modelVersion
        self.path = path
    }
}

/// One step of an issued path: the forecast for `step` steps after the last observation used.
public struct PathPoint: Sendable, Equatable {
    public var step: Int
    public var time: Double
    public var value: Double
    public var lower: Double
    public var upper: Double

    public init(step: Int, time: Double, value: Double, lower: Double, upper: Double) {
        self.step = step
        self.time = time
        self.value = value
        self.lower = lower
        self.upper = upper
    }
}

/// What the engine says about one observation.
public struct ScoredObservation: Sendable, Equatable {
    public var observation: Observation
    /// The forecast that was made for this point before it arrived (nil before the first model,
    /// and for rows that were not used).
    public var forecast: Forecast?
    /// In [0, 1]; 0 until the series has enough residual history.
    public var anomalyScore: Double
    public var isAnomaly: Bool
    /// For a flagged point: the check that fired.
    public var reason: AnomalyReason? = nil
    /// The forecast for the following step, made after this point was seen.
    public var next: Forecast?
    /// Why the row taught the model nothing, if it did not.
    public var rejected: RowIssue?
}

