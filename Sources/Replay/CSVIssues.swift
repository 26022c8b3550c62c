import Forecast

// What can go wrong while reading a time-series CSV: fatal errors stop the read, row issues are
// counted and the read goes on, because one bad cell in 100k rows should not cost the replay.

/// A problem that makes the file unusable. `description` is one line,
/// `file:line:column: message` (or `file: message` when no position applies).
public struct CSVError: Error, CustomStringConvertible, Equatable, Sendable {
    public var path: String
    public var line: Int?
    public var column: Int?
    public var message: String

    public init(path: String, line: Int? = nil, column: Int? = nil, message: String) {
        self.path = path
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        if let line, let column { return "\(path):\(line):\(column): \(message)" }
        return "\(path): \(message)"
    }
}

/// Row-level problems use the stream's one vocabulary (`RowIssue`, also in forecast.status and
/// the logs). The rule for each: value problems (`nullValue` for an empty cell,
/// `nonNumericValue`, `nonFiniteValue`) keep the row as a gap, a point with a time and no value,
/// so the output keeps one row per input timestamp and the model simply gets no update for it;
/// everything else skips the row. For duplicate timestamps the first row wins. Duplicate and
/// out-of-order are judged per series, against the last kept timestamp.
public typealias CSVIssueKind = RowIssue

/// One row-level problem with the position of the offending field.
public struct CSVIssue: Sendable, Equatable, CustomStringConvertible {
    public var kind: CSVIssueKind
    public var path: String
    public var line: Int
    public var column: Int
    public var message: String

    public var description: String {
        "\(path):\(line):\(column): \(message) (\(kind.keepsRowAsGap ? "kept as a gap" : "row skipped"))"
    }
}

/// Counts per kind plus the first few issues of each kind, so a file with 50k bad rows costs
/// a few counters, not 50k messages.
public struct CSVIssueLog: Sendable, Equatable {
    public static let examplesPerKind = 5

    public private(set) var counts: [CSVIssueKind: Int] = [:]
    public private(set) var examples: [CSVIssueKind: [CSVIssue]] = [:]

    public init() {}

    public mutating func record(_ issue: CSVIssue) {
        counts[issue.kind, default: 0] += 1
        if examples[issue.kind, default: []].count < Self.examplesPerKind {
            examples[issue.kind, default: []].append(issue)
        }
    }

    public var total: Int { counts.values.reduce(0, +) }
    public var isEmpty: Bool { counts.isEmpty }

    public func count(of kind: CSVIssueKind) -> Int { counts[kind] ?? 0 }

    /// Line numbers of the first `examplesPerKind` issues of a kind.
    public func firstLines(of kind: CSVIssueKind) -> [Int] { (examples[kind] ?? []).map(\.line) }

    /// One line per kind present, in a fixed order:
    /// `3 non-numeric values, kept as gaps (lines 5, 9, 12)`.
    public var summaryLines: [String] {
        RowIssue.allCases.compactMap { kind in
            let n = count(of: kind)
            guard n > 0 else { return nil }
            var lines = firstLines(of: kind).map(String.init).joined(separator: ", ")
            if n > Self.examplesPerKind { lines += ", …" }
            let action = kind.keepsRowAsGap ? "kept as gaps" : "skipped"
            return "\(n) \(kind.summaryName), \(action) (line\(n == 1 ? "" : "s") \(lines))"
        }
    }

    /// A single warning line for stderr, or nil when the file was clean.
    public func warning(path: String) -> String? {
        guard !isEmpty else { return nil }
        return "\(path): " + summaryLines.joined(separator: "; ")
    }
}
