import Foundation
import Ingest
import TestSupport
import XCTest

/// `forecastd replay` as a user runs it.
final class ReplayCommandTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("replay-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: dir)
    }

    /// Small, fast engine settings for debug builds.
    let small = ["--hidden", "8", "--layers", "1", "--seq-length", "12", "--warmup", "40", "--retrain-every", "60",
                 "--history", "200", "--initial-epochs", "3", "--epochs", "1", "--threads", "1", "--quiet"]

    func write(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func sineCSV(rows: Int, header: String = "when,temp") -> String {
        var s = header + "\n"
        for i in 0..<rows {
            let t = Date(timeIntervalSince1970: 1_600_000_000 + Double(i) * 3600)
            let v = 20 + 3 * sin(Double(i) * 2 * .pi / 24) + 0.2 * sin(Double(i) * 1.7)
            s += "\(ISO8601DateFormatter().string(from: t)),\(v)\n"
        }
        return s
    }

    func testOutputsReportAndPlotAndDeterminism() throws {
        let csv = try write("in.csv", sineCSV(rows: 600))
        var outputs: [String] = []
        for run in 0..<2 {
            let out = dir.appendingPathComponent("out\(run).csv").path
            let report = dir.appendingPathComponent("r\(run).json").path
            let plot = dir.appendingPathComponent("p\(run).svg").path
            let r = try ForecastdProcess.run(["replay", "--csv", csv, "--time-column", "when", "--value-column", "temp",
                                              "--output", out, "--report", report, "--plot", plot] + small)
            XCTAssertEqual(r.status, 0, r.stderr)
            outputs.append(try String(contentsOfFile: out, encoding: .utf8))
            let lines = outputs[run].split(separator: "\n")
            XCTAssertEqual(lines.first, "series,timestamp,actual,predicted,lower,upper,anomaly_score,is_anomaly,reason")
            XCTAssertEqual(lines.count, 601, "one row per input row")
            XCTAssertTrue(lines[1].hasSuffix(",,,,0.0,0,"), "before the first prediction: \(lines[1])")
            XCTAssertFalse(lines[600].dropLast().contains(",,"), "predicted at the end: \(lines[600])")
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as! [String: Any]
            for key in ["mae", "rmse", "mase", "smape", "interval_coverage", "anomalies", "points", "predicted_points",
                        "seconds", "train_seconds", "predict_seconds"] {
                XCTAssertNotNil(json[key], key)
            }
            XCTAssertEqual(json["points"] as? Int, 600)
            XCTAssertLessThan(json["mase"] as! Double, 1.0, "beats persistence on a clean sine")
            let svg = try String(contentsOfFile: plot, encoding: .utf8)
            XCTAssertTrue(svg.hasPrefix("<svg") || svg.hasPrefix("<?xml"), String(svg.prefix(80)))
        }
        XCTAssertEqual(outputs[0], outputs[1], "same input and seed give a byte-identical output")
    }

    func testBadRowsAreCountedWarnedAndStillWritten() throws {
        var text = sineCSV(rows: 120)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        lines[50] = lines[50].components(separatedBy: ",")[0] + ",abc"        // non-numeric (line 51)
        lines[60] = lines[60].components(separatedBy: ",")[0] + ",NaN"        // NaN (line 61)
        lines[70] = lines[69]                                                  // duplicate timestamp (line 71)
        lines[80] = "not a time,1.0"                                           // bad timestamp (line 81)
        lines[90] = lines[10]                                                  // out of order (line 91)
        text = lines.joined(separator: "\n")
        let csv = try write("bad.csv", text)
        let out = dir.appendingPathComponent("o.csv").path
        let report = dir.appendingPathComponent("r.json").path
        let r = try ForecastdProcess.run(["replay", "--csv", csv, "--time-column", "when", "--value-column", "temp",
                                          "--output", out, "--report", report] + small)
        XCTAssertEqual(r.status, 0, r.stderr)
        for line in ["51", "61", "71", "81", "91"] { XCTAssertTrue(r.stderr.contains(line), "warning names line \(line): \(r.stderr)") }
        let rows = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.count, 121, "bad rows are still written")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as! [String: Any]
        let bad = json["bad_rows"] as! [String: Int]
        XCTAssertEqual(bad, ["non_numeric_value": 1, "non_finite_value": 1, "duplicate_time": 1, "bad_time": 1,
                             "out_of_order_time": 1], "the names forecast.status uses")
    }

    func testFatalInputErrorsAreOneLineWithPosition() throws {
        let empty = try write("empty.csv", "")
        let headerOnly = try write("header.csv", "when,temp\n")
        let quote = try write("quote.csv", "when,temp\n2020-01-01,\"1.0\n")
        let cases: [(String, [String], String)] = [
            (empty, ["--time-column", "when", "--value-column", "temp"], "empty.csv:1:1"),
            (headerOnly, ["--time-column", "when", "--value-column", "nope"], "header.csv:1:1: no value column named \"nope\"; available columns: when, temp"),
            (quote, ["--time-column", "when", "--value-column", "temp"], "quote.csv:2:"),
            (dir.appendingPathComponent("missing.csv").path, ["--time-column", "when", "--value-column", "temp"], "missing.csv: no such file"),
        ]
        for (file, columns, expected) in cases {
            let r = try ForecastdProcess.run(["replay", "--csv", file] + columns + small)
            XCTAssertNotEqual(r.status, 0, file)
            XCTAssertTrue(r.stderr.contains(expected), "\(expected) not in: \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
        // A bad setting names the option the user typed.
        let good = try write("good.csv", "when,temp\n2020-01-01,1.0\n")
        let bad = try ForecastdProcess.run(["replay", "--csv", good, "--time-column", "when", "--value-column", "temp",
                                            "--anomaly-short-shift-window=-3"] + small)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--anomaly-short-shift-window: must not be negative (got -3)"), bad.stderr)
        // Only a header: zero points, no crash.
        let r = try ForecastdProcess.run(["replay", "--csv", headerOnly, "--time-column", "when", "--value-column", "temp",
                                          "--output", dir.appendingPathComponent("h.csv").path] + small)
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testFolderReplayMirrorsRelativePaths() throws {
        _ = try write("in/a/x.csv", sineCSV(rows: 100, header: "timestamp,value"))
        _ = try write("in/b/y.csv", sineCSV(rows: 80, header: "timestamp,value"))
        _ = try write("in/notes.txt", "not a csv")
        let out = dir.appendingPathComponent("out").path
        let r = try ForecastdProcess.run(["replay", "--csv-dir", dir.appendingPathComponent("in").path, "--output-dir", out,
                                          "--time-column", "timestamp", "--value-column", "value",
                                          "--report", dir.appendingPathComponent("all.json").path] + small)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try String(contentsOfFile: out + "/a/x.csv", encoding: .utf8).split(separator: "\n").count, 101)
        XCTAssertEqual(try String(contentsOfFile: out + "/b/y.csv", encoding: .utf8).split(separator: "\n").count, 81)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/notes.txt"))
    }

    func testTableSourceAndWriteTable() throws {
        let url = try TestDatabase.fresh()
        try TestDatabase.migrate(url)
        let conn = try PostgresConnection(url: url)
        try conn.execute("CREATE TABLE public.prices (symbol text, ts timestamptz, price numeric)")
        try conn.execute("""
            INSERT INTO public.prices
            SELECT s, to_timestamp(1600000000 + g * 60), 100 + (CASE s WHEN 'A' THEN 1 ELSE 2 END) * sin(g / 5.0) + g * 0.01
            FROM generate_series(0, 149) g, (VALUES ('A'), ('B')) v(s)
            """)
        try conn.execute("INSERT INTO public.prices VALUES ('A', to_timestamp(1600000000 + 150 * 60), NULL)")
        let out = dir.appendingPathComponent("t.csv").path
        let r = try ForecastdProcess.run(["replay", "--database-url", url, "--table", "public.prices", "--series-column", "symbol",
                                          "--time-column", "ts", "--value-column", "price", "--transform", "log-return",
                                          "--write-table", "--output", out] + small)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("public.prices: rows not used: null_value 1"), r.stderr)
        XCTAssertEqual(try conn.execute("SELECT count(*) FROM forecast.backtest_runs").scalar, "1")
        XCTAssertEqual(try conn.execute("SELECT count(*) FROM forecast.backtest_predictions").scalar, "301")
        XCTAssertEqual(try conn.execute("SELECT settings->>'model.transform' FROM forecast.backtest_runs").scalar, "log-return")
        XCTAssertGreaterThan(Int(try conn.execute("SELECT count(*) FROM forecast.backtest_predictions WHERE predicted IS NOT NULL").scalar ?? "0") ?? 0, 100)
        // --series and --from narrow the input.
        let one = try ForecastdProcess.run(["replay", "--database-url", url, "--table", "public.prices", "--series-column", "symbol",
                                            "--time-column", "ts", "--value-column", "price", "--series", "B",
                                            "--from", "2020-09-13T12:30:00Z", "--output", out] + small)
        XCTAssertEqual(one.status, 0, one.stderr)
        let rows = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").dropFirst()
        XCTAssertTrue(rows.allSatisfy { $0.hasPrefix("B,") })
        XCTAssertLessThan(rows.count, 150)
        // A missing column names the table and lists the columns.
        let bad = try ForecastdProcess.run(["replay", "--database-url", url, "--table", "public.prices", "--time-column", "ts",
                                            "--value-column", "close"] + small)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("public.prices has no value column \"close\" (columns: symbol, ts, price)"), bad.stderr)
    }

    func testRP1FlagsAreAcceptedAndRecorded() throws {
        let csv = try write("rp.csv", sineCSV(rows: 260))
        let report = dir.appendingPathComponent("rp.json").path
        let r = try ForecastdProcess.run(["replay", "--csv", csv, "--time-column", "when", "--value-column", "temp", "--rp1",
                                          "--warmup", "200", "--retrain-every", "30", "--history", "220", "--initial-epochs", "1",
                                          "--epochs", "1", "--hidden", "8", "--layers", "2", "--seq-length", "12",
                                          "--batch-size", "16", "--learning-rate", "0.002", "--clip-norm", "0.5", "--seed", "3",
                                          "--report", report, "--quiet"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as! [String: Any]
        let s = json["settings"] as! [String: Any]
        XCTAssertEqual(s["model.normalization"] as? String, "zscore")
        XCTAssertEqual(s["model.hidden"] as? [Int], [8, 8])
        XCTAssertEqual(s["model.seed"] as? Int, 3)
        XCTAssertEqual(s["training.batch_size"] as? Int, 16)
        XCTAssertEqual(json["predicted_points"] as? Int, 60)
        // The initial training at point 200, fine-tunes at 230 and at 260: the engine cannot know
        // that the 260th point is the last one (RP-1's script, which does, skips that one).
        XCTAssertEqual(json["retrains"] as? Int, 3)
    }
}
