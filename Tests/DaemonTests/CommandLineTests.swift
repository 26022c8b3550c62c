import Foundation
import Ingest
import TestSupport
import XCTest

final class CommandLineTests: XCTestCase {
    func testHelpListsCommands() throws {
        let r = try ForecastdProcess.run(["--help"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("USAGE: forecastd"), r.stdout)
        XCTAssertTrue(r.stdout.contains("migrate"), r.stdout)
    }

    func testVersion() throws {
        let r = try ForecastdProcess.run(["--version"])
        XCTAssertEqual(r.status, 0)
        XCTAssertTrue(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).range(of: #"^\d+\.\d+\.\d+"#, options: .regularExpression) != nil, r.stdout)
    }

    func testMigrateAppliesOnceThenReportsUpToDate() throws {
        let url = try TestDatabase.fresh()
        let first = try ForecastdProcess.run(["migrate", "--database-url", url])
        XCTAssertEqual(first.status, 0, first.stderr)
        XCTAssertTrue(first.stdout.contains("applied 001"), first.stdout)
        let second = try ForecastdProcess.run(["migrate", "--database-url", url])
        XCTAssertEqual(second.status, 0, second.stderr)
        XCTAssertFalse(second.stdout.contains("applied"), second.stdout)
        XCTAssertTrue(second.stdout.contains("up to date"), second.stdout)
    }

    func testMigrateFindsSQLThroughEnvironmentURL() throws {
        let url = try TestDatabase.fresh()
        let r = try ForecastdProcess.run(["migrate"], environment: ["FORECASTD_DATABASE_URL": url])
        XCTAssertEqual(r.status, 0, r.stderr)
        let conn = try PostgresConnection(url: url)
        XCTAssertNotNil(try Migrator(connection: conn).currentVersion())
    }

    func testUnreachableServerIsOneLineWithoutPassword() throws {
        let r = try ForecastdProcess.run(["migrate", "--database-url",
                                          "postgresql://alice:topsecretpw@/db?host=/nonexistent/socketdir"])
        XCTAssertNotEqual(r.status, 0)
        let lines = r.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("/nonexistent/socketdir"), r.stderr)
        XCTAssertFalse(r.stderr.contains("topsecretpw"), r.stderr)
        XCTAssertFalse(r.stdout.contains("topsecretpw"), r.stdout)
    }

    func testBadURLIsOneLine() throws {
        let r = try ForecastdProcess.run(["migrate", "--database-url", "postgresql://bob:pw123456@host:badport/db"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("badport"), r.stderr)
        XCTAssertFalse(r.stderr.contains("pw123456"), r.stderr)
    }
}
