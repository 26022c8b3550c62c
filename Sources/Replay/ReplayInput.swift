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
            rows.append(ReplayRow(series: name, timeText: p.timeText, time: p.time, value: p.value,
                                  skipped: p.skipped.map(\.rawValue)))
        }
        return (rows, reader.issues)
    }

    /// Rows of a table in stream order (time, then series), optionally one series and a time range.
    public static func table(_ source: SourceTable, url: String, series: String?, from: Double?, to: Double?,
                             badValues: inout [String: Int]) throws -> [ReplayRow] {
        let conn = try PostgresConnection(url: url)
        defer { conn.close() }
        try conn.execute("SET TimeZone = 'UTC'")
        let resolved = try source.resolve(on: conn)
        var rows: [ReplayRow] = []
        var bad: [String: Int] = [:]
        try resolved.readAll(on: conn, series: series, from: from, to: to) { page in
            for r in page {
                var value: Double? = nil
                if let text = r.valueText {
                    value = Double(text.trimmingCharacters(in: .whitespaces))
                    if value == nil { bad["non_numeric_value", default: 0] += 1 }
                    else if !value!.isFinite { bad["non_finite_value", default: 0] += 1; value = nil }
                } else {
                    bad["null_value", default: 0] += 1
                }
                let t = r.time ?? .nan
                rows.append(ReplayRow(series: r.series, timeText: r.time.map(TimestampParser.format) ?? "",
                                      time: t, value: value, skipped: r.time == nil ? "null_time" : nil))
            }
        }
        badValues = bad
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
                                        n(res.lower), n(res.upper), String(res.anomalyScore), res.isAnomaly ? "t" : "f"])
            }
            try conn.copyIn("""
                COPY forecast.backtest_predictions (run_id, row_number, series, ts, actual, predicted, lower, upper,
                    anomaly_score, is_anomaly) FROM STDIN
                """, rows: lines)
            return id
        }
    }
}
