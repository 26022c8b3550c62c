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

    public init(time: Double, value: Double, lower: Double, upper: Double, modelVersion: Int) {
        self.time = time
        self.value = value
        self.lower = lower
        self.upper = upper
        self.modelVersion = modelVersion
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
    /// The forecast for the following step, made after this point was seen.
    public var next: Forecast?
    /// Why the row taught the model nothing, if it did not.
    public var rejected: RowIssue?
}

