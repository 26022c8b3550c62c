import Forecast
import Foundation

/// Which columns hold the time, the value and (optionally) the series name, by header name.
public struct CSVColumns: Sendable, Equatable {
    public var time: String
    public var value: String
    public var series: String?

    public init(time: String, value: String, series: String? = nil) {
        self.time = time
        self.value = value
        self.series = series
    }
}

/// One kept row: a timestamp and a value, or a gap (`value == nil`) when the value cell was
/// empty, non-numeric, NaN or infinite.
public struct CSVPoint: Sendable, Equatable {
    /// Index into the reader's `seriesNames` (always 0 without a series column).
    public var seriesIndex: Int
    /// Seconds since 1970-01-01T00:00:00Z.
    public var time: Double
    public var value: Double?
    /// Line of the row in the file, for messages about this point later on.
    public var line: Int
    /// The time cell as written (so outputs can echo the input's own timestamps).
    public var timeText: String = ""
    /// Set on rows that were skipped (only returned when `includeSkippedRows` is on); `time` is
    /// then NaN when the timestamp itself was the problem, and `seriesIndex` −1 when the series
    /// could not be read.
    public var skipped: CSVIssueKind? = nil
    /// Why a gap (`value == nil`) has no value.
    public var valueIssue: RowIssue? = nil
}

/// Reads points one row at a time from a time-series CSV held in memory.
///
/// The file must start with a header row (a UTF-8 BOM before it is ignored). Quoting follows
/// RFC 4180; CRLF, LF and CR line endings are accepted; blank lines are ignored. See
/// `CSVIssueKind` for what happens to bad rows, and `TimestampParser.parse` for the accepted
/// timestamp forms.
public struct CSVPointReader: Sendable {
    public let path: String
    public let header: [String]
    public let columns: CSVColumns
    public private(set) var seriesNames: [String?]
    public private(set) var issues = CSVIssueLog()
    /// Data rows seen so far, not counting the header and blank lines.
    public private(set) var recordCount = 0

    private let bytes: [UInt8]
    private var scanner: CSVScanner
    private let timeIndex: Int
    private let valueIndex: Int
    private let seriesIndex: Int?
    private var seriesLookup: [String: Int] = [:]
    private var lastTime: [Double?]

    /// Return skipped rows too (as points with `skipped` set), for outputs that need one row
    /// per input row.
    public var includeSkippedRows = false

    public var bytesConsumed: Int { scanner.position }
    public var totalBytes: Int { bytes.count }

    /// Reads the file into memory. Missing or unreadable files throw.
    public init(path: String, columns: CSVColumns) throws(CSVError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw CSVError(path: path, message: "no such file")
        }
        guard !isDirectory.boolValue else { throw CSVError(path: path, message: "is a directory, not a CSV file") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CSVError(path: path, message: "cannot read the file (permission denied?)")
        }
        try self.init(bytes: [UInt8](data), path: path, columns: columns)
    }

    /// Parses CSV text already in memory; `path` only names it in messages.
    public init(bytes: [UInt8], path: String, columns: CSVColumns) throws(CSVError) {
        self.bytes = bytes
        self.path = path
        self.columns = columns
        var scanner = bytes.withUnsafeBufferPointer { CSVScanner(path: path, bytes: $0) }
        let header: [String] = try bytes.withUnsafeBufferPointer { (b) throws(CSVError) -> [String] in
            repeat {
                guard try scanner.next(b) else {
                    throw CSVError(path: path, line: 1, column: 1, message: "file is empty; expected a header row naming the columns")
                }
            } while scanner.isBlankRecord
            return scanner.fields.map { scanner.string(of: $0, in: b).trimmingCharacters(in: .whitespaces) }
        }
        self.scanner = scanner
        self.header = header

        let headerLine = scanner.recordLine
        func index(of name: String, role: String) throws(CSVError) -> Int {
            let wanted = name.trimmingCharacters(in: .whitespaces)
            if let i = header.firstIndex(of: wanted) { return i }
            // Header case varies between exports of the same data ("Date" vs "date").
            let folded = header.indices.filter { header[$0].lowercased() == wanted.lowercased() }
            if folded.count == 1 { return folded[0] }
            let available = header.map { $0.isEmpty ? "\"\"" : $0 }.joined(separator: ", ")
            throw CSVError(path: path, line: headerLine, column: 1,
                           message: "no \(role) column named \"\(name)\"; available columns: \(available)")
        }
        timeIndex = try index(of: columns.time, role: "time")
        valueIndex = try index(of: columns.value, role: "value")
        if timeIndex == valueIndex {
            throw CSVError(path: path, line: headerLine, column: 1,
                           message: "the time and value columns are the same column, \"\(header[timeIndex])\"")
        }
        if let series = columns.series {
            let i = try index(of: series, role: "series")
            guard i != timeIndex && i != valueIndex else {
                throw CSVError(path: path, line: headerLine, column: 1,
                               message: "the series column \"\(header[i])\" is also the time or value column")
            }
            seriesIndex = i
            seriesNames = []
            lastTime = []
        } else {
            seriesIndex = nil
            seriesNames = [nil]
            lastTime = [nil]
        }
    }

    /// The next kept point, or nil at end of file. Skipped rows and gaps are recorded in `issues`.
    /// Throws only for an unterminated quote, after which nothing more can be read.
    public mutating func next() throws(CSVError) -> CSVPoint? {
        // A local copy of the array (a retain, not a copy of the bytes) so that borrowing it
        // does not overlap with mutating self.
        let bytes = self.bytes
        return try bytes.withUnsafeBufferPointer { (b) throws(CSVError) -> CSVPoint? in
            while try scanner.next(b) {
                if scanner.isBlankRecord { continue }
                recordCount += 1
                if let point = classify(scanner, b) { return point }
            }
            return nil
        }
    }

    private mutating func classify(_ scanner: CSVScanner, _ b: UnsafeBufferPointer<UInt8>) -> CSVPoint? {
        let fields = scanner.fields
        let line = scanner.recordLine
        func issue(_ kind: CSVIssueKind, _ field: CSVField?, _ message: String) {
            let issueLine = field?.line ?? line
            let issueColumn = field.map { scanner.column(of: $0, in: b) } ?? 1
            issues.record(CSVIssue(kind: kind, path: path, line: issueLine, column: issueColumn, message: message))
        }
        func quoted(_ field: CSVField) -> String {
            var text = scanner.string(of: field, in: b)
            if text.count > 40 { text = String(text.prefix(40)) + "…" }
            return "\"\(text)\""
        }

        let timeText = timeIndex < fields.count ? scanner.string(of: fields[timeIndex], in: b) : ""
        func skip(_ kind: CSVIssueKind, series: Int = -1, time: Double = .nan) -> CSVPoint? {
            includeSkippedRows ? CSVPoint(seriesIndex: series, time: time, value: nil, line: line, timeText: timeText, skipped: kind) : nil
        }
        guard fields.count == header.count else {
            issue(.wrongFieldCount, nil, "expected \(header.count) fields as in the header, found \(fields.count)")
            return skip(.wrongFieldCount)
        }
        for i in [timeIndex, valueIndex] + (seriesIndex.map { [$0] } ?? []) where fields[i].hasTrailingGarbage {
            issue(.malformedField, fields[i], "text after the closing quote in column \"\(header[i])\"")
            return skip(.malformedField)
        }

        let timeField = fields[timeIndex]
        guard let time = scanner.withContent(of: timeField, in: b, TimestampParser.parse) else {
            issue(.badTime, timeField, timeField.isEmpty ? "empty timestamp" : "unparsable timestamp \(quoted(timeField))")
            return skip(.badTime)
        }

        let series: Int
        if let seriesIndex {
            let name = scanner.string(of: fields[seriesIndex], in: b)
            if let known = seriesLookup[name] {
                series = known
            } else {
                series = seriesNames.count
                seriesLookup[name] = series
                seriesNames.append(name)
                lastTime.append(nil)
            }
        } else {
            series = 0
        }
        if let last = lastTime[series] {
            let within = seriesIndex == nil ? "" : " in series \(quoted(fields[seriesIndex!]))"
            if time == last {
                issue(.duplicateTime, timeField, "duplicate timestamp \(quoted(timeField))\(within); the first row wins")
                return skip(.duplicateTime, series: series, time: time)
            }
            if time < last {
                issue(.outOfOrderTime, timeField, "timestamp \(quoted(timeField)) is earlier than the row before it\(within)")
                return skip(.outOfOrderTime, series: series, time: time)
            }
        }
        lastTime[series] = time

        let valueField = fields[valueIndex]
        // The value is judged by the stream's one parser, as a database value would be.
        let value = scanner.withContent(of: valueField, in: b, Self.parseValue)
        switch value {
        case .number(let v):
            return CSVPoint(seriesIndex: series, time: time, value: v, line: line, timeText: timeText)
        case .invalid(let kind):
            switch kind {
            case .nullValue: issue(kind, valueField, "empty value")
            case .nonNumericValue: issue(kind, valueField, "non-numeric value \(quoted(valueField))")
            default: issue(kind, valueField, "value \(quoted(valueField)) is not a finite number")
            }
            return CSVPoint(seriesIndex: series, time: time, value: nil, line: line, timeText: timeText, valueIssue: kind)
        }
    }

    private static func parseValue(_ s: UnsafeBufferPointer<UInt8>) -> RawValue {
        RawValue(parsing: String(decoding: s, as: UTF8.self))
    }
}

/// A time series of one or more named series, all rows read at once.
public struct CSVSeries: Sendable, Equatable {
    /// The series column's value, nil when the file has no series column.
    public var name: String?
    /// Seconds since 1970-01-01T00:00:00Z, strictly increasing.
    public var times: [Double] = []
    /// nil marks a gap (see `CSVIssueKind.keepsRowAsGap`).
    public var values: [Double?] = []
    public var lines: [Int] = []

    public var count: Int { times.count }
    public var gapCount: Int { values.lazy.filter { $0 == nil }.count }
}

public struct CSVTable: Sendable {
    public var path: String
    public var header: [String]
    public var columns: CSVColumns
    /// Without a series column: exactly one series (possibly empty). With one: one per distinct
    /// name, in order of first appearance.
    public var series: [CSVSeries]
    public var issues: CSVIssueLog
    /// Data rows in the file, including skipped ones; blank lines excluded.
    public var recordCount: Int

    public var pointCount: Int { series.reduce(0) { $0 + $1.count } }

    /// Reads a whole file. `progress` gets (bytes read, total bytes) every few thousand rows.
    public static func read(path: String, columns: CSVColumns,
                            progress: ((_ bytesRead: Int, _ totalBytes: Int) -> Void)? = nil) throws(CSVError) -> CSVTable {
        try collect(CSVPointReader(path: path, columns: columns), progress: progress)
    }

    /// Parses CSV text already in memory; `path` only names it in messages.
    public static func parse(_ text: String, path: String, columns: CSVColumns) throws(CSVError) -> CSVTable {
        try collect(CSVPointReader(bytes: Array(text.utf8), path: path, columns: columns), progress: nil)
    }

    public static func parse(bytes: [UInt8], path: String, columns: CSVColumns) throws(CSVError) -> CSVTable {
        try collect(CSVPointReader(bytes: bytes, path: path, columns: columns), progress: nil)
    }

    private static func collect(_ reader: CSVPointReader, progress: ((Int, Int) -> Void)?) throws(CSVError) -> CSVTable {
        var reader = reader
        var series: [CSVSeries] = []
        var sinceProgress = 0
        while let p = try reader.next() {
            while series.count <= p.seriesIndex { series.append(CSVSeries(name: reader.seriesNames[series.count])) }
            series[p.seriesIndex].times.append(p.time)
            series[p.seriesIndex].values.append(p.value)
            series[p.seriesIndex].lines.append(p.line)
            sinceProgress += 1
            if let progress, sinceProgress >= 4096 {
                sinceProgress = 0
                progress(reader.bytesConsumed, reader.totalBytes)
            }
        }
        progress?(reader.totalBytes, reader.totalBytes)
        // A series whose every row was skipped still has a name worth listing.
        while series.count < reader.seriesNames.count { series.append(CSVSeries(name: reader.seriesNames[series.count])) }
        return CSVTable(path: reader.path, header: reader.header, columns: reader.columns, series: series,
                        issues: reader.issues, recordCount: reader.recordCount)
    }
}
