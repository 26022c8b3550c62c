import Foundation
import Ingest
import TestSupport
import XCTest

/// `replay --config` backtests exactly what the daemon runs: the same settings, the same stream
/// session, the same reason names and the same accuracy.
final class DaemonReplayEquivalenceTests: XCTestCase {
    /// Rows where daemon and replay predictions (or scores) differ, and the rows compared.
    private func compare(_ h: DaemonHarness, runID: Int, extraCondition: String = "true") throws -> (differ: Int, compared: Int) {
        let r = try h.admin.execute("""
            SELECT count(*) FILTER (WHERE p.predicted IS DISTINCT FROM b.predicted OR p.lower IS DISTINCT FROM b.lower
                                       OR p.upper IS DISTINCT FROM b.upper OR p.anomaly_score IS DISTINCT FROM b.anomaly_score
                                       OR p.is_anomaly IS DISTINCT FROM b.is_anomaly OR p.actual IS DISTINCT FROM b.actual
                                       OR p.reason IS DISTINCT FROM b.reason),
                   count(*)
            FROM forecast.predictions p
            JOIN forecast.backtest_predictions b ON b.run_id = $1 AND b.series = p.series AND b.ts::timestamptz = p.ts
            WHERE p.actual IS NOT NULL AND \(extraCondition)
            """, [String(runID)])
        return (Int(r.rows[0][0]!)!, Int(r.rows[0][1]!)!)
    }

    private func replay(_ h: DaemonHarness, _ extra: [String] = []) throws -> (run: Int, report: [String: Any]) {
        let report = h.directory.appendingPathComponent("replay-\(UUID().uuidString).json").path
        let r = try ForecastdProcess.run(["replay", "--config", h.configPath, "--write-table", "--quiet", "--report", report] + extra,
                                         environment: ["FORECASTD_DATABASE_URL": ""])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as! [String: Any]
        return (json["run_id"] as! Int, json)
    }

    func testWithInlineTrainingTheDaemonAndReplayAgreeOnEveryRow() throws {
        let inline = DaemonHarness.smallModel.replacingOccurrences(of: "[training]\n", with: "[training]\nmode = \"inline\"\n")
        let h = try DaemonHarness(extraConfig: inline)
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<160))
        try h.start()
        h.waitFor("SELECT sum(observations) FROM forecast.series_state") { $0 == "320" }
        XCTAssertEqual(h.stop(), 0)
        let (run, report) = try replay(h)
        let (differ, compared) = try compare(h, runID: run)
        let predicted = try h.count("SELECT count(*) FROM forecast.backtest_predictions WHERE run_id = \(run) AND predicted IS NOT NULL")
        XCTAssertEqual(compared, predicted, "the same rows are predicted")
        XCTAssertEqual(compared, try h.count("SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL"))
        XCTAssertGreaterThan(compared, 200)
        XCTAssertEqual(differ, 0, "bit for bit on every row, across \(report["retrains"] ?? 0) retrains")
        XCTAssertGreaterThanOrEqual(report["retrains"] as? Int ?? 0, 3)
        XCTAssertEqual((report["settings"] as? [String: Any])?["model.scope"] as? String, "shared", "the daemon's settings")

        // One definition of accuracy: forecast.accuracy shows what the report says, per series.
        let perSeries = report["series"] as! [String: [String: Any]]
        for row in try h.admin.execute("SELECT series, points, mae, rmse, mase, smape, interval_coverage FROM forecast.accuracy").rows {
            let r = try XCTUnwrap(perSeries[row[0]!], row[0]!)
            XCTAssertEqual(Int(row[1]!), r["points"] as? Int)
            for (i, key) in ["mae", "rmse", "mase", "smape", "interval_coverage"].enumerated() {
                let sql = Double(row[i + 2]!)!, swift = r[key] as! Double
                XCTAssertEqual(sql, swift, accuracy: 1e-9 * max(1, abs(swift)), "\(row[0]!) \(key)")
            }
        }
    }

    func testWithBackgroundTrainingTheyAgreeUpToTheFirstRetrain() throws {
        // warmup 30 and retrain_every 60 points per series: v1 is trained after step 29, v2 is due
        // after step 89. The daemon gets the warm-up first and its first model before the rest.
        let h = try DaemonHarness()
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<30))
        try h.start()
        h.waitFor("SELECT count(*) FROM forecast.latest WHERE model_version = 1") { $0 == "2" }
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 30..<130))
        h.waitFor("SELECT sum(observations) FROM forecast.series_state") { $0 == "260" }
        XCTAssertEqual(h.stop(), 0)
        let (run, _) = try replay(h)
        let beforeRetrain = "p.ts <= to_timestamp(\(DaemonHarness.t0 + 89 * 60))"
        let (differ, compared) = try compare(h, runID: run, extraCondition: beforeRetrain)
        XCTAssertEqual(compared, 2 * 60, "steps 30...89 of both series")
        XCTAssertEqual(differ, 0, "bit for bit up to the first retrain")
    }

    /// The same bad rows get the same names in forecast.status, the replay report and the log.
    func testBadRowsHaveTheSameNamesInStatusReplayAndLogs() throws {
        let h = try DaemonHarness()
        var rows = DaemonHarness.rows(sensors: 2, steps: 0..<40)
        rows[10].2 = nil
        rows[21].2 = .nan
        rows[32].2 = .infinity
        rows.append(rows[50])  // a duplicate time of s0
        try h.insert(rows)
        try h.admin.execute("INSERT INTO public.readings VALUES ('s1', to_timestamp(\(DaemonHarness.t0 + 45 * 60)), 'NaN')")
        try h.start()
        h.waitFor("SELECT sum(observations + bad_rows_total) FROM forecast.status") { $0 == "82" }
        XCTAssertEqual(h.stop(), 0)
        let status = try h.admin.execute("""
            SELECT k, sum(v::bigint) FROM forecast.status, jsonb_each_text(bad_rows) AS b(k, v) GROUP BY k ORDER BY k
            """).rows.map { "\($0[0]!)=\($0[1]!)" }
        XCTAssertEqual(status, ["duplicate_time=1", "non_finite_value=3", "null_value=1"])
        let (_, report) = try replay(h)
        let bad = (report["bad_rows"] as! [String: Int]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        XCTAssertEqual(bad, status)
        for name in ["duplicate_time", "non_finite_value", "null_value"] {
            XCTAssertTrue(h.log.contains("not used (\(name))"), "the log names \(name):\n\(h.log)")
        }
    }

    func testReplayConfigChoosesTheSourceAndFlagsOverrideSingleSettings() throws {
        let h = try DaemonHarness()
        try h.insert(DaemonHarness.rows(sensors: 1, steps: 0..<60))
        let (_, report) = try replay(h, ["--source", "public.readings", "--seq-length", "10", "--anomaly-min-history", "30"])
        let s = report["settings"] as! [String: Any]
        XCTAssertEqual(s["model.seq_length"] as? Int, 10, "the flag")
        XCTAssertEqual(s["anomaly.min_history"] as? Int, 30, "the flag")
        XCTAssertEqual(s["model.hidden"] as? [Int], [8], "the file")
        XCTAssertEqual(report["source"] as? String, "public.readings")
        let missing = try ForecastdProcess.run(["replay", "--config", h.configPath, "--source", "public.nope"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("no [[source]] with table public.nope (configured: public.readings)"), missing.stderr)
        let badFlag = try ForecastdProcess.run(["replay", "--config", h.configPath, "--warmup", "5"])
        XCTAssertNotEqual(badFlag.status, 0)
        XCTAssertTrue(badFlag.stderr.contains("--warmup: must be greater than seq_length"), badFlag.stderr)
    }
}
