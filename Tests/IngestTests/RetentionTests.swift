import Foundation
import Forecast
@testable import Ingest
import TestSupport
import XCTest

/// A connection used from another thread, and what its one call returned.
private final class OtherThreadCall: @unchecked Sendable {
    private let lock = NSLock()
    private let connection: PostgresConnection
    private var value: Result<String?, Error>?
    init(_ connection: PostgresConnection) { self.connection = connection }
    func run(_ sql: String) {
        let r = Result { try connection.execute(sql).scalar }
        lock.lock(); value = r; lock.unlock()
    }
    var result: Result<String?, Error>? { lock.lock(); defer { lock.unlock() }; return value }
}

/// A shared model small enough to train in a test.
private var smallSharedModel: EngineConfig {
    var config = EngineConfig()
    config.scope = .shared
    config.hiddenSizes = [4]
    config.seqLength = 6
    config.warmup = 12
    config.initialEpochs = 1
    return config
}

/// forecast.predictions and forecast.paths are partitioned by day: the cycle's writes create
/// the days they need, retention drops whole days and keeps pending forecasts, and databases
/// migrated before partitioning keep every row.
final class RetentionTests: XCTestCase {
    let start = 1_704_067_200.0  // 2024-01-01 00:00 UTC

    func partitions(_ conn: PostgresConnection, _ table: String) throws -> [String] {
        try conn.execute("""
            SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = $1::regclass ORDER BY 1
            """, ["forecast." + table]).rows.map { $0[0]! }
    }

    func count(_ conn: PostgresConnection, _ sql: String) throws -> Int {
        Int(try conn.execute(sql).scalar ?? "-1") ?? -1
    }

    /// A store on `public.readings` and a session that has streamed `days` days of hourly rows
    /// of series a and b through it, one commit per day, as the daemon does.
    func streamed(days: Int, url: String) throws -> (PostgresConnection, ForecastStore, StreamSession) {
        let conn = try PostgresConnection(url: url)
        try conn.execute("CREATE TABLE public.readings (series text, ts timestamptz, v double precision)")
        let source = SourceTable(table: SQLName(schema: "public", name: "readings"), seriesColumn: "series",
                                 timeColumn: "ts", valueColumn: "v")
        let store = try ForecastStore(connection: conn, source: try source.resolve(on: conn))
        var config = smallSharedModel
        config.retrainEvery = 100_000
        let session = try StreamSession(config: config, training: .inline)
        for day in 0..<days {
            var rows: [RawRow] = []
            for h in 0..<24 {
                let t = start + Double(day * 86_400 + h * 3600)
                for s in ["a", "b"] { rows.append(RawRow(series: s, time: t, value: .number(Double(h) + (s == "a" ? 0 : 100)))) }
            }
            try store.commit(session.process(rows))
        }
        return (conn, store, session)
    }

    func testTheCycleCreatesTheDaysItWritesAndRetentionDropsWholeDays() throws {
        let url = try TestDatabase.fresh()
        try TestDatabase.migrate(url)
        let (conn, store, session) = try streamed(days: 5, url: url)
        // Five days of rows and the pending forecast for the sixth day's first hour.
        XCTAssertEqual(try partitions(conn, "predictions"), ["predictions_default"] + (1...6).map { "predictions_p2024010\($0)" })
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.predictions_default"), 0)
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.latest"), 2)
        let before = try count(conn, "SELECT count(*) FROM forecast.predictions")

        // b goes quiet; a goes on for two more days. b's pending forecast is in day 6.
        for day in 5..<7 {
            let rows = (0..<24).map { h in RawRow(series: "a", time: start + Double(day * 86_400 + h * 3600), value: .number(Double(h))) }
            try store.commit(session.process(rows))
        }
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.predictions"), before + 48)
        let kept = try count(conn, "SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL AND ts >= '2024-01-05'")
        XCTAssertEqual(kept, 2 * 24 + 2 * 24)  // Jan 5: a and b; Jan 6 and 7: a
        // Newest observation: Jan 7, 23:00. Keeping 2.5 days drops the days ending by Jan 5, 11:00.
        let report = try store.applyRetention(predictionDays: 2.5, pathDays: 7)
        XCTAssertEqual(report.predictionPartitions, 4)
        XCTAssertEqual(try partitions(conn, "predictions"), ["predictions_default"] + (5...8).map { "predictions_p2024010\($0)" })
        // b's pending forecast (day 6) survived; nothing completed older than the cutoff is left.
        XCTAssertEqual(try conn.execute("SELECT series, to_char(forecast_for, 'YYYY-MM-DD HH24') FROM forecast.latest ORDER BY 1")
            .rows.map { "\($0[0]!) \($0[1]!)" }, ["a 2024-01-08 00", "b 2024-01-06 00"])
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL AND ts < '2024-01-05'"), 0)
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL AND ts >= '2024-01-05'"), kept)

        // b resumes on day 8: its pending forecast in the default partition is completed and replaced.
        try store.commit(session.process([RawRow(series: "b", time: start + 7 * 86_400 + 3600, value: .number(101))]))
        XCTAssertEqual(try conn.execute("SELECT to_char(forecast_for, 'YYYY-MM-DD HH24') FROM forecast.latest WHERE series = 'b'").scalar,
                       "2024-01-08 02")
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.predictions_default WHERE actual IS NULL"), 0)
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.predictions WHERE series = 'b' AND ts = '2024-01-08 01:00+00' AND actual = 101"), 1)
        // Nothing to drop twice; 0 keeps everything.
        XCTAssertEqual(try store.applyRetention(predictionDays: 2.5, pathDays: 7).predictionPartitions, 0)
        XCTAssertEqual(try store.applyRetention(predictionDays: 0, pathDays: 0), ForecastStore.RetentionReport())
    }

    func testADayCreatedLaterTakesItsRowsOutOfTheDefaultPartition() throws {
        let url = try TestDatabase.fresh()
        try TestDatabase.migrate(url)
        let conn = try PostgresConnection(url: url)
        // A row written without its day's partition (as a pending forecast kept by retention is).
        try conn.execute("INSERT INTO forecast.predictions (source, series, ts, predicted) VALUES ('s', 'x', '2024-03-01 12:00+00', 1)")
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.predictions_default"), 1)
        XCTAssertEqual(try conn.execute("SELECT forecast.ensure_day_partition('predictions', '2024-03-01')").scalar, "t")
        XCTAssertEqual(try conn.execute("SELECT forecast.ensure_day_partition('predictions', '2024-03-01')").scalar, "f")
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.predictions_default"), 0)
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.predictions_p20240301"), 1)
        // The key is still unique across partitions.
        try conn.execute("INSERT INTO forecast.predictions (source, series, ts, predicted) VALUES ('s', 'x', '2024-03-01 12:00+00', 2) ON CONFLICT DO NOTHING")
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.predictions"), 1)
        XCTAssertThrowsError(try conn.execute("SELECT forecast.ensure_day_partition('models', '2024-03-01')")) { e in
            XCTAssertTrue("\(e)".contains("unknown table models"), "\(e)")
        }
    }

    /// Two connections that need the same new day at once (two daemons, or two sources of one
    /// daemon committing on their own connections): the one that waited on the other's creation
    /// finds the day made and goes on, instead of failing with "relation ... already exists".
    func testTwoWritersCreatingTheSameDayAtOnceBothSucceed() throws {
        let url = try TestDatabase.fresh()
        try TestDatabase.migrate(url)
        let first = try PostgresConnection(url: url), second = try PostgresConnection(url: url)
        // `first` holds the creators' lock, so `second` checks (the day is missing) and waits.
        try first.execute("BEGIN")
        try first.execute("SELECT pg_advisory_xact_lock(7316031416)")
        let waiting = DispatchSemaphore(value: 0)
        let call = OtherThreadCall(second)
        Thread {
            call.run("SELECT forecast.ensure_day_partition('predictions', date '2024-03-01')")
            waiting.signal()
        }.start()
        // Watched from a third connection: inside `first`'s transaction pg_stat_activity would
        // answer from the snapshot of its first read, taken before `second` may have blocked.
        let observer = try PostgresConnection(url: url)
        var blocked = false
        for _ in 0..<100 where !blocked {
            blocked = try observer.execute("""
                SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%ensure_day_partition%'
                """).scalar == "1"
            if !blocked { Thread.sleep(forTimeInterval: 0.05) }
        }
        XCTAssertTrue(blocked, "the second caller waits on the lock")
        XCTAssertEqual(try first.execute("SELECT forecast.ensure_day_partition('predictions', date '2024-03-01')").scalar, "t")
        try first.execute("COMMIT")
        XCTAssertEqual(waiting.wait(timeout: .now() + 30), .success)
        XCTAssertEqual(try call.result?.get(), "f", "the day already existed when the second caller got the lock")
        XCTAssertEqual(try partitions(first, "predictions").filter { $0 == "predictions_p20240301" }.count, 1)
    }

    func testRowsStoredBeforePartitioningAreKeptAndRetentionAppliesToThem() throws {
        let url = try TestDatabase.fresh()
        let conn = try PostgresConnection(url: url)
        let all = try Migration.load(from: TestDatabase.sqlDirectory)
        XCTAssertEqual(all.map(\.version), Migration.embedded.map(\.version))
        try Migrator(connection: conn).migrate(all.filter { $0.version < 8 })
        try conn.execute("SET TimeZone = 'UTC'")
        // Three days of completed rows, a pending one, a flagged one, and a path.
        try conn.execute("""
            INSERT INTO forecast.predictions (source, series, ts, predicted, lower, upper, model_version, actual, previous_actual,
                                              anomaly_score, is_anomaly, observed_at, reason)
            SELECT 'public.readings', 'a', timestamptz '2024-01-01' + k * interval '6 hours', k, k - 1, k + 1, 3, k + 0.5, k - 0.5,
                   0.1, k = 5, now(), CASE WHEN k = 5 THEN 'residuals' END
            FROM generate_series(0, 11) k
            """)
        try conn.execute("INSERT INTO forecast.predictions (source, series, ts, predicted) VALUES ('public.readings', 'a', '2024-01-04', 12)")
        try conn.execute("""
            INSERT INTO forecast.paths (source, series, issued_at, step_seconds, model_version, predicted, lower, upper)
            VALUES ('public.readings', 'a', '2024-01-03 18:00', 3600, 3, '{1,2}', '{0,1}', '{2,3}')
            """)
        let snapshot = "SELECT string_agg(concat_ws('|', series, ts, predicted, lower, upper, model_version, actual, previous_actual, anomaly_score, is_anomaly, reason), ';' ORDER BY ts) FROM forecast.predictions"
        let before = try conn.execute(snapshot).scalar
        try Migrator(connection: conn).migrate(all)
        XCTAssertEqual(try conn.execute(snapshot).scalar, before)
        XCTAssertEqual(try partitions(conn, "predictions"), ["predictions_default"] + (1...4).map { "predictions_p2024010\($0)" })
        XCTAssertEqual(try partitions(conn, "paths"), ["paths_default", "paths_p20240103"])
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.latest"), 1)
        XCTAssertEqual(try conn.execute("SELECT reason FROM forecast.anomalies").scalar, "residuals")
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.path_steps WHERE actual IS NOT NULL"), 0)
        XCTAssertEqual(try count(conn, "SELECT count(*) FROM forecast.path"), 2)

        try conn.execute("INSERT INTO forecast.series_state (source, series, watermark, last_observed_at) VALUES ('public.readings', 'a', 0, '2024-01-03 18:00')")
        try conn.execute("CREATE TABLE public.readings (series text, ts timestamptz, v double precision)")
        let store = try ForecastStore(connection: conn, source: try SourceTable(
            table: SQLName(schema: "public", name: "readings"), seriesColumn: "series", timeColumn: "ts", valueColumn: "v").resolve(on: conn))
        // Newest observation Jan 3 18:00: one day back drops Jan 1 and the paths of no day.
        XCTAssertEqual(try store.applyRetention(predictionDays: 1, pathDays: 1), ForecastStore.RetentionReport(predictionPartitions: 1, pathPartitions: 0))
        XCTAssertEqual(try partitions(conn, "predictions"), ["predictions_default"] + (2...4).map { "predictions_p2024010\($0)" })
        XCTAssertEqual(try store.applyRetention(predictionDays: 1, pathDays: 0.1).pathPartitions, 0)
    }
}

/// Engine state larger than one chunk is stored in pieces and read back whole, through saves,
/// refreshes, pruning of old versions and rollback.
final class StateChunkTests: XCTestCase {
    /// A fresh database with a source table, its store writing chunks of 1,000 bytes.
    private func storeWithSmallChunks() throws -> (PostgresConnection, ForecastStore) {
        let url = try TestDatabase.fresh()
        try TestDatabase.migrate(url)
        let conn = try PostgresConnection(url: url)
        try conn.execute("CREATE TABLE public.readings (series text, ts timestamptz, v double precision)")
        let store = try ForecastStore(connection: conn, source: try SourceTable(
            table: SQLName(schema: "public", name: "readings"), seriesColumn: "series", timeColumn: "ts", valueColumn: "v").resolve(on: conn))
        store.stateChunkBytes = 1000
        return (conn, store)
    }

    func testStateLargerThanAChunkRoundTripsAndGoesWithItsVersion() throws {
        let (conn, store) = try storeWithSmallChunks()
        func state(_ n: Int, _ seed: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ seed) } }
        func save(_ version: Int, _ bytes: [UInt8]) throws {
            try store.saveModel(modelKey: "*", version: version, trainedAtPoint: nil, windows: nil, trainLoss: nil, holdoutLoss: nil,
                                previousHoldoutLoss: nil, checkpoint: [1, 2, 3], engineState: bytes, keep: 2)
        }
        try save(1, state(3500, 1))
        XCTAssertEqual(try store.latestModels().first?.engineState, state(3500, 1))
        XCTAssertEqual(try conn.execute("SELECT engine_state_chunks, octet_length(engine_state) FROM forecast.models").rows.first!, ["4", "1000"])
        XCTAssertEqual(try conn.execute("SELECT count(*) FROM forecast.model_state_chunks").scalar, "3")
        // A refresh of the same version replaces its chunks (fewer now).
        try save(1, state(1500, 2))
        XCTAssertEqual(try store.latestModels().first?.engineState, state(1500, 2))
        XCTAssertEqual(try conn.execute("SELECT count(*) FROM forecast.model_state_chunks").scalar, "1")
        try save(2, state(2001, 3))
        try save(3, state(999, 4))
        XCTAssertEqual(try store.latestModels().first?.engineState, state(999, 4))
        // Version 1 was pruned (keep 2), and its chunks with it.
        XCTAssertEqual(try conn.execute("SELECT string_agg(DISTINCT version::text, ',') FROM forecast.model_state_chunks").scalar, "2")
        // Rollback to version 2 stores its whole state again as version 4.
        let v = try store.rollback(modelKey: "*", to: 2) { bytes, _ in bytes }
        XCTAssertEqual(v, 4)
        XCTAssertEqual(try store.latestModels().first?.engineState, state(2001, 3))
        XCTAssertEqual(try conn.execute("SELECT engine_state_chunks FROM forecast.models WHERE version = 4").scalar, "3")
        // A missing chunk is named, not read as a shorter state.
        try conn.execute("DELETE FROM forecast.model_state_chunks WHERE version = 4 AND chunk = 2")
        XCTAssertThrowsError(try store.latestModels()) { e in
            XCTAssertTrue("\(e)".contains("2 of its 3 engine-state chunks"), "\(e)")
        }
    }
    /// A restart reads the state a chunk at a time as it decodes it: the chunks as stored, in
    /// order, decoding to what the whole state decodes to. A chunk gone between the count and
    /// the read fails the read (the restart is tried again), it is not taken for damage.
    func testARestartReadsTheStateAChunkAtATime() throws {
        let (conn, store) = try storeWithSmallChunks()
        let engine = try StreamingEngine(config: smallSharedModel, mode: .inline)
        var observations: [Observation] = []
        for i in 0..<150 {
            for (k, series) in ["a", "b", "c"].enumerated() {
                observations.append(Observation(series: series, time: Double(i) * 60, value: sin(Double(i) / 5) + Double(k)))
            }
        }
        _ = engine.process(observations)
        let bytes = try XCTUnwrap(engine.snapshot().first.map(SnapshotCodec.encode))
        XCTAssertGreaterThan(bytes.count, 5000)
        try store.saveModel(modelKey: "*", version: 7, trainedAtPoint: nil, windows: nil, trainLoss: nil, holdoutLoss: nil,
                            previousHoldoutLoss: nil, checkpoint: [1], engineState: bytes, keep: 2)
        let heads = try store.latestStates()
        XCTAssertEqual(heads.map(\.modelKey), ["*"])
        XCTAssertEqual(heads.map(\.version), [7])
        let state = try XCTUnwrap(heads.first?.state)
        XCTAssertEqual(state.label, "model * version 7")
        XCTAssertEqual(state.count, bytes.count)
        let parts = state.parts()
        var sizes: [Int] = []
        var joined: [UInt8] = []
        while let p = try parts.next() { sizes.append(p.count); joined += p }
        XCTAssertEqual(joined, bytes)
        XCTAssertEqual(sizes.count, (bytes.count + 999) / 1000)
        XCTAssertTrue(sizes.dropLast().allSatisfy { $0 == 1000 }, "\(sizes)")
        var decoded: [SeriesSnapshot] = []
        var group = try SnapshotCodec.decode(state) { decoded.append($0) }
        group.series = decoded
        XCTAssertEqual(group, try SnapshotCodec.decode(bytes))

        let counted = try XCTUnwrap(store.latestStates().first?.state)
        try conn.execute("DELETE FROM forecast.model_state_chunks WHERE chunk = 3")
        XCTAssertThrowsError(try SnapshotCodec.decode(counted) { _ in }) { e in
            XCTAssertTrue(e is StoredState.ReadFailed, "\(e)")
            XCTAssertTrue("\(e)".contains("chunk 3 of its"), "\(e)")
        }
    }

    /// A checkpoint writes the state a chunk at a time as it is encoded (`saveState`): the stored
    /// state is the engine's as it was taken, a restart reads the previous state until the last
    /// chunk is in, and what an attempt that never finished left is deleted by the next one.
    func testACheckpointWritesTheStateAChunkAtATime() throws {
        let (conn, store) = try storeWithSmallChunks()
        let engine = try StreamingEngine(config: smallSharedModel, mode: .inline)
        func rows(_ range: Range<Int>) -> [Observation] {
            range.flatMap { i in ["a", "b", "c", "d"].enumerated().map { k, s in Observation(series: s, time: Double(i) * 60, value: sin(Double(i) / 5) + Double(k)) } }
        }
        _ = engine.process(rows(0..<150))
        let first = try XCTUnwrap(engine.encodedSnapshots().first)
        // The version is stored (with its first predictions) before any checkpoint refreshes it.
        try store.saveModel(modelKey: "*", version: first.group.version, trainedAtPoint: nil, windows: nil, trainLoss: nil,
                            holdoutLoss: nil, previousHoldoutLoss: nil, checkpoint: first.group.checkpoint, engineState: first.bytes, keep: 2)
        func stored() throws -> [UInt8] { try XCTUnwrap(store.latestStates().first?.state).bytes() }
        XCTAssertTrue(try stored() == first.bytes)

        _ = engine.process(rows(150..<170))
        var writer = try XCTUnwrap(engine.stateWriters().first)
        XCTAssertEqual(writer.header.version, first.group.version, "no retrain in between: the same version is refreshed")
        let taken = try XCTUnwrap(engine.encodedSnapshots().first).bytes
        XCTAssertFalse(taken == first.bytes)
        // An attempt that stopped half way (a crash) left its header unwritten and two chunks.
        var half = writer
        let header = try XCTUnwrap(half.nextPart(limit: 1000))
        XCTAssertEqual(header.count, SnapshotCodec.PartEncoder(writer.header, seriesCount: 4).headerBytes)
        let g = try XCTUnwrap(Int64(conn.execute("SELECT state_generation FROM forecast.models").scalar ?? ""))
        for k in 1...2 {
            let part = try XCTUnwrap(half.nextPart(limit: 1000))
            try conn.execute("INSERT INTO forecast.model_state_chunks (source, model_key, version, generation, chunk, bytes) VALUES ($1, '*', $2, $3, $4, $5::bytea)",
                             parameters: [.text(store.sourceKey), .text(String(first.group.version)), .text(String(g + 99)), .text(String(k)), .bytes(part[...])])
        }
        XCTAssertTrue(try stored() == first.bytes, "a restart reads the state whose chunks are all in")
        // The engine goes on while the state is written: what is written is the state when taken.
        _ = engine.process(rows(170..<180))
        XCTAssertFalse(try XCTUnwrap(engine.encodedSnapshots().first).bytes == taken)
        let written = try XCTUnwrap(store.saveState(&writer, modelKey: "*"))
        XCTAssertEqual(written.bytes, taken.count)
        XCTAssertGreaterThan(written.chunks, 4)
        XCTAssertTrue(try stored() == taken)
        // The stopped attempt's chunks went, and the first state's: one generation is left.
        XCTAssertEqual(try conn.execute("SELECT count(DISTINCT generation), count(*) FROM forecast.model_state_chunks").rows.first!,
                       ["1", String(written.chunks - 1)])
        XCTAssertEqual(try conn.execute("SELECT engine_state_chunks FROM forecast.models").scalar, String(written.chunks))

        // A writer whose daemon no longer holds the source writes its chunks but never points
        // the version at them: the state stays the last one written under the lease.
        var stale = try XCTUnwrap(engine.stateWriters().first)
        XCTAssertThrowsError(try store.saveState(&stale, modelKey: "*", fence: ForecastStore.Fence(generation: 41, backendPID: 1))) { e in
            XCTAssertTrue("\(e)".contains("no longer this daemon's"), "\(e)")
        }
        XCTAssertTrue(try stored() == taken)

        // A version that is not stored is not written here (it is saved whole, with its batch).
        var other = try XCTUnwrap(engine.stateWriters().first)
        try conn.execute("DELETE FROM forecast.models")
        XCTAssertNil(try store.saveState(&other, modelKey: "*"))
        XCTAssertEqual(other.partsGiven, 0)
    }

    /// A new version is saved in the transaction of the batch with its first predictions, its
    /// state a chunk at a time as the writer makes it (`ModelSave.state`); a save committed
    /// again (its first commit failed) writes the same state again from its first part.
    func testANewVersionIsSavedWithItsStateMadeAChunkAtATime() throws {
        let (conn, store) = try storeWithSmallChunks()
        let engine = try StreamingEngine(config: smallSharedModel, mode: .inline)
        _ = engine.process((0..<150).flatMap { i in ["a", "b", "c"].enumerated().map { k, s in
            Observation(series: s, time: Double(i) * 60, value: cos(Double(i) / 7) + Double(k)) } })
        let whole = try XCTUnwrap(engine.encodedSnapshots().first)
        let writer = try XCTUnwrap(engine.stateWriters().first)
        let save = ForecastStore.ModelSave(modelKey: "*", version: whole.group.version, windows: 42, checkpoint: whole.group.checkpoint,
                                           state: writer, keep: 2)
        _ = engine.process((150..<160).flatMap { i in ["a", "b", "c"].map { Observation(series: $0, time: Double(i) * 60, value: 0.5) } })
        try store.commit(StreamBatch(), saving: [save])
        func stored() throws -> [UInt8] { try XCTUnwrap(store.latestStates().first?.state).bytes() }
        XCTAssertTrue(try stored() == whole.bytes, "the state when the writer was taken")
        let chunks = try conn.execute("SELECT engine_state_chunks, windows FROM forecast.models").rows.first!
        XCTAssertEqual(chunks[1], "42")
        XCTAssertGreaterThan(Int(chunks[0] ?? "") ?? 0, 3)
        try store.commit(StreamBatch(), saving: [save])
        XCTAssertTrue(try stored() == whole.bytes, "committed again: the same state")
        XCTAssertEqual(try conn.execute("SELECT count(DISTINCT generation), count(*) FROM forecast.model_state_chunks").rows.first!,
                       ["1", String((Int(chunks[0] ?? "") ?? 0) - 1)])
        let restored = try StreamingEngine(config: smallSharedModel, mode: .inline)
        restored.install([try restored.prepareRestore(XCTUnwrap(store.latestStates().first?.state))])
        XCTAssertEqual(restored.seriesCount, 3)
    }
}
