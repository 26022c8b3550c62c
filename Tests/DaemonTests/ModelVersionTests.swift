import Foundation
import Ingest
import TestSupport
import XCTest

/// Model versions are never reused, and an operator can list them and roll back to one.
final class ModelVersionTests: XCTestCase {
    func testAConfigurationChangeNumbersNewVersionsAboveTheOldOnes() throws {
        let h = try DaemonHarness()
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<100))
        h.waitFor("SELECT max(version) FROM forecast.models") { ($0.flatMap { Int($0) } ?? 0) >= 1 }
        XCTAssertEqual(h.stop(), 0)
        let before = try h.count("SELECT max(version) FROM forecast.models")
        let rowsBefore = try h.count("SELECT count(*) FROM forecast.models")
        // hidden 8 -> 12: the stored checkpoints no longer fit and a new model is trained.
        try h.writeConfig(DaemonHarness.smallModel.replacingOccurrences(of: "hidden = 8", with: "hidden = 12"))
        try h.start()
        h.waitFor("SELECT 1") { _ in h.log.contains("stored models do not fit the configuration") }
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 100..<140))
        h.waitFor("SELECT max(version) FROM forecast.models") { ($0.flatMap { Int($0) } ?? 0) > before }
        XCTAssertEqual(h.stop(), 0)
        XCTAssertEqual(try h.count("SELECT min(version) FROM forecast.models WHERE version > \(before)"), before + 1,
                       "the first new version follows the old ones")
        XCTAssertGreaterThanOrEqual(try h.count("SELECT count(*) FROM forecast.models WHERE version <= \(before)"), min(rowsBefore, 4),
                                    "old versions are kept (up to checkpoints.keep), not overwritten")
        XCTAssertEqual(try h.count("SELECT min(model_version) FROM forecast.predictions WHERE ts >= to_timestamp(\(DaemonHarness.t0 + 130 * 60))"),
                       try h.count("SELECT min(version) FROM forecast.models WHERE version > \(before)"))
    }

    func testModelsListAndRollbackAreLoadedByTheRunningDaemon() throws {
        let h = try DaemonHarness()
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<100))
        h.waitFor("SELECT max(version) FROM forecast.models") { ($0.flatMap { Int($0) } ?? 0) >= 1 }
        h.waitFor("SELECT sum(observations) FROM forecast.series_state") { $0 == "200" }
        let list = try ForecastdProcess.run(["models", "list", "--config", h.configPath], environment: ["FORECASTD_DATABASE_URL": ""])
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertTrue(list.stdout.contains("current"), list.stdout)
        let newest = try h.count("SELECT max(version) FROM forecast.models")
        let rollback = try ForecastdProcess.run(["models", "rollback", "--config", h.configPath, "--version", "1"],
                                                environment: ["FORECASTD_DATABASE_URL": ""])
        XCTAssertEqual(rollback.status, 0, rollback.stderr)
        XCTAssertTrue(rollback.stdout.contains("model * v1 is current again as v\(newest + 1)"), rollback.stdout)
        h.waitFor("SELECT 1") { _ in h.log.contains("v\(newest + 1) in forecast.models is newer than the running") }
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 100..<103))
        h.waitFor("SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL AND ts >= to_timestamp(\(DaemonHarness.t0 + 100 * 60))") { $0 == "6" }
        XCTAssertEqual(try h.count("SELECT min(model_version) FROM forecast.predictions WHERE ts >= to_timestamp(\(DaemonHarness.t0 + 101 * 60))"), newest + 1,
                       "forecasts come from the rolled-back weights under their new number")
        XCTAssertEqual(try h.admin.execute("SELECT restored_from FROM forecast.models WHERE version = \(newest + 1)").scalar, "1")
        let missing = try ForecastdProcess.run(["models", "rollback", "--config", h.configPath, "--version", "999"],
                                               environment: ["FORECASTD_DATABASE_URL": ""])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("no stored version 999"), missing.stderr)
        XCTAssertEqual(h.stop(), 0)
    }
}
