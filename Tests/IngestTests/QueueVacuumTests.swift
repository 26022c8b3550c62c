import Foundation
@testable import Ingest
import TestSupport
import XCTest

/// Every row read is deleted from forecast.ingest_queue, and its dead version is read again by
/// every later read until a vacuum removes it; autovacuum comes at most once a minute. The
/// daemon vacuums the queue itself when its role may.
final class QueueVacuumTests: XCTestCase {
    func testTheOwnerVacuumsTheQueueAndARoleThatMayNotIsToldSoWithoutAnError() throws {
        let url = try TestDatabase.fresh()
        try TestDatabase.migrate(url)
        let conn = try PostgresConnection(url: url)
        try conn.execute("CREATE TABLE public.readings (series text, ts timestamptz, v double precision)")
        let table = SourceTable(table: SQLName(schema: "public", name: "readings"), seriesColumn: "series",
                                timeColumn: "ts", valueColumn: "v")
        let store = try ForecastStore(connection: conn, source: try table.resolve(on: conn))
        try store.installTrigger()
        try conn.execute("ALTER TABLE forecast.ingest_queue SET (autovacuum_enabled = false)")
        try conn.execute("INSERT INTO public.readings SELECT 's' || (g % 50), to_timestamp(1704067200 + g), g FROM generate_series(1, 5000) g")
        func pages() throws -> Int { Int(try conn.execute("SELECT pg_relation_size('forecast.ingest_queue') / 8192").scalar ?? "-1") ?? -1 }
        let read = try store.nextRows(limit: 10_000, commitWait: 0)
        XCTAssertEqual(read.count, 5000)
        try conn.execute("DELETE FROM forecast.ingest_queue WHERE id = ANY($1::bigint[])", ["{" + read.map { String($0.id) }.joined(separator: ",") + "}"])
        let before = try pages()
        XCTAssertGreaterThan(before, 10, "5,000 dead rows fill pages")

        // A role that owns nothing here: no VACUUM (it would only warn), and false to say so.
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let role = "reader_\(suffix)"
        try conn.execute("CREATE ROLE \(role) LOGIN NOSUPERUSER")
        defer { _ = try? conn.execute("DROP OWNED BY \(role); DROP ROLE \(role)") }
        try conn.execute("GRANT USAGE ON SCHEMA forecast TO \(role); GRANT SELECT ON public.readings TO \(role)")
        let other = try PostgresConnection(url: url.replacingOccurrences(of: "user=postgres", with: "user=\(role)"))
        let otherStore = try ForecastStore(connection: other, source: try table.resolve(on: other))
        XCTAssertFalse(try otherStore.vacuumQueue())
        XCTAssertEqual(try pages(), before)

        // The owner's vacuum removes them all; the empty pages at the end go back to the system.
        XCTAssertTrue(try store.vacuumQueue())
        XCTAssertEqual(try pages(), 0)
    }
}
