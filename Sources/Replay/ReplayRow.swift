import Forecast

/// One input row of a replay, whatever it was read from.
public struct ReplayRow: Sendable {
    public var series: String
    /// The timestamp as the input wrote it (echoed in the output).
    public var timeText: String
    /// Epoch seconds; NaN when the timestamp could not be read.
    public var time: Double
    public var value: Double?
    /// Why the reader skipped the row (it is still written to the output, unscored).
    public var skipped: String?

    public init(series: String, timeText: String, time: Double, value: Double?, skipped: String? = nil) {
        self.series = series
        self.timeText = timeText
        self.time = time
        self.value = value
        self.skipped = skipped
    }
}

/// The engine's answer for one input row, in the output's terms.
public struct ReplayResult: Sendable, Equatable {
    public var predicted: Double?
    public var lower: Double?
    public var upper: Double?
    public var anomalyScore: Double
    public var isAnomaly: Bool
}
