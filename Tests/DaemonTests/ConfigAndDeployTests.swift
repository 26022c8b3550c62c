import Foundation
import TestSupport
import XCTest

final class ConfigAndDeployTests: XCTestCase {
    func configFile(_ text: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("cfg-\(UUID().uuidString).toml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    let source = """
        [[source]]
        table = "public.prices"
        series_column = "symbol"
        time_column = "ts"
        value_column = "price"
        """

    func testExampleConfigIsValid() throws {
        let path = TestDatabase.repositoryRoot.appendingPathComponent("deploy/forecastd.toml").path
        let r = try ForecastdProcess.run(["check-config", "--config", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("source public.prices"), r.stdout)
        XCTAssertTrue(r.stdout.contains("transform log-return"), r.stdout)
        XCTAssertTrue(r.stdout.contains("anomaly.shift_window = a day at each series' step"), r.stdout)
        XCTAssertTrue(r.stdout.contains("anomaly.short_shift_window = a quarter of the day window"), r.stdout)
        XCTAssertTrue(r.stdout.contains("ingest.poll_interval = 5.0    # reload applies it"), r.stdout)
        // A source's own horizon, and a horizon the transform cannot serve, named.
        let perSource = try configFile("\(source)\nhorizon = 24\n")
        let p = try ForecastdProcess.run(["check-config", "--config", perSource])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(p.stdout.contains("transform level, horizon 24"), p.stdout)
        let differenced = try configFile("\(source)\nhorizon = 24\ntransform = \"difference\"\n")
        let d = try ForecastdProcess.run(["check-config", "--config", differenced])
        XCTAssertNotEqual(d.status, 0)
        XCTAssertTrue(d.stderr.contains("horizon: a horizon of 24 needs transform = \"level\""), d.stderr)
        let zero = try configFile("\(source)\nhorizon = 0\n")
        let z = try ForecastdProcess.run(["check-config", "--config", zero])
        XCTAssertTrue(z.stderr.contains("source.horizon: must be at least 1"), z.stderr)
        // Set windows are shown as set.
        let fixed = try configFile("\(source)\n[anomaly]\nshift_window = 96\nshort_shift_window = 0\n")
        let f = try ForecastdProcess.run(["check-config", "--config", fixed])
        XCTAssertEqual(f.status, 0, f.stderr)
        XCTAssertTrue(f.stdout.contains("anomaly.shift_window = 96\n"), f.stdout)
        XCTAssertTrue(f.stdout.contains("anomaly.short_shift_window = 0\n"), f.stdout)
    }

    func testUnknownKeysAndBadValuesNameFileLineAndKey() throws {
        let cases: [(String, String)] = [
            ("\(source)\n[model]\nhiden = 64\n", ":7: model.hiden: unknown setting"),
            ("\(source)\n[training]\nwarmup = \"lots\"\n", ":7: training.warmup: must be an integer, not a string"),
            ("\(source)\n[model]\ntransform = \"logarithmic\"\n", ":7: model.transform: must be one of"),
            ("[[source]]\ntable = \"t\"\nseries_column = \"s\"\n", "source.time_column: is required"),
            ("[databse]\nurl = \"x\"\n\(source)\n", ":1: unknown table [databse]"),
            ("\(source)\n[model]\nseq_length = 48\n[training]\nwarmup = 10\n", "warmup: must be greater than seq_length"),
            ("\(source)\nbroken line\n", ":6: column 8: expected '='"),
            ("", "no [[source]] table"),
        ]
        for (text, expected) in cases {
            let path = try configFile(text)
            defer { try? FileManager.default.removeItem(atPath: path) }
            let r = try ForecastdProcess.run(["check-config", "--config", path])
            XCTAssertNotEqual(r.status, 0, text)
            XCTAssertTrue(r.stderr.contains(path), "names the file: \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(expected), "\(expected) not in \(r.stderr)")
            XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        }
    }

    func testEnvironmentOverridesTheDatabaseURLAndThePasswordIsNeverPrinted() throws {
        let path = try configFile("[database]\nurl = \"postgresql://u:filepw123@/db?host=/nonexistent\"\n\(source)\n")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try ForecastdProcess.run(["check-config", "--config", path],
                                         environment: ["FORECASTD_DATABASE_URL": "postgresql://v:envpw456@/other?host=/elsewhere"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("/elsewhere"), r.stdout)
        XCTAssertFalse(r.stdout.contains("envpw456") || r.stdout.contains("filepw123"), r.stdout)
        let run = try ForecastdProcess.run(["run", "--config", path], environment: ["FORECASTD_DATABASE_URL": ""], timeout: 5)
        XCTAssertFalse(run.stderr.contains("filepw123"), run.stderr)
    }

    func testIdentifiersAreQuotedNotInterpolated() throws {
        let path = try configFile("""
            [[source]]
            table = "public.\\"prices; DROP TABLE x\\""
            series_column = "sym\\"bol"
            time_column = "ts"
            value_column = "price"
            """)
        defer { try? FileManager.default.removeItem(atPath: path) }
        let r = try ForecastdProcess.run(["check-config", "--config", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("source public.prices; DROP TABLE x"), r.stdout)
    }

    func testUnitFilePassesSystemdAnalyzeVerifyWithoutWarnings() throws {
        let root = TestDatabase.repositoryRoot
        var unit = try String(contentsOf: root.appendingPathComponent("deploy/forecastd.service"), encoding: .utf8)
        // verify checks that ExecStart exists: point it at the binary under test.
        unit = unit.replacingOccurrences(of: "/usr/local/bin/forecastd", with: ForecastdProcess.binary.path)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("unit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("forecastd.service").path
        try unit.write(toFile: path, atomically: true, encoding: .utf8)
        let errFile = dir.appendingPathComponent("stderr").path
        let status = runCommand(["sh", "-c", "systemd-analyze verify '\(path)' 2>'\(errFile)'"])
        let stderr = (try? String(contentsOfFile: errFile, encoding: .utf8)) ?? ""
        XCTAssertEqual(status, 0, stderr)
        XCTAssertEqual(stderr.trimmingCharacters(in: .whitespacesAndNewlines), "", "systemd-analyze verify warned:\n\(stderr)")
        for key in ["Type=notify", "WatchdogSec=", "ProtectSystem=strict", "NoNewPrivileges=yes", "PrivateTmp=yes",
                    "StateDirectory=forecastd", "Environment=OPENBLAS_NUM_THREADS=1", "User=forecastd"] {
            XCTAssertTrue(unit.contains(key), key)
        }
        let sysusers = try String(contentsOf: root.appendingPathComponent("deploy/forecastd.sysusers"), encoding: .utf8)
        XCTAssertTrue(sysusers.contains("u forecastd"))
    }
}
