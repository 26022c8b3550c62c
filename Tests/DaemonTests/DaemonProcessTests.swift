import Foundation
import Ingest
import TestSupport
import XCTest

/// `forecastd run` as a child process against the throwaway PostgreSQL.
final class DaemonProcessTests: XCTestCase {
    func testPredictionsAndFlagsAppearAndInsertToPredictionLatency() throws {
        let h = try DaemonHarness()
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 3, steps: 0..<60))
        h.waitFor("SELECT count(*) FROM forecast.latest") { $0 == "3" }

        var latencies: [Double] = []
        for step in 60..<90 {
            let t0 = Date()
            try h.insert(DaemonHarness.rows(sensors: 3, steps: step..<(step + 1)))
            let ts = DaemonHarness.t0 + Double(step) * 60
            h.waitFor("SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL AND ts = to_timestamp(\(ts))", timeout: 20, pollEvery: 0.002) { $0 == "3" }
            latencies.append(Date().timeIntervalSince(t0) * 1000)
        }
        latencies.sort()
        let p50 = latencies[latencies.count / 2], p95 = latencies[Int(Double(latencies.count) * 0.95)]
        print("insert -> completed prediction latency over \(latencies.count) inserts of 3 series: p50 \(String(format: "%.1f", p50)) ms, p95 \(String(format: "%.1f", p95)) ms, max \(String(format: "%.1f", latencies.last!)) ms")

        // Every streamed point got exactly one completed row with a score and a flag.
        XCTAssertEqual(try h.count("""
            SELECT count(*) FROM forecast.predictions
            WHERE ts >= to_timestamp(\(DaemonHarness.t0 + 60 * 60)) AND actual IS NOT NULL
              AND anomaly_score BETWEEN 0 AND 1 AND is_anomaly IS NOT NULL AND lower <= upper
            """), 90)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.latest"), 3)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.status WHERE observations = 90 AND model_version >= 1"), 3)
        XCTAssertGreaterThan(try h.count("SELECT count(*) FROM forecast.accuracy WHERE mae IS NOT NULL"), 0)
        XCTAssertEqual(h.stop(), 0, h.log)
        XCTAssertTrue(h.log.contains("checkpoint saved"), h.log)
        XCTAssertGreaterThan(try h.count("SELECT count(*) FROM forecast.models WHERE engine_state IS NOT NULL"), 0)
    }

    /// Completed prediction keys (sensor, epoch) from `fromStep` on.
    private func completedKeys(_ h: DaemonHarness, fromStep: Int) throws -> [String] {
        try h.admin.execute("""
            SELECT series || '@' || extract(epoch FROM ts)::bigint FROM forecast.predictions
            WHERE actual IS NOT NULL AND ts >= to_timestamp(\(DaemonHarness.t0 + Double(fromStep) * 60)) ORDER BY 1
            """).rows.map { $0[0]! }
    }

    private func stream(_ h: DaemonHarness, steps: Range<Int>, chunk: Int, afterChunk: (Int) throws -> Void) throws {
        var k = 0
        for start in stride(from: steps.lowerBound, to: steps.upperBound, by: chunk) {
            try h.insert(DaemonHarness.rows(sensors: 3, steps: start..<min(start + chunk, steps.upperBound)))
            try afterChunk(k)
            k += 1
        }
        let last = DaemonHarness.t0 + Double(steps.upperBound - 1) * 60
        h.waitFor("SELECT count(*) FROM forecast.series_state WHERE watermark >= \(last)", timeout: 90) { $0 == "3" }
    }

    func testKillNineMidStreamLosesAndDuplicatesNothing() throws {
        let reference = try DaemonHarness(name: "kill9_reference")
        try reference.start()
        try reference.insert(DaemonHarness.rows(sensors: 3, steps: 0..<60))
        reference.waitFor("SELECT count(*) FROM forecast.latest") { $0 == "3" }
        try stream(reference, steps: 60..<180, chunk: 8) { _ in usleep(30_000) }
        XCTAssertEqual(reference.stop(), 0)
        let expected = try completedKeys(reference, fromStep: 60)
        XCTAssertEqual(expected.count, 3 * 120)

        let h = try DaemonHarness(name: "kill9")
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 3, steps: 0..<60))
        h.waitFor("SELECT count(*) FROM forecast.latest") { $0 == "3" }
        var kills = 0
        try stream(h, steps: 60..<180, chunk: 8) { k in
            usleep(30_000)
            // Kill at different moments: right after an insert, mid-processing, while idle.
            if [2, 5, 9, 12].contains(k) {
                usleep(UInt32(k * 7_000))
                h.kill9()
                kills += 1
                try h.start()
            }
        }
        XCTAssertEqual(kills, 4)
        let got = try completedKeys(h, fromStep: 60)
        XCTAssertEqual(got, expected, "the predictions table after kill -9 differs from an uninterrupted run")
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.latest"), 3, "one pending forecast per series")
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.status WHERE observations = 180"), 3,
                       "every row was consumed exactly once")
        XCTAssertEqual(h.stop(), 0)
    }

    func testDatabaseOutageReconnectsCatchesUpAndPausesTheWatchdog() throws {
        guard let dir = TestDatabase.clusterDirectory else { return XCTFail("FORECASTD_TEST_PGDIR not set") }
        let h = try DaemonHarness(notifySocket: true)
        try h.start(watchdogSeconds: 1)
        try h.insert(DaemonHarness.rows(sensors: 3, steps: 0..<60))
        h.waitFor("SELECT count(*) FROM forecast.latest") { $0 == "3" }
        let notify = try XCTUnwrap(h.notify)
        let deadline = Date().addingTimeInterval(10)
        while !notify.assignments.contains(where: { $0.1 == "WATCHDOG=1" }) && Date() < deadline { usleep(50_000) }

        h.admin.close()
        let pgTmp = TestDatabase.repositoryRoot.appendingPathComponent("scripts/pg-tmp").path
        XCTAssertEqual(try shell(pgTmp, "pause", dir), 0)
        let down = Date()
        sleep(4)
        let pausedUntil = Date()
        XCTAssertEqual(try shell(pgTmp, "resume", dir), 0)
        try h.reconnect()

        // After a grace period (the daemon notices at its next round trip), no WATCHDOG=1.
        let during = notify.assignments.filter { $0.1 == "WATCHDOG=1" && $0.0 > down.addingTimeInterval(1.5) && $0.0 < pausedUntil }
        XCTAssertTrue(during.isEmpty, "WATCHDOG=1 sent while the database was down: \(during.count)")
        XCTAssertTrue(notify.assignments.contains { $0.1.hasPrefix("STATUS=DEGRADED") && $0.0 > down }, "STATUS shows the outage")

        try h.insert(DaemonHarness.rows(sensors: 3, steps: 60..<80))
        let last = DaemonHarness.t0 + 79 * 60
        h.waitFor("SELECT count(*) FROM forecast.series_state WHERE watermark >= \(last)", timeout: 60) { $0 == "3" }
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL AND ts >= to_timestamp(\(DaemonHarness.t0 + 3600))"), 60)
        let resumed = Date()
        let resumeDeadline = Date().addingTimeInterval(10)
        while !notify.assignments.contains(where: { $0.1 == "WATCHDOG=1" && $0.0 > resumed }) && Date() < resumeDeadline { usleep(50_000) }
        XCTAssertTrue(notify.assignments.contains { $0.1 == "WATCHDOG=1" && $0.0 > resumed }, "the watchdog resumes")
        XCTAssertTrue(h.log.contains("database unavailable"), h.log)
        XCTAssertTrue(h.log.contains("database reachable again"), h.log)
        XCTAssertEqual(h.stop(), 0)
    }

    func testNotifySocketSeesReadyStatusWatchdogStoppingAndSighupReloads() throws {
        let h = try DaemonHarness(notifySocket: true)
        try h.start(watchdogSeconds: 1)
        let notify = try XCTUnwrap(h.notify)
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<40))
        h.waitFor("SELECT count(*) FROM forecast.latest") { $0 == "2" }
        var deadline = Date().addingTimeInterval(10)
        while !notify.assignments.contains(where: { $0.1 == "WATCHDOG=1" }) && Date() < deadline { usleep(50_000) }

        try h.writeConfig(DaemonHarness.smallModel, pollInterval: 0.25, logLevel: "debug")
        h.signal(SIGHUP)
        deadline = Date().addingTimeInterval(10)
        while !h.log.contains("configuration reloaded") && Date() < deadline { usleep(50_000) }
        XCTAssertTrue(h.log.contains("configuration reloaded: log level debug, poll interval 0.25 s"), h.log)
        XCTAssertEqual(h.stop(), 0, h.log)

        let lines = notify.assignments.map(\.1)
        func first(_ prefix: String) -> Int? { lines.firstIndex { $0.hasPrefix(prefix) } }
        let ready = try XCTUnwrap(first("READY=1"), "\(lines)")
        let status = try XCTUnwrap(first("STATUS="))
        let watchdog = try XCTUnwrap(first("WATCHDOG=1"))
        let stopping = try XCTUnwrap(first("STOPPING=1"))
        XCTAssertLessThanOrEqual(ready, status)
        XCTAssertLessThan(status, watchdog)
        XCTAssertLessThan(watchdog, stopping)
        // Reload: RELOADING=1 then READY=1 again, before stopping.
        let reloading = try XCTUnwrap(first("RELOADING=1"))
        XCTAssertTrue(lines[reloading...].contains("READY=1"))
        XCTAssertLessThan(reloading, stopping)
        XCTAssertTrue(lines.contains { $0.hasPrefix("STATUS=") && $0.contains("obs/s") }, "\(lines)")
    }

    func testBadRowsAreCountedPerSeriesLoggedOnceAndOthersGoOn() throws {
        let h = try DaemonHarness()
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 3, steps: 0..<60))
        h.waitFor("SELECT count(*) FROM forecast.latest") { $0 == "3" }
        let t = { (step: Int) in DaemonHarness.t0 + Double(step) * 60 }
        try h.insert([("s1", t(60), nil), ("s0", t(60), 10.5), ("s2", t(60), DaemonHarness.value(sensor: 2, step: 60))])
        try h.admin.execute("INSERT INTO public.readings VALUES ('s1', to_timestamp(\(t(61))), 'NaN'), ('s1', to_timestamp(\(t(62))), NULL)")
        try h.insert([("s1", t(63), 11.0), ("s1", t(63), 11.5)])   // duplicate timestamp
        h.waitFor("SELECT watermark FROM forecast.series_state WHERE series = 's2'") { ($0.flatMap(Double.init) ?? 0) >= t(60) }
        try h.insert([("s2", t(10), 30.0)])                          // older than s2's watermark
        try h.insert(DaemonHarness.rows(sensors: 3, steps: 64..<70))
        h.waitFor("SELECT count(*) FROM forecast.series_state WHERE watermark >= \(t(69))") { $0 == "3" }
        h.waitFor("SELECT bad_rows->>'late' FROM forecast.status WHERE series = 's2'") { $0 == "1" }

        let s1 = try h.admin.execute("SELECT bad_rows->>'null_value', bad_rows->>'non_finite_value', bad_rows->>'duplicate_time' FROM forecast.status WHERE series = 's1'").rows
        XCTAssertEqual(s1, [["2", "1", "1"]])
        XCTAssertEqual(try h.count("SELECT bad_rows_total FROM forecast.status WHERE series = 's0'"), 0)
        // s0 went on being forecast through all of it.
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.predictions WHERE series = 's0' AND actual IS NOT NULL AND ts >= to_timestamp(\(t(60)))"), 7)
        let log = h.log
        XCTAssertEqual(log.components(separatedBy: "series s1: row at").count - 1, 3, "one line per series and kind:\n\(log)")
        XCTAssertEqual(h.stop(), 0)
    }

    func testDroppedOrRenamedSourceIsReportedWhileOtherSourcesGoOn() throws {
        let second = DaemonHarness.secondSource("public.other")
        let h = try DaemonHarness()
        try h.admin.execute("CREATE TABLE public.other (sensor text, ts timestamptz, reading text)")
        try h.writeConfig(second)
        try h.migrate()
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<50))
        try h.admin.execute("INSERT INTO public.other SELECT 'x', to_timestamp(\(DaemonHarness.t0) + g * 60), (sin(g / 4.0) * 5 + 20)::text FROM generate_series(0, 59) g")
        h.waitFor("SELECT count(*) FROM forecast.latest") { $0 == "3" }

        try h.admin.execute("ALTER TABLE public.readings RENAME TO readings_old")
        h.waitFor("SELECT problem FROM forecast.sources WHERE source = 'public.readings'") { $0?.contains("does not exist") == true }
        // A value that is not a number in the other source's text column: counted, not fatal.
        try h.admin.execute("INSERT INTO public.other VALUES ('x', to_timestamp(\(DaemonHarness.t0 + 60 * 60)), 'n/a'), ('x', to_timestamp(\(DaemonHarness.t0 + 61 * 60)), '21.5')")
        h.waitFor("SELECT bad_rows->>'non_numeric_value' FROM forecast.status WHERE source = 'public.other'") { $0 == "1" }
        h.waitFor("SELECT count(*) FROM forecast.predictions WHERE source = 'public.other' AND ts = to_timestamp(\(DaemonHarness.t0 + 61 * 60)) AND actual = 21.5") { $0 == "1" }

        try h.admin.execute("ALTER TABLE public.readings_old RENAME TO readings")
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 50..<52))
        h.waitFor("SELECT count(*) FROM forecast.series_state WHERE source = 'public.readings' AND watermark >= \(DaemonHarness.t0 + 51 * 60)") { $0 == "2" }
        XCTAssertEqual(h.log.components(separatedBy: "cannot read source").count - 1, 1, h.log)
        XCTAssertTrue(h.log.contains("source readable again"), h.log)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.sources WHERE problem IS NOT NULL"), 0, "the problem is cleared")
        XCTAssertEqual(h.stop(), 0)
    }

    func testBatchesSmallerThanOneTimestampStillReadEverySeries() throws {
        let h = try DaemonHarness()
        try h.writeConfig(DaemonHarness.smallModel, batchRows: 7)
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 40, steps: 0..<3))
        h.waitFor("SELECT count(*) FROM forecast.series_state WHERE observations = 3") { $0 == "40" }
        XCTAssertEqual(try h.count("SELECT sum(observations) FROM forecast.series_state"), 120)
        XCTAssertEqual(h.stop(), 0)
    }

    func testRestartLoadsModelsInsteadOfRetraining() throws {
        let h = try DaemonHarness()
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<50))
        h.waitFor("SELECT count(*) FROM forecast.latest") { $0 == "2" }
        XCTAssertEqual(h.stop(), 0)
        let version = try h.count("SELECT max(version) FROM forecast.models")
        XCTAssertGreaterThanOrEqual(version, 1)
        try h.start()
        h.waitFor("SELECT 1") { _ in h.log.contains("loaded 1 model(s)") }
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 50..<52))
        h.waitFor("SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL AND ts >= to_timestamp(\(DaemonHarness.t0 + 50 * 60))") { $0 == "4" }
        XCTAssertEqual(try h.count("SELECT min(model_version) FROM forecast.predictions WHERE ts >= to_timestamp(\(DaemonHarness.t0 + 50 * 60))"), version,
                       "predictions after the restart come from the stored model")
        func lastLoaded() -> String { h.log.split(separator: "\n").last { $0.contains("loaded 1 model(s)") }.map(String.init) ?? "" }
        XCTAssertTrue(lastLoaded().contains(" 0 history rows"), "the windows came with the checkpoint: \(lastLoaded())")
        // A crash after rows the last checkpoint does not hold: the restart reads those rows
        // (2 a series), not the series' whole windows, and goes on.
        h.kill9()
        let loadedBefore = h.log.components(separatedBy: "loaded 1 model(s)").count
        try h.start()
        h.waitFor("SELECT 1") { _ in h.log.components(separatedBy: "loaded 1 model(s)").count > loadedBefore }
        XCTAssertTrue(lastLoaded().contains(" 4 history rows"), lastLoaded())
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 52..<54))
        h.waitFor("SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL AND ts >= to_timestamp(\(DaemonHarness.t0 + 52 * 60))") { $0 == "4" }
        XCTAssertEqual(h.stop(), 0)
    }

    private func shell(_ args: String...) throws -> Int32 { runCommand(args) }
}
