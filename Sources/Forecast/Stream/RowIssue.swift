/// Why a row taught the model nothing: the one vocabulary of `forecast.status.bad_rows`, the
/// replay report's `bad_rows`, and the logs. Raw values are what users see and query.
public enum RowIssue: String, CaseIterable, Sendable, Codable {
    // The value: the row is kept as a gap (a time without a value), so outputs keep one row per
    // input row and the series' step is not disturbed.
    /// SQL NULL or an empty cell.
    case nullValue = "null_value"
    case nonNumericValue = "non_numeric_value"
    /// NaN or ±infinity.
    case nonFiniteValue = "non_finite_value"
    /// Zero or negative where the transform needs positive values (log-return).
    case notPositiveValue = "not_positive_value"
    // The time: the row is skipped.
    /// NULL, empty, unreadable, ±infinity, NaN, or further ahead of the clock than the allowed skew.
    case badTime = "bad_time"
    /// The same time as the series' previous row: the first row wins.
    case duplicateTime = "duplicate_time"
    /// Earlier than the series' previous row.
    case outOfOrderTime = "out_of_order_time"
    /// Committed to a source table at or before its series' watermark, after forecastd had moved on.
    case late
    // The record itself (CSV): the row is skipped.
    case wrongFieldCount = "wrong_field_count"
    case malformedField = "malformed_field"
    /// A row whose series id is NULL: counted against the source.
    case nullSeries = "null_series"
    /// A series id that cannot be stored as a key (longer than `RawRow.maxSeriesBytes`): counted
    /// against the source, never retried.
    case badSeries = "bad_series"

    /// Counted against the source rather than a series (there is no series to count it under).
    public var isSourceLevel: Bool { self == .nullSeries || self == .badSeries }

    /// True when the row is kept as a gap rather than skipped.
    public var keepsRowAsGap: Bool {
        switch self {
        case .nullValue, .nonNumericValue, .nonFiniteValue, .notPositiveValue: return true
        default: return false
        }
    }

    /// Plural noun phrase for summaries: "3 non-numeric values".
    public var summaryName: String {
        switch self {
        case .nullValue: return "empty or NULL values"
        case .nonNumericValue: return "non-numeric values"
        case .nonFiniteValue: return "NaN/Inf values"
        case .notPositiveValue: return "values not above zero"
        case .badTime: return "unreadable timestamps"
        case .duplicateTime: return "duplicate timestamps"
        case .outOfOrderTime: return "out-of-order timestamps"
        case .late: return "rows that arrived after their series had moved on"
        case .wrongFieldCount: return "rows with the wrong number of fields"
        case .malformedField: return "malformed quoted fields"
        case .nullSeries: return "rows without a series id"
        case .badSeries: return "rows with a series id too long to store"
        }
    }
}
