import Forecast
import Foundation
import Ingest

/// Reading a replay's rows from a CSV file or a PostgreSQL table.
public enum ReplayInput {
    /// Every data row of a CSV file, in file order, including rows the reader skipped (so the
    /// output has one row per input row). Fatal problems throw `CSVError` (file:line:column).
    public static func csv(path: String, columns: CSVColumns) throws -> (rows: [ReplayRow], issues: CSVIssueLog) {
        var reader = try CSVPointReader(path: path, columns: columns)
        reader.includeSkippedRows = true
        var rows: [ReplayRow] = []
        let defaultName = columns.series == nil ? URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent : ""
        while let p = try reader.next() {
            let name = p.seriesIndex >= 0 ? (reader.seriesNames[p.seriesIndex] ?? defaultName) : defaultName
            let value: RawValue = p.value.map { .number($0) } ?? .invalid(p.valueIssue ?? .nullValue)
            rows.append(ReplayRow(row: RawRow(series: name, time: p.time.isNaN ? nil : p.time, value: value, rejected: p.skipped),
                                  timeText: p.timeText))
        }
        return (rows, reader.issues)
    }

    /// Rows of a table in stream order (time, then series), optionally one series and a time
    /// range, with the values as text: the stream session judges them as the daemon does.
    public static func table(_ source: SourceTable, url: String, series: String?, from: Double?, to: Double?) throws -> [ReplayRow] {
        let conn = try PostgresConnection(url: url)
        defer { conn.close() }
        try conn.execute("SET TimeZone = 'UTC'")
        let resolved = try source.resolve(on: conn)
        var rows: [ReplayRow] = []
        try resolved.readAll(on: conn, series: series, from: from, to: to) { page in
            for r in page {
                rows.append(ReplayRow(row: r, timeText: r.time.map(TimestampParser.format) ?? ""))
            }
        }
        return rows
    }
}

/// `--write-table`: a run and its rows in forecast.backtest_runs / backtest_predictions.
public enum BacktestTable {
    /// Stores the run in one transaction and returns its run id.
    public static func write(url: String, source: String, settings: JSONValue, report: JSONValue,
                             rows: [ReplayRow], results: [ReplayResult]) throws -> Int {
        let conn = try PostgresConnection(url: url)
        defer { conn.close() }
        return try conn.transaction {
            let id = try conn.execute("""
                INSERT INTO forecast.backtest_runs (source, settings, report, finished_at)
                VALUES ($1, $2::jsonb, $3::jsonb, now()) RETURNING run_id
                """, [source, settings.render(), report.render()]).scalar.flatMap { Int($0) } ?? 0
            let lines = zip(rows, results).enumerated().map { i, pair -> String in
                let (r, res) = pair
                func n(_ v: Double?) -> String? { v.flatMap { $0.isFinite ? String($0) : nil } }
                return CopyText.encode([String(id), String(i + 1), r.series, r.timeText, n(r.value), n(res.predicted),
                                        n(res.lower), n(res.upper), String(res.anomalyScore), res.isAnomaly ? "t" : "f",
                                        res.reason?.rawValue])
            }
            try conn.copyIn("""
                COPY forecast.backtest_predictions (run_id, row_number, series, ts, actual, predicted, lower, upper,
                    anomaly_score, is_anomaly, reason) FROM STDIN
                """, rows: lines)
            return id
        }
    }
}
