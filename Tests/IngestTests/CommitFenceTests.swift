import Foundation
import Forecast
@testable import Ingest
import TestSupport
import XCTest

/// A worker commits each batch on a second connection while it reads the next one. The shard's
/// lock is on the first connection, so the commit proves the lease in its own transaction: a
/// batch committed after another daemon took the shard over must write nothing and leave its
/// rows queued for the new holder, and the next read must skip the rows of the batch in flight.
final class CommitFenceTests: XCTestCase {
    struct Setup {
        var url: String
        var holder: ForecastStore
        var writer: ForecastStore
        var session: StreamSession
        var generation: Int64
    }

    /// A fresh database with a source whose shard `holder` has leased, and a second store on it.
    func leasedSource() throws -> Setup {
        let url = try TestDatabase.fresh()
        try TestDatabase.migrate(url)
        let conn = try PostgresConnection(url: url)
        try conn.execute("CREATE TABLE public.readings (series text, ts timestamptz, v double precision)")
        let table = SourceTable(table: SQLName(schema: "public", name: "readings"), seriesColumn: "series",
                                timeColumn: "ts", valueColumn: "v")
        let holder = try ForecastStore(connection: conn, source: try table.resolve(on: conn))
        try holder.installTrigger()
        XCTAssertTrue(try holder.tryLock())
        let generation = try holder.recordLease(worker: "a")
        let second = try PostgresConnection(url: url)
        let writer = try ForecastStore(connection: second, source: try table.resolve(on: second))
        var config = EngineConfig()
        config.hiddenSizes = [4]
        config.seqLength = 4
        config.warmup = 8
        config.initialEpochs = 1
        return Setup(url: url, holder: holder, writer: writer, session: try StreamSession(config: config, training: .inline), generation: generation)
    }

    func insert(_ conn: PostgresConnection, hours: Range<Int>) throws {
        for h in hours {
            try conn.execute("INSERT INTO public.readings VALUES ('a', to_timestamp($1::float8), $2::float8)",
                             [String(1_704_067_200 + 3600 * h), String(Double(h % 5))])
        }
    }

    func count(_ conn: PostgresConnection, _ sql: String) throws -> Int { Int(try conn.execute(sql).scalar ?? "-1") ?? -1 }

    func testACommitUnderTheCurrentLeaseIsWrittenAndTheNextReadSkipsItsRows() throws {
        let s = try leasedSource()
        try insert(s.holder.connection, hours: 0..<12)
        let first = try s.holder.nextRows(limit: 5, commitWait: 0)
        XCTAssertEqual(first.count, 5)
        // While the first five are in flight, the next read returns the other seven.
        let next = try s.holder.nextRows(limit: 100, commitWait: 0, skipping: first.map(\.id))
        XCTAssertEqual(next.count, 7)
        XCTAssertTrue(Set(next.map(\.id)).isDisjoint(with: first.map(\.id)))
        let fence = try s.holder.fence(generation: s.generation)
        try s.writer.commit(s.session.process(first.map(\.row)), consumed: first.map(\.id), fence: fence)
        XCTAssertEqual(try count(s.holder.connection, "SELECT count(*) FROM forecast.ingest_queue"), 7)
        XCTAssertEqual(try s.holder.progress()["a"]?.observations, 5)
    }

    func testACommitAfterATakeoverWritesNothingAndLeavesItsRowsQueued() throws {
        let s = try leasedSource()
        try insert(s.holder.connection, hours: 0..<6)
        let rows = try s.holder.nextRows(limit: 100, commitWait: 0)
        let fence = try s.holder.fence(generation: s.generation)
        let batch = s.session.process(rows.map(\.row))
        // The holder's session ends (its lock goes with it) and another daemon takes the shard.
        s.holder.connection.close()
        let other = try PostgresConnection(url: s.url)
        let taker = try ForecastStore(connection: other, source: s.writer.resolved)
        XCTAssertTrue(try taker.tryLock())
        XCTAssertEqual(try taker.recordLease(worker: "b"), s.generation + 1)
        XCTAssertThrowsError(try s.writer.commit(batch, consumed: rows.map(\.id), fence: fence)) { error in
            let e = error as? PostgresError
            XCTAssertEqual(e?.isConnectionProblem, true)
            XCTAssertTrue(e?.message.contains("no longer this daemon's") ?? false, "\(error)")
        }
        // Nothing of the batch was written: its rows are the new holder's to observe.
        XCTAssertEqual(try count(other, "SELECT count(*) FROM forecast.ingest_queue"), 6)
        XCTAssertEqual(try count(other, "SELECT count(*) FROM forecast.predictions"), 0)
        XCTAssertNil(try taker.progress()["a"]?.watermark)
        XCTAssertEqual(try taker.nextRows(limit: 100, commitWait: 0).count, 6)
    }
}
