import Foundation
import Ingest
import TestSupport
import XCTest

/// Several `forecastd run` processes with one configuration share a source's shards through
/// PostgreSQL: a joining daemon receives a share, a killed one's shards go to the others, and
/// every committed row is observed exactly once across the handovers.
final class SeveralDaemonsTests: XCTestCase {
    func holdings(_ h: DaemonHarness) throws -> [Int] {
        try h.admin.execute("SELECT cardinality(shards) FROM forecast.workers ORDER BY worker").rows.map { Int($0[0] ?? "0") ?? 0 }
    }

    func waitForHoldings(_ h: DaemonHarness, timeout: Double = 60, _ predicate: ([Int]) -> Bool) -> (seconds: Double, last: [Int]) {
        let start = Date()
        var last: [Int] = []
        while Date().timeIntervalSince(start) < timeout {
            last = (try? holdings(h)) ?? []
            if predicate(last) { return (Date().timeIntervalSince(start), last) }
            usleep(50_000)
        }
        return (-1, last)
    }

    func testTwoDaemonsShareTheShardsAndTheSurvivorTakesAKilledOnesOver() throws {
        let h = try DaemonHarness(ingestLines: "shards = 4\nlease_timeout = 10\n")
        let sensors = 12
        try h.insert(DaemonHarness.rows(sensors: sensors, steps: 0..<60))
        try h.start()
        let alone = waitForHoldings(h) { $0 == [4] }
        XCTAssertGreaterThanOrEqual(alone.seconds, 0, "one daemon takes every shard: \(alone.last)\n\(h.log)")

        // A second daemon joins and receives half.
        try h.startPeer()
        let shared = waitForHoldings(h) { $0.sorted() == [2, 2] }
        XCTAssertGreaterThanOrEqual(shared.seconds, 0, "the shards are split: \(shared.last)\n\(h.log)\n\(h.peerLog(0))")
        for step in stride(from: 60, to: 120, by: 10) { try h.insert(DaemonHarness.rows(sensors: sensors, steps: step..<step + 10)) }
        h.waitFor("SELECT sum(observations) FROM forecast.series_state") { $0 == String(sensors * 120) }
        // Each daemon processed rows of its own shards.
        XCTAssertTrue(h.peerLog(0).contains("handed") == false)
        XCTAssertTrue(h.log.contains("handed public.readings shard"), h.log)

        // kill -9 of the first: the survivor holds all four within the lease timeout.
        h.kill9()
        let takeover = waitForHoldings(h, timeout: 30) { $0 == [4] }
        XCTAssertGreaterThanOrEqual(takeover.seconds, 0, "the survivor takes every shard: \(takeover.last)\n\(h.peerLog(0))")
        XCTAssertLessThan(takeover.seconds, 10, "within the lease timeout")
        print("takeover after kill -9: \(String(format: "%.2f", takeover.seconds)) s")
        for step in stride(from: 120, to: 200, by: 10) { try h.insert(DaemonHarness.rows(sensors: sensors, steps: step..<step + 10)) }
        h.waitFor("SELECT sum(observations) FROM forecast.series_state") { $0 == String(sensors * 200) }

        // Nothing lost, nothing twice: every row counted once, the queue empty, and every row
        // since its series' first forecast has exactly its completed prediction.
        XCTAssertEqual(try h.count("SELECT sum(observations) FROM forecast.series_state"), sensors * 200)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.ingest_queue"), 0)
        XCTAssertEqual(try h.count("""
            SELECT count(*) FROM public.readings r
            LEFT JOIN forecast.predictions p ON p.source = 'public.readings' AND p.series = r.sensor AND p.ts = r.ts
            WHERE r.ts > (SELECT min(ts) FROM forecast.predictions q WHERE q.series = r.sensor)
              AND p.actual IS DISTINCT FROM r.reading
            """), 0)
        XCTAssertGreaterThan(try h.count("SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL"), sensors * 100)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.latest"), sensors)
        // A model per shard, and forecast.status finds it.
        XCTAssertEqual(try h.admin.execute("SELECT string_agg(DISTINCT model_key, ',' ORDER BY model_key) FROM forecast.models").scalar,
                       "*1/4,*2/4,*3/4,*4/4")
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.status WHERE last_retrain_at IS NULL"), 0)
        XCTAssertEqual(try h.count("SELECT sum(series) FROM forecast.workers"), sensors)

        // A graceful stop leaves the registry and gives the leases back.
        let peer = h.peers[0]
        kill(peer.processIdentifier, SIGTERM)
        peer.waitUntilExit()
        XCTAssertEqual(peer.terminationStatus, 0)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.workers"), 0)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.leases WHERE worker IS NOT NULL"), 0)
    }

    func testRaisingTheShardCountStartsTheNewShardsFromTheOldModel() throws {
        let h = try DaemonHarness()
        let sensors = 8
        try h.insert(DaemonHarness.rows(sensors: sensors, steps: 0..<100))
        try h.start()
        h.waitFor("SELECT sum(observations) FROM forecast.series_state") { $0 == String(sensors * 100) }
        h.waitFor("SELECT count(*) FROM forecast.models WHERE model_key = '*'") { $0 != "0" }
        XCTAssertEqual(h.stop(), 0)
        let old = try h.count("SELECT max(version) FROM forecast.models WHERE model_key = '*'")

        h.ingestLines = "shards = 2\n"
        try h.writeConfig(DaemonHarness.smallModel)
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: sensors, steps: 100..<110))
        h.waitFor("SELECT sum(observations) FROM forecast.series_state") { $0 == String(sensors * 110) }
        XCTAssertEqual(h.stop(), 0)
        XCTAssertTrue(h.log.contains("has no model of its own yet: starting from model * v\(old)"), h.log)
        // No warmup again: every new row of every series was forecast, by the adopted weights.
        XCTAssertEqual(try h.count("""
            SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL
              AND ts >= to_timestamp(\(DaemonHarness.t0 + 100 * 60))
            """), sensors * 10)
        XCTAssertEqual(try h.admin.execute("""
            SELECT string_agg(DISTINCT model_key, ',' ORDER BY model_key) FROM forecast.models WHERE model_key <> '*'
            """).scalar, "*1/2,*2/2")
        // A shard may retrain before its first checkpoint, so its oldest stored version can be a
        // later one; it never numbers from scratch below the adopted version.
        XCTAssertGreaterThanOrEqual(try h.count("SELECT min(version) FROM forecast.models WHERE model_key <> '*'"), old,
                                    "the shards go on from the old model's version")
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.status WHERE model_version IS NULL"), 0)
    }

    /// The nothing-lost identity with the source split over two daemons: a writer that commits
    /// late, a new series backfilled with old rows, a late row, bad values and times, and rows
    /// without a series. Per series, rows in the table = observations + counted bad rows.
    func testEveryRowIsCountedOnceAcrossShardsWhateverTheWritersDo() throws {
        let h = try DaemonHarness(ingestLines: "shards = 3\n")
        let t0 = DaemonHarness.t0
        try h.admin.execute("ALTER TABLE public.readings ALTER COLUMN sensor DROP NOT NULL")
        try h.insert(DaemonHarness.rows(sensors: 6, steps: 0..<40))
        try h.start()
        try h.startPeer()
        h.waitFor("SELECT sum(observations) FROM forecast.series_state") { $0 == "240" }
        _ = waitForHoldings(h) { $0.count == 2 && $0.reduce(0, +) == 3 }

        // A session that commits late, overtaken by another that commits at once.
        let slow = try PostgresConnection(url: h.url)
        try slow.execute("BEGIN")
        try slow.execute("INSERT INTO public.readings VALUES ('s0', to_timestamp(\(t0 + 40 * 60)), 10.5)")
        try h.insert((0..<6).map { ("s\($0)", t0 + 41 * 60, 10.6) })
        // A new series with 30 buffered rows older than every watermark; a late row of s1.
        try h.insert((0..<30).map { ("z", t0 + Double($0) * 60, 5 + sin(Double($0))) })
        try h.insert([("s1", t0 + 10 * 60 + 30, 1)])
        // Bad rows: a NULL value, times of infinity and far in the future, no series at all.
        try h.admin.execute("""
            INSERT INTO public.readings VALUES ('s2', to_timestamp(\(t0 + 42 * 60)), NULL), ('s3', 'infinity', 1),
                ('s4', now() + interval '10 years', 1), (NULL, to_timestamp(\(t0)), 1), (NULL, to_timestamp(\(t0 + 60)), 2)
            """)
        try slow.execute("COMMIT")
        // 240 + 1 + 6 + 30 + 1 + 3 per series, and 2 rows without a series.
        h.waitFor("SELECT sum(observations + bad_rows_total) FROM forecast.status") { $0 == "281" }
        h.waitFor("SELECT bad_rows->>'null_series' FROM forecast.sources") { $0 == "2" }

        let unaccounted = try h.admin.execute("""
            SELECT r.sensor, r.n, COALESCE(st.observations + st.bad_rows_total, 0)
            FROM (SELECT sensor, count(*) AS n FROM public.readings WHERE sensor IS NOT NULL GROUP BY sensor) r
            LEFT JOIN forecast.status st ON st.source = 'public.readings' AND st.series = r.sensor
            WHERE r.n <> COALESCE(st.observations + st.bad_rows_total, 0)
            """).rows.map { "\($0[0]!): \($0[1]!) rows, \($0[2]!) accounted" }
        XCTAssertEqual(unaccounted, [])
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.ingest_queue"), 0)
        XCTAssertEqual(try h.count("SELECT observations FROM forecast.status WHERE series = 's0'"), 42, "the late commit is not overtaken")
        XCTAssertEqual(try h.count("SELECT observations FROM forecast.status WHERE series = 'z'"), 30)
        XCTAssertEqual(try h.admin.execute("SELECT bad_rows->>'late' FROM forecast.status WHERE series = 's1'").scalar, "1")
        XCTAssertEqual(try h.admin.execute("SELECT bad_rows->>'null_value' FROM forecast.status WHERE series = 's2'").scalar, "1")
        XCTAssertEqual(try h.count("SELECT sum((bad_rows->>'bad_time')::int) FROM forecast.status WHERE series IN ('s3', 's4')"), 2)
        XCTAssertEqual(h.stop(), 0)
    }
}
