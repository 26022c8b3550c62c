import Foundation
import Ingest
import TestSupport
import XCTest

final class PostgresConnectionTests: XCTestCase {
    func testConnectsAndQueriesWithParameters() throws {
        let conn = try PostgresConnection(url: try TestDatabase.fresh())
        let r = try conn.execute("SELECT $1::int + $2::int AS sum, $3::text IS NULL AS isnull", ["40", "2", nil])
        XCTAssertEqual(r.columns, ["sum", "isnull"])
        XCTAssertEqual(r.rows, [["42", "t"]])
        // Parameters are never spliced into SQL text.
        let evil = "'; DROP TABLE x; --"
        XCTAssertEqual(try conn.execute("SELECT $1::text", [evil]).scalar, evil)
    }

    /// Bytes go as they are (binary format): every byte value, zeros included, an empty value
    /// and NULL, next to text parameters.
    func testByteParametersArriveAsTheyAre() throws {
        let conn = try PostgresConnection(url: try TestDatabase.fresh())
        let all = (0..<512).map { UInt8(truncatingIfNeeded: $0) }
        let r = try conn.execute("SELECT encode($1::bytea, 'hex'), octet_length($2::bytea), $3::bytea IS NULL, $4::text",
                                 parameters: [.bytes(all[...]), .bytes([][...]), .bytes(nil), .text("é")])
        XCTAssertEqual(r.rows, [[all.map { String(format: "%02x", $0) }.joined(), "0", "t", "é"]])
    }

    func testMigrateTwiceChangesNothingTheSecondTime() throws {
        let url = try TestDatabase.fresh()
        let first = try TestDatabase.migrate(url)
        XCTAssertGreaterThan(first.applied.count, 0)
        let conn = try PostgresConnection(url: url)
        let tablesBefore = try conn.execute("""
            SELECT table_name FROM information_schema.tables WHERE table_schema = 'forecast' ORDER BY 1
            """).rows
        XCTAssertTrue(tablesBefore.contains(["predictions"]))
        XCTAssertTrue(tablesBefore.contains(["schema_migrations"]))
        let stampsBefore = try conn.execute("SELECT version, applied_at FROM forecast.schema_migrations ORDER BY 1").rows

        let second = try TestDatabase.migrate(url)
        XCTAssertEqual(second.applied.count, 0)
        XCTAssertEqual(second.alreadyApplied, first.applied.count)
        XCTAssertEqual(try conn.execute("SELECT version, applied_at FROM forecast.schema_migrations ORDER BY 1").rows, stampsBefore)
    }

    /// The binary carries exactly the repository's sql/ files (the build plugin embeds them), and
    /// the schema version it needs is the newest of them.
    func testEmbeddedMigrationsAreTheSQLFiles() throws {
        let onDisk = try Migration.load(from: TestDatabase.sqlDirectory)
        XCTAssertEqual(Migration.embedded.map(\.version), onDisk.map(\.version))
        XCTAssertEqual(Migration.embedded.map(\.name), onDisk.map(\.name))
        XCTAssertEqual(Migration.embedded.map(\.sql), onDisk.map(\.sql))
        XCTAssertEqual(Migration.embedded.map(\.checksum), onDisk.map(\.checksum))
        XCTAssertEqual(Migration.schemaVersion, onDisk.last?.version)
        XCTAssertGreaterThanOrEqual(Migration.schemaVersion, 4)
    }

    func testEditedMigrationIsRefusedNamingTheFile() throws {
        let url = try TestDatabase.fresh()
        try TestDatabase.migrate(url)
        var migrations = Migration.embedded
        migrations[0].sql += "\n-- edited\n"
        let conn = try PostgresConnection(url: url)
        XCTAssertThrowsError(try Migrator(connection: conn).migrate(migrations)) { error in
            XCTAssertTrue("\(error)".contains("001_forecast_schema.sql was changed after it was applied"), "\(error)")
        }
    }

    func testFailingMigrationRollsBackAndNamesTheFile() throws {
        let url = try TestDatabase.fresh()
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("mig-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try "CREATE TABLE forecast.ok_table (x int);".write(to: dir.appendingPathComponent("001_ok.sql"), atomically: true, encoding: .utf8)
        try "CREATE TABLE forecast.half (x int);\nSELECT no_such_column FROM forecast.half;"
            .write(to: dir.appendingPathComponent("002_broken.sql"), atomically: true, encoding: .utf8)
        let conn = try PostgresConnection(url: url)
        XCTAssertThrowsError(try Migrator(connection: conn).migrate(try Migration.load(from: dir.path))) { error in
            XCTAssertTrue("\(error)".contains("002_broken.sql"), "\(error)")
            XCTAssertTrue("\(error)".contains("no_such_column"), "\(error)")
        }
        XCTAssertEqual(try conn.execute("SELECT to_regclass('forecast.ok_table') IS NOT NULL").scalar, "t")
        XCTAssertEqual(try conn.execute("SELECT to_regclass('forecast.half') IS NULL").scalar, "t")
        XCTAssertEqual(try Migrator(connection: conn).currentVersion(), 1)
    }

    func testCopyInsertsABatchWithEscapes() throws {
        let url = try TestDatabase.fresh()
        try TestDatabase.migrate(url)
        let conn = try PostgresConnection(url: url)
        let n = 5_000
        let formatter = ISO8601DateFormatter()
        let rows = (0..<n).map { i in
            CopyText.encode(["sensor\t\(i % 7)\\x",
                             formatter.string(from: Date(timeIntervalSince1970: 1_700_000_000 + Double(i) * 60)),
                             i % 100 == 0 ? nil : String(Double(i) * 0.5)])
        }
        XCTAssertEqual(rows.count, n)
        try conn.copyIn("COPY forecast.observations (series, ts, value) FROM STDIN", rows: rows)
        XCTAssertEqual(try conn.execute("SELECT count(*) FROM forecast.observations").scalar, String(n))
        XCTAssertEqual(try conn.execute("SELECT count(*) FROM forecast.observations WHERE value IS NULL").scalar, "50")
        XCTAssertEqual(try conn.execute("SELECT count(DISTINCT series) FROM forecast.observations").scalar, "7")
        XCTAssertEqual(try conn.execute("SELECT series FROM forecast.observations ORDER BY ts LIMIT 1").scalar, "sensor\t0\\x")
        var expected = 0.0
        for i in 0..<n where i % 100 != 0 { expected += Double(i) * 0.5 }
        let sum = try conn.execute("SELECT sum(value) FROM forecast.observations").scalar.flatMap { Double($0) }
        XCTAssertEqual(sum, expected)
    }

    func testCopyErrorReportsTheBadRowAndKeepsTheConnectionUsable() throws {
        let url = try TestDatabase.fresh()
        try TestDatabase.migrate(url)
        let conn = try PostgresConnection(url: url)
        let rows = [CopyText.encode(["a", "2024-01-01T00:00:00Z", "1.5"]), CopyText.encode(["a", "not a time", "2"])]
        XCTAssertThrowsError(try conn.copyIn("COPY forecast.observations (series, ts, value) FROM STDIN", rows: rows)) { error in
            XCTAssertTrue("\(error)".contains("not a time"), "\(error)")
        }
        XCTAssertEqual(try conn.execute("SELECT count(*) FROM forecast.observations").scalar, "0")
    }

    func testListenNotifyRoundTripWithPayload() throws {
        let url = try TestDatabase.fresh()
        let listener = try PostgresConnection(url: url)
        let sender = try PostgresConnection(url: url)
        try listener.listen("forecastd_test")
        XCTAssertEqual(try listener.waitForNotifications(timeout: 0.05), [])
        let payload = "series=äbc \"quoted\" 42"
        try sender.notify("forecastd_test", payload: payload)
        var got: [PostgresConnection.Notification] = []
        let deadline = Date().addingTimeInterval(10)
        while got.isEmpty && Date() < deadline {
            got = try listener.waitForNotifications(timeout: 1)
        }
        XCTAssertEqual(got.count, 1)
        XCTAssertEqual(got.first?.channel, "forecastd_test")
        XCTAssertEqual(got.first?.payload, payload)
        let senderPID = try sender.execute("SELECT pg_backend_pid()").scalar
        XCTAssertEqual(got.first.map { String($0.processID) }, senderPID)
    }

    func testUnreachableServerGivesOneLineNamingTheSocket() throws {
        let dir = "/tmp/forecastd-no-such-socket-dir"
        XCTAssertThrowsError(try PostgresConnection(url: "postgresql:///db?host=\(dir)&password=hunter2secret")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains(dir), text)
            XCTAssertTrue(text.contains("No such file or directory"), text)
            XCTAssertFalse(text.contains("hunter2secret"), text)
            XCTAssertFalse(text.contains("\n"), text)
            XCTAssertTrue((error as? PostgresError)?.isConnectionProblem ?? false)
        }
    }

    func testMalformedURLNeverEchoesThePassword() throws {
        for url in ["postgresql://bob:s3cr3tpw@localhost:notaport/db", "host=x password=s3cr3tpw bogus"] {
            XCTAssertThrowsError(try PostgresConnection(url: url)) { error in
                let text = "\(error)"
                XCTAssertFalse(text.contains("s3cr3tpw"), text)
                XCTAssertFalse(text.isEmpty)
            }
        }
    }

    func testQueryErrorCarriesSQLState() throws {
        let conn = try PostgresConnection(url: try TestDatabase.fresh())
        XCTAssertThrowsError(try conn.execute("SELECT * FROM no_such_table")) { error in
            XCTAssertEqual((error as? PostgresError)?.sqlState, "42P01")
            XCTAssertFalse((error as? PostgresError)?.isConnectionProblem ?? true)
        }
        XCTAssertEqual(try conn.execute("SELECT 1").scalar, "1")
    }
}
