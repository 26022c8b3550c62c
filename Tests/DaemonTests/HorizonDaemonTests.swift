import Foundation
import Ingest
import TestSupport
import XCTest

/// `[model] horizon`: the daemon stores every issued path once, forecast.path shows the newest
/// per series, forecast.accuracy_by_step agrees with replay's per-step report, and replay writes
/// the paths and their fan.
final class HorizonDaemonTests: XCTestCase {
    func testPathsInSQLAgreeWithReplayStepByStep() throws {
        let config = DaemonHarness.smallModel
            .replacingOccurrences(of: "[model]\n", with: "[model]\nhorizon = 4\n")
            .replacingOccurrences(of: "[training]\n", with: "[training]\nmode = \"inline\"\n")
        let h = try DaemonHarness(extraConfig: config)
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<150))
        try h.start()
        h.waitFor("SELECT sum(observations) FROM forecast.series_state") { $0 == "300" }
        XCTAssertEqual(h.stop(), 0)

        // One path per forecast made, each of 4 steps; the newest per series in forecast.path.
        let forecasts = try h.count("SELECT count(*) FROM forecast.predictions")
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.paths"), forecasts, "a path with every forecast, stored once")
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.paths WHERE cardinality(predicted) <> 4"), 0)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.path"), 8)
        XCTAssertEqual(try h.count("SELECT count(DISTINCT (series, issued_at)) FROM forecast.path"), 2)
        XCTAssertEqual(try h.count("""
            SELECT count(*) FROM forecast.path p JOIN forecast.predictions n
              ON n.source = p.source AND n.series = p.series AND n.ts = p.ts AND n.actual IS NULL
            WHERE p.step = 1 AND abs(n.predicted - p.predicted) <= 1e-6 * greatest(1, abs(n.predicted))
            """), 2, "step 1 of the newest path is the pending next-step forecast (stored as real)")
        // Steps come in order: issued_at + step * the series' step (60 s in the harness).
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.path WHERE ts <> issued_at + step * interval '60 seconds'"), 0)

        let report = h.directory.appendingPathComponent("r.json").path
        let paths = h.directory.appendingPathComponent("paths.csv").path
        let plot = h.directory.appendingPathComponent("fan.svg").path
        let r = try ForecastdProcess.run(["replay", "--config", h.configPath, "--quiet", "--report", report,
                                          "--output-paths", paths, "--plot", plot],
                                         environment: ["FORECASTD_DATABASE_URL": ""])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as! [String: Any]
        let steps = try XCTUnwrap(json["horizons"] as? [[String: Any]])
        XCTAssertEqual(steps.map { $0["step"] as? Int }, [1, 2, 3, 4])
        // The same steps, the same actuals, the same errors: SQL over both series per step.
        let sql = try h.admin.execute("""
            SELECT step, count(*), avg(abs(actual - predicted)) FROM forecast.path_steps
            WHERE actual IS NOT NULL GROUP BY step ORDER BY step
            """).rows
        XCTAssertEqual(sql.count, 4)
        for (row, step) in zip(sql, steps) {
            XCTAssertEqual(Int(row[1]!), step["points"] as? Int, "step \(row[0]!)")
            // Paths are stored as real (float4): the same errors to float precision.
            XCTAssertEqual(Double(row[2]!)!, step["mae"] as! Double, accuracy: 1e-6 * max(1, step["mae"] as! Double))
        }
        let byStep = try h.admin.execute("SELECT step, sum(points) FROM forecast.accuracy_by_step_over('100 years') GROUP BY step ORDER BY step").rows
        XCTAssertEqual(byStep.map { Int($0[1]!) }, steps.map { $0["points"] as? Int })

        let csv = try String(contentsOfFile: paths, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.first, "series,issued_at,timestamp,step,predicted,lower,upper,actual")
        XCTAssertEqual(csv.count - 1, forecasts * 4, "every step of every path")
        let svg = try String(contentsOfFile: plot, encoding: .utf8)
        XCTAssertTrue(svg.contains("path forecast") && svg.contains("path issued"), "the plot shows a fan")
    }

    func testRetentionDropsWholeDaysOfPathsAndPredictions() throws {
        let config = DaemonHarness.smallModel.replacingOccurrences(of: "[model]\n", with: "[model]\nhorizon = 3\n")
            .replacingOccurrences(of: "[training]\n", with: "[training]\nmode = \"inline\"\n")
            + "\n[retention]\npaths_days = 1\npredictions_days = 2\n"
        let h = try DaemonHarness(extraConfig: config)
        // Half-hourly steps: 200 of them are 4 days and 3.5 hours, over 5 UTC days.
        try h.insert((0..<200).map { ("s0", DaemonHarness.t0 + Double($0) * 1800, DaemonHarness.value(sensor: 0, step: $0)) })
        try h.start()
        h.waitFor("SELECT sum(observations) FROM forecast.series_state") { $0 == "200" }
        XCTAssertEqual(h.stop(), 0)  // the final checkpoint applies retention
        let newest = "(SELECT max(last_observed_at) FROM forecast.series_state)"
        // Whole days: nothing from a day that ended before the cutoff, everything after it.
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.paths WHERE issued_at < date_trunc('day', \(newest) - interval '1 day', 'UTC')"), 0)
        XCTAssertGreaterThan(try h.count("SELECT count(*) FROM forecast.paths WHERE issued_at < \(newest) - interval '1 day'"), 0)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.predictions WHERE ts < date_trunc('day', \(newest) - interval '2 day', 'UTC')"), 0)
        XCTAssertGreaterThan(try h.count("SELECT count(*) FROM forecast.predictions WHERE ts < \(newest) - interval '2 days'"), 0)
        XCTAssertEqual(try h.count("""
            SELECT count(*) FROM forecast.predictions
            WHERE ts >= date_trunc('day', \(newest) - interval '2 day', 'UTC') AND actual IS NOT NULL
            """), try h.count("""
            SELECT count(*) FROM generate_series(0, 199) k
            WHERE to_timestamp(\(DaemonHarness.t0) + k * 1800) >= date_trunc('day', \(newest) - interval '2 day', 'UTC')
            """), "every observation of the kept days has its completed prediction")
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.path"), 3)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.latest"), 1)
    }
}
