/// One row as a source delivers it, before anything is judged: a series id, a time if the
/// reader could read one, and the value as found. The stream session turns it into an
/// observation or a rejection (`RowIssue`); this is the only place a value is parsed.
public struct RawRow: Sendable, Equatable {
    public var series: String
    /// Seconds since the Unix epoch; nil when the time was NULL or unreadable.
    public var time: Double?
    public var value: RawValue
    /// Set by a reader that rejected the row for a reason only it can see (a CSV record with the
    /// wrong number of fields): the session counts it and does not show it to the engine.
    public var rejected: RowIssue?
    /// History only: the daemon flagged this point before a restart.
    public var flagged = false

    /// Series ids longer than this (in UTF-8 bytes) cannot be keys of forecast's tables.
    public static let maxSeriesBytes = 1000

    public init(series: String, time: Double?, value: RawValue, rejected: RowIssue? = nil) {
        self.series = series
        self.time = time
        self.value = value
        self.rejected = rejected
    }

    /// A row whose value is text (a database column read as text, a CSV cell).
    public init(series: String, time: Double?, valueText: String?) {
        self.init(series: series, time: time, value: RawValue(parsing: valueText))
    }
}

/// A value as found: a finite number, or what was wrong with it.
public enum RawValue: Sendable, Equatable {
    case number(Double)
    case invalid(RowIssue)

    /// NULL and empty text are `null_value`; text that is not a number is `non_numeric_value`;
    /// NaN and infinities are `non_finite_value`. Surrounding spaces and tabs are ignored.
    public init(parsing text: String?) {
        guard let text else { self = .invalid(.nullValue); return }
        var u = Substring(text).utf8[...]
        while let f = u.first, f == 0x20 || f == 0x09 { u = u.dropFirst() }
        while let l = u.last, l == 0x20 || l == 0x09 { u = u.dropLast() }
        self.init(parsingTrimmed: Substring(u))
    }

    /// The same for text already stripped of surrounding blanks.
    public init(parsingTrimmed s: Substring) {
        if s.isEmpty { self = .invalid(.nullValue); return }
        guard let v = Double(s) else { self = .invalid(.nonNumericValue); return }
        self = v.isFinite ? .number(v) : .invalid(.nonFiniteValue)
    }

    public init(_ value: Double?) {
        if let value { self = value.isFinite ? .number(value) : .invalid(.nonFiniteValue) } else { self = .invalid(.nullValue) }
    }

    public var number: Double? {
        if case .number(let v) = self { return v }
        return nil
    }

    public var issue: RowIssue? {
        if case .invalid(let k) = self { return k }
        return nil
    }
}
