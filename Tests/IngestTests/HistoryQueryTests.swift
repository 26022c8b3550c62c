import Foundation
import Forecast
@testable import Ingest
import TestSupport
import XCTest

/// The history a restarted daemon reads back: the same rows whether the source table has an
/// index on (series, time), which lets each series be one bounded walk of it, or not.
final class HistoryQueryTests: XCTestCase {
    /// A migrated database with `public.readings` of the given time type, 3 series with 30, 8
    /// and 1 rows (one of them flagged), and their watermarks set before each series' last rows.
    func setUp(timeType: String) throws -> (PostgresConnection, ForecastStore) {
        let url = try TestDatabase.fresh()
        _ = try TestDatabase.migrate(url)
        let conn = try PostgresConnection(url: url)
        try conn.execute("SET TimeZone = 'UTC'")
        try conn.execute("CREATE TABLE public.readings (series text, ts \(timeType), v double precision)")
        let step = timeType == "date" ? "1 day" : "1 hour"
        for (series, n) in [("a", 30), ("b", 8), ("c", 1)] {
            try conn.execute("""
                INSERT INTO public.readings
                SELECT $1, timestamptz '2024-01-01 00:00:00+00' + (k * interval '\(step)'), k
                FROM generate_series(0, $2::int - 1) k
                """, [series, String(n)])
        }
        let source = SourceTable(table: SQLName(schema: "public", name: "readings"), seriesColumn: "series",
                                 timeColumn: "ts", valueColumn: "v")
        let store = try ForecastStore(connection: conn, source: try source.resolve(on: conn))
        // Watermarks: a stops 5 rows before its end, b at its last row, c has none yet.
        let seconds = timeType == "date" ? 86_400.0 : 3600.0
        let start = 1_704_067_200.0
        for (series, w) in [("a", start + 24 * seconds), ("b", start + 7 * seconds)] {
            try conn.execute("INSERT INTO forecast.series_state (source, series, watermark) VALUES ($1, $2, $3)",
                             [store.sourceKey, series, String(w)])
        }
        try conn.execute("INSERT INTO forecast.series_state (source, series) VALUES ($1, 'c')", [store.sourceKey])
        try conn.execute("""
            INSERT INTO forecast.predictions (source, series, ts, predicted, actual, is_anomaly)
            VALUES ($1, 'a', to_timestamp($2), 0, 0, true)
            """, [store.sourceKey, String(start + 22 * seconds)])
        return (conn, store)
    }

    /// Every series of the source, with no lower bound (a restart from a state without windows).
    func history(_ store: ForecastStore, perSeries: Int, after: [String: Double] = [:]) throws -> [RawRow] {
        let keys = try store.connection.execute("SELECT series FROM forecast.series_state WHERE source = $1 ORDER BY series",
                                                [store.sourceKey]).rows.compactMap { $0[0] }
        return try store.history(perSeries: perSeries, for: keys.map { .init(series: $0, after: after[$0]) })
    }

    func describe(_ rows: [RawRow]) -> [String] {
        rows.map { "\($0.series)@\($0.time ?? -1)=\($0.value.number ?? -1)\($0.flagged ? "!" : "")" }
    }

    func testTheIndexedQueryReadsTheSameHistoryAsTheTableScan() throws {
        for timeType in ["timestamptz", "timestamp", "date"] {
            let (conn, store) = try setUp(timeType: timeType)
            XCTAssertFalse(try store.hasSeriesTimeIndex(), timeType)
            let scanned = try history(store, perSeries: 6)
            let scannedAfter = try history(store, perSeries: 6, after: ["a": 1_704_067_200 + 21 * (timeType == "date" ? 86_400 : 3600)])
            try conn.execute("CREATE INDEX ON public.readings (series, ts)")
            XCTAssertTrue(try store.hasSeriesTimeIndex(), timeType)
            let walked = try history(store, perSeries: 6)
            XCTAssertEqual(describe(walked), describe(scanned), timeType)
            // After a stored window's end: only the rows past it (a: 22...24), the rest as before.
            let walkedAfter = try history(store, perSeries: 6, after: ["a": 1_704_067_200 + 21 * (timeType == "date" ? 86_400 : 3600)])
            XCTAssertEqual(describe(walkedAfter), describe(scannedAfter), timeType)
            XCTAssertEqual(walkedAfter.filter { $0.series == "a" }.map(\.value.number), [22, 23, 24], timeType)
            XCTAssertEqual(walkedAfter.filter { $0.series == "b" }.count, 6, timeType)
            // a: rows 19...24 (the watermark's row included, one flagged); b: rows 2...7; c: none.
            XCTAssertEqual(walked.filter { $0.series == "a" }.map(\.value.number), [19, 20, 21, 22, 23, 24], timeType)
            XCTAssertEqual(walked.filter { $0.series == "a" && $0.flagged }.map(\.value.number), [22], timeType)
            XCTAssertEqual(walked.filter { $0.series == "b" }.count, 6, timeType)
            XCTAssertTrue(walked.allSatisfy { $0.series != "c" }, timeType)
            // The walk is bounded: no ranking of the whole table, and its conditions are ones the
            // index can answer (a table this small is cheaper to scan, so scans are ruled out
            // to see that).
            try conn.execute("SET enable_seqscan = off")
            let plan = try conn.execute("EXPLAIN " + store.historyQuery(usingIndex: true)
                .replacingOccurrences(of: "$1", with: "'\(store.sourceKey)'").replacingOccurrences(of: "$2::bigint", with: "6")
                .replacingOccurrences(of: "$3", with: "'{a,b}'").replacingOccurrences(of: "$4", with: "'{1704067200,-Infinity}'"))
                .rows.map { $0[0] ?? "" }.joined(separator: "\n")
            XCTAssertFalse(plan.contains("WindowAgg"), plan)
            XCTAssertTrue(plan.contains("readings_series_ts_idx"), plan)
            // Both bounds are index conditions: the walk stops at the window's end.
            let condition = plan.split(separator: "\n").first { $0.contains("Index Cond") && $0.contains("series = st.series") }.map(String.init) ?? ""
            XCTAssertTrue(condition.contains(">=") && condition.contains("<="), plan)
            try conn.execute("RESET enable_seqscan")
        }
    }

    func testAnIndexThatCannotBoundTheWalkIsNotUsed() throws {
        // Time first, or an integer series id compared as text: the table scan stays.
        let (conn, store) = try setUp(timeType: "timestamptz")
        try conn.execute("CREATE INDEX ON public.readings (ts, series)")
        XCTAssertFalse(try store.hasSeriesTimeIndex())
        try conn.execute("CREATE TABLE public.numbered (series integer, ts timestamptz, v double precision)")
        try conn.execute("CREATE INDEX ON public.numbered (series, ts)")
        let numbered = SourceTable(table: SQLName(schema: "public", name: "numbered"), seriesColumn: "series",
                                   timeColumn: "ts", valueColumn: "v")
        let store2 = try ForecastStore(connection: conn, source: try numbered.resolve(on: conn))
        XCTAssertFalse(try store2.hasSeriesTimeIndex())
    }

    func testSeriesAskedForInPartsReadTheSameHistory() throws {
        let (conn, store) = try setUp(timeType: "timestamptz")
        // A series id that needs quoting inside an array literal.
        try conn.execute("INSERT INTO public.readings VALUES ('q\\\"x', timestamptz '2024-01-01 00:00:00+00', 7)")
        try conn.execute("INSERT INTO forecast.series_state (source, series, watermark) VALUES ($1, 'q\\\"x', 1704067200)", [store.sourceKey])
        func bySeries(_ rows: [RawRow]) -> [String] { describe(rows).sorted() }
        let whole = try history(store, perSeries: 6)
        try conn.execute("CREATE INDEX ON public.readings (series, ts)")
        let keys = ["a", "b", "c", "q\\\"x"]
        for size in [1, 2, 10] {
            var rows: [RawRow] = []
            for part in stride(from: 0, to: keys.count, by: size) {
                let page = try store.history(perSeries: 6, for: keys[part..<min(keys.count, part + size)].map { .init(series: $0, after: nil) })
                for series in Set(page.map(\.series)) {
                    let times = page.filter { $0.series == series }.compactMap(\.time)
                    XCTAssertEqual(times, times.sorted(), "\(series): oldest first, as the engine takes them")
                }
                rows += page
            }
            XCTAssertEqual(bySeries(rows), bySeries(whole), "parts of \(size)")
            XCTAssertTrue(rows.contains { $0.series == "q\\\"x" })
        }
        XCTAssertEqual(try store.history(perSeries: 6, for: []).count, 0)
    }

    /// Each series' run of rows is put oldest first whatever order it came in, and a page whose
    /// series are not each in one run is sorted by series and time.
    func testRowsArePutInTimeOrderPerSeries() {
        func rows(_ spec: [(String, Double)]) -> [RawRow] { spec.map { RawRow(series: $0.0, time: $0.1, value: .number($0.1)) } }
        func order(_ spec: [(String, Double)]) -> [String] {
            var r = rows(spec)
            ForecastStore.putInTimeOrder(&r)
            return r.map { "\($0.series)@\(Int($0.time!))" }
        }
        XCTAssertEqual(order([("a", 3), ("a", 2), ("a", 1), ("b", 9), ("b", 8)]), ["a@1", "a@2", "a@3", "b@8", "b@9"])
        XCTAssertEqual(order([("a", 1), ("a", 2), ("b", 5)]), ["a@1", "a@2", "b@5"])
        XCTAssertEqual(order([("a", 2), ("a", 3), ("a", 1)]), ["a@1", "a@2", "a@3"])
        XCTAssertEqual(order([("b", 2), ("a", 1), ("b", 1)]), ["a@1", "b@1", "b@2"])
        XCTAssertEqual(order([]), [])
    }
}
