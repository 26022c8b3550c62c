import Forecast

/// One input row of a replay, whatever it was read from: the stream's raw row and the
/// timestamp as the input wrote it (echoed in the output).
public struct ReplayRow: Sendable {
    public var row: RawRow
    public var timeText: String

    public init(row: RawRow, timeText: String) {
        self.row = row
        self.timeText = timeText
    }

    public var series: String { row.series }
    /// Epoch seconds; NaN when the timestamp could not be read.
    public var time: Double { row.time ?? .nan }
    /// The value if it is a usable number (for plots and the output's `actual`).
    public var value: Double? { row.value.number }
}

/// The engine's answer for one input row, in the output's terms.
public struct ReplayResult: Sendable, Equatable {
    public var predicted: Double?
    public var lower: Double?
    public var upper: Double?
    public var anomalyScore: Double
    public var isAnomaly: Bool
    /// For a flagged row: the check that fired.
    public var reason: AnomalyReason? = nil
    /// Why the row taught the model nothing, if it did not.
    public var issue: RowIssue?
}
