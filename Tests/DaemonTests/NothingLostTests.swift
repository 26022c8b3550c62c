import Foundation
import Ingest
import TestSupport
import XCTest

/// Every row committed to a source is observed once or counted under a named reason, whatever
/// the writers do. Each test runs the real daemon against the throwaway PostgreSQL and checks
/// the identity: per series, rows in the table = observations + counted bad rows.
final class NothingLostTests: XCTestCase {
    let t0 = DaemonHarness.t0

    /// Series whose rows in the source table are not all accounted for in forecast.status.
    private func unaccounted(_ h: DaemonHarness, table: String = "public.readings") throws -> [String] {
        try h.admin.execute("""
            SELECT r.sensor, r.n, COALESCE(st.observations + st.bad_rows_total, 0)
            FROM (SELECT sensor, count(*) AS n FROM \(table) WHERE sensor IS NOT NULL GROUP BY sensor) r
            LEFT JOIN forecast.status st ON st.source = '\(table)' AND st.series = r.sensor
            WHERE r.n <> COALESCE(st.observations + st.bad_rows_total, 0)
            """).rows.map { "\($0[0]!): \($0[1]!) rows, \($0[2]!) accounted" }
    }

    private func waitAccounted(_ h: DaemonHarness, rows: Int, file: StaticString = #filePath, line: UInt = #line) {
        h.waitFor("SELECT sum(observations + bad_rows_total) FROM forecast.status", file: file, line: line) { $0 == String(rows) }
    }

    func testAWriterThatCommitsLateIsNotOvertaken() throws {
        let h = try DaemonHarness()
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<40))
        waitAccounted(h, rows: 80)
        // Session 1 writes s0 at step 40 and keeps its transaction open (a DEFAULT now() writer
        // that is slow to commit); session 2 commits s0 at step 41 meanwhile.
        let slow = try PostgresConnection(url: h.url)
        try slow.execute("BEGIN")
        try slow.execute("INSERT INTO public.readings VALUES ('s0', to_timestamp(\(t0 + 40 * 60)), 10.5)")
        try h.insert([("s0", t0 + 41 * 60, 10.6)])
        Thread.sleep(forTimeInterval: 2)  // four polls
        XCTAssertEqual(try h.count("SELECT observations FROM forecast.status WHERE series = 's0'"), 40,
                       "step 41 waits for the older transaction")
        try slow.execute("COMMIT")
        waitAccounted(h, rows: 82)
        XCTAssertEqual(try h.count("SELECT observations FROM forecast.status WHERE series = 's0'"), 42, "both rows used, none late")
        XCTAssertEqual(try h.admin.execute("SELECT bad_rows::text FROM forecast.status WHERE series = 's0'").scalar, "{}")
        XCTAssertEqual(try unaccounted(h), [])
        XCTAssertEqual(h.stop(), 0)
    }

    func testANewSeriesIsReadFromItsFirstRowHoweverOld() throws {
        let h = try DaemonHarness()
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<60))
        waitAccounted(h, rows: 120)
        // A sensor coming online with 30 buffered rows, all older than every known watermark.
        try h.insert((0..<30).map { ("z", t0 + Double($0) * 60, 5 + sin(Double($0))) })
        waitAccounted(h, rows: 150)
        XCTAssertEqual(try h.count("SELECT observations FROM forecast.status WHERE series = 'z'"), 30)
        // A backfill of an existing series behind its watermark is counted as late.
        try h.insert([("s1", t0 + 10 * 60 + 30, 1), ("s1", t0 + 11 * 60 + 30, 1)])
        waitAccounted(h, rows: 152)
        XCTAssertEqual(try h.admin.execute("SELECT bad_rows->>'late' FROM forecast.status WHERE series = 's1'").scalar, "2")
        XCTAssertEqual(try unaccounted(h), [])
        XCTAssertTrue(h.log.contains("series s1: row at 2023-11-14T22:23:50Z not used (late)"), h.log)
        XCTAssertEqual(h.stop(), 0)
    }

    func testInfinityAndFarFutureTimesAreBadTimeAndTheSeriesGoesOn() throws {
        let h = try DaemonHarness()
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<40))
        try h.admin.execute("""
            INSERT INTO public.readings VALUES ('s1', 'infinity', 1), ('s1', '-infinity', 1),
                ('s1', now() + interval '10 years', 1)
            """)
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 40..<45))
        waitAccounted(h, rows: 93)
        XCTAssertEqual(try h.admin.execute("SELECT bad_rows->>'bad_time' FROM forecast.status WHERE series = 's1'").scalar, "3")
        XCTAssertEqual(try h.count("SELECT observations FROM forecast.status WHERE series = 's1'"), 45, "later rows are used")
        XCTAssertEqual(try unaccounted(h), [])
        XCTAssertEqual(h.stop(), 0)
    }

    func testNullAndUnstorableSeriesIdsAreCountedAgainstTheSourceOnce() throws {
        let h = try DaemonHarness()
        try h.admin.execute("ALTER TABLE public.readings ALTER COLUMN sensor DROP NOT NULL")
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 1, steps: 0..<20))
        try h.admin.execute("INSERT INTO public.readings VALUES (NULL, to_timestamp(\(t0)), 1), (repeat('x', 3000), to_timestamp(\(t0)), 1)")
        try h.insert(DaemonHarness.rows(sensors: 1, steps: 20..<25))
        waitAccounted(h, rows: 25)
        h.waitFor("SELECT bad_rows::text FROM forecast.sources") { $0 == "{\"bad_series\": 1, \"null_series\": 1}" }
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.ingest_queue"), 0, "nothing is left to retry")
        XCTAssertEqual(h.stop(), 0)
    }

    func testAWriterWithOnlyInsertRightsCanWriteAfterMigrate() throws {
        let h = try DaemonHarness()
        let role = "writer_\(UInt32.random(in: 0...UInt32.max))"
        try h.admin.execute("CREATE ROLE \(role) LOGIN")
        try h.admin.execute("GRANT USAGE ON SCHEMA public TO \(role)")
        try h.admin.execute("GRANT INSERT ON public.readings TO \(role)")
        defer { _ = try? h.admin.execute("DROP OWNED BY \(role); DROP ROLE \(role)") }
        try h.start()
        let writer = try PostgresConnection(url: h.url.replacingOccurrences(of: "user=postgres", with: "user=\(role)"))
        XCTAssertEqual(try writer.execute("SELECT current_user").scalar, role)
        for step in 0..<40 {
            try writer.execute("INSERT INTO public.readings VALUES ('w', to_timestamp($1::float8), $2::float8)",
                               [String(t0 + Double(step) * 60), String(DaemonHarness.value(sensor: 0, step: step))])
        }
        waitAccounted(h, rows: 40)
        h.waitFor("SELECT count(*) FROM forecast.latest WHERE series = 'w'") { $0 == "1" }
        XCTAssertEqual(try unaccounted(h), [])
        XCTAssertEqual(h.stop(), 0)
    }

    func testAMissingSecondSourceDoesNotHoldBackReadyOrTheFirst() throws {
        let second = DaemonHarness.secondSource("public.later")
        let h = try DaemonHarness(notifySocket: true)
        try h.writeConfig(second)
        let m = try ForecastdProcess.run(["migrate", "--config", h.configPath], environment: ["FORECASTD_DATABASE_URL": ""])
        XCTAssertEqual(m.status, 0, "a table that does not exist yet is a warning: \(m.stderr)")
        XCTAssertTrue(m.stderr.contains("public.later"), m.stderr)
        try h.start()
        let notify = try XCTUnwrap(h.notify)
        let deadline = Date().addingTimeInterval(30)
        while !notify.assignments.contains(where: { $0.1 == "READY=1" }) && Date() < deadline { usleep(50_000) }
        XCTAssertTrue(notify.assignments.contains { $0.1 == "READY=1" }, "READY with one source missing")
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<40))
        waitAccounted(h, rows: 80)
        h.waitFor("SELECT problem FROM forecast.sources WHERE source = 'public.later'") { $0?.contains("does not exist") == true }
        let statusDeadline = Date().addingTimeInterval(15)
        while !notify.assignments.contains(where: { $0.1.hasPrefix("STATUS=") && $0.1.contains("public.later:") }) && Date() < statusDeadline {
            usleep(100_000)
        }
        XCTAssertTrue(notify.assignments.contains { $0.1.hasPrefix("STATUS=") && $0.1.contains("public.later:") }, "\(notify.assignments)")
        // Created later: migrate installs its trigger and the daemon picks it up by itself.
        try h.admin.execute("CREATE TABLE public.later (sensor text, ts timestamptz, reading float8)")
        try h.admin.execute("INSERT INTO public.later SELECT 'l', to_timestamp(\(t0) + g * 60), g FROM generate_series(0, 9) g")
        XCTAssertEqual(try ForecastdProcess.run(["migrate", "--config", h.configPath], environment: ["FORECASTD_DATABASE_URL": ""]).status, 0)
        h.waitFor("SELECT observations FROM forecast.status WHERE source = 'public.later'") { $0 == "10" }
        h.waitFor("SELECT count(*) FROM forecast.sources WHERE source = 'public.later' AND problem IS NULL") { $0 == "1" }
        XCTAssertEqual(h.stop(), 0)
    }

    func testASecondDaemonOnTheSameSourceWaitsForTheFirstsLock() throws {
        let h = try DaemonHarness()
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<40))
        waitAccounted(h, rows: 80)
        let secondLog = h.directory.appendingPathComponent("second.log").path
        let second = try ForecastdProcess.startDaemon(config: h.configPath, log: secondLog)
        defer { if second.isRunning { kill(second.processIdentifier, SIGKILL); second.waitUntilExit() } }
        func secondSays(_ text: String) -> Bool {
            let deadline = Date().addingTimeInterval(30)
            while Date() < deadline {
                if ((try? String(contentsOfFile: secondLog, encoding: .utf8)) ?? "").contains(text) { return true }
                usleep(100_000)
            }
            return false
        }
        XCTAssertTrue(secondSays("is processed by another forecastd"), "the second daemon says why it waits")
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 40..<50))
        waitAccounted(h, rows: 100)
        // The first stops: the second takes over from the committed state.
        XCTAssertEqual(h.stop(), 0)
        XCTAssertTrue(secondSays("writer lock acquired"), "the second takes over")
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 50..<60))
        waitAccounted(h, rows: 120)
        XCTAssertEqual(try unaccounted(h), [])
        XCTAssertEqual(try h.count("SELECT count(*) FROM (SELECT series, ts FROM forecast.predictions GROUP BY 1, 2 HAVING count(*) > 1) d"), 0)
        kill(second.processIdentifier, SIGTERM)
        second.waitUntilExit()
        XCTAssertEqual(second.terminationStatus, 0)
    }

    /// The README's grants are enough: migrate and run as a role that is not a superuser, the
    /// application writes as a role that has only INSERT on its table.
    func testMigrateAndRunWithoutASuperuserAsTheReadmeSays() throws {
        let url = try TestDatabase.fresh()
        let admin = try PostgresConnection(url: url)
        let db = try XCTUnwrap(admin.execute("SELECT current_database()").scalar)
        let suffix = String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let daemon = "fd_\(suffix)", app = "app_\(suffix)"
        try admin.execute("CREATE ROLE \(daemon) LOGIN NOSUPERUSER; CREATE ROLE \(app) LOGIN NOSUPERUSER")
        defer { _ = try? admin.execute("DROP OWNED BY \(daemon), \(app)") }
        try admin.execute("CREATE TABLE public.prices (symbol text, ts timestamptz, price numeric)")
        try admin.execute("INSERT INTO public.prices SELECT 'old', to_timestamp(\(t0) + g * 60), g FROM generate_series(0, 39) g")
        try admin.execute("""
            GRANT CREATE ON DATABASE \(PostgresConnection.quoteIdentifier(db)) TO \(daemon);
            GRANT USAGE ON SCHEMA public TO \(daemon), \(app);
            GRANT SELECT, TRIGGER ON public.prices TO \(daemon);
            GRANT INSERT ON public.prices TO \(app)
            """)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("grants-\(suffix)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("f.toml").path
        let daemonURL = url.replacingOccurrences(of: "user=postgres", with: "user=\(daemon)")
        try """
            [database]
            url = "\(daemonURL)"
            [[source]]
            table = "public.prices"
            series_column = "symbol"
            time_column = "ts"
            value_column = "price"
            [ingest]
            poll_interval = 0.5
            \(DaemonHarness.smallModel)
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let m = try ForecastdProcess.run(["migrate", "--config", config], environment: ["FORECASTD_DATABASE_URL": ""])
        XCTAssertEqual(m.status, 0, m.stderr)
        let p = try ForecastdProcess.startDaemon(config: config)
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() } }
        let writer = try PostgresConnection(url: url.replacingOccurrences(of: "user=postgres", with: "user=\(app)"))
        for g in 0..<40 {
            try writer.execute("INSERT INTO public.prices VALUES ('new', to_timestamp($1::float8), $2)", [String(t0 + Double(g) * 60), String(g)])
        }
        let deadline = Date().addingTimeInterval(60)
        var accounted = ""
        while Date() < deadline {
            accounted = try admin.execute("SELECT string_agg(series || '=' || (observations + bad_rows_total), ',' ORDER BY series) FROM forecast.status").scalar ?? ""
            if accounted == "new=40,old=40" { break }
            usleep(100_000)
        }
        XCTAssertEqual(accounted, "new=40,old=40", "history queued by migrate and the application's rows")
        XCTAssertEqual(try admin.execute("SELECT rolsuper FROM pg_roles WHERE rolname = '\(daemon)'").scalar, "f")
        kill(p.processIdentifier, SIGTERM)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
    }

    /// kill -9 right after an incident was flagged, with the last checkpoint from before it: the
    /// restarted daemon knows the flag from what it committed, so the incident is not paged again
    /// inside its cooldown.
    func testKill9DuringAnIncidentDoesNotPageItTwice() throws {
        let h = try DaemonHarness()
        // Checkpoints only at retrains and shutdown: the state a kill -9 leaves predates the flag.
        let text = try String(contentsOfFile: h.configPath, encoding: .utf8)
        XCTAssertTrue(text.contains("[checkpoints]\ninterval = 2\n"))
        try text.replacingOccurrences(of: "[checkpoints]\ninterval = 2\n", with: "[checkpoints]\ninterval = 3600\n")
            .write(toFile: h.configPath, atomically: true, encoding: .utf8)
        // Hourly values (the range check wants a day of them) with spikes far outside their range.
        func hourly(_ steps: Range<Int>, spikes: [Int: Double] = [:]) -> [(String, Double, Double?)] {
            steps.map { ("s0", t0 + Double($0) * 3600, DaemonHarness.value(sensor: 0, step: $0) + (spikes[$0] ?? 0)) }
        }
        try h.start()
        try h.insert(hourly(0..<140))
        waitAccounted(h, rows: 140)
        try h.insert(hourly(140..<141, spikes: [140: 40]))
        h.waitFor("SELECT count(*) FROM forecast.predictions WHERE is_anomaly") { $0 == "1" }
        h.kill9()
        try h.start()
        h.waitFor("SELECT 1") { _ in h.log.components(separatedBy: "loaded ").count >= 3 }
        // The incident goes on: a larger spike 5 points later (outside any range that includes the
        // first), well inside the 100-point cooldown.
        try h.insert(hourly(141..<150, spikes: [145: 90]))
        waitAccounted(h, rows: 150)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.predictions WHERE is_anomaly"), 1,
                       "still one flag: the cooldown went on across the kill -9")
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.anomalies WHERE reason = 'out_of_range'"), 1,
                       "the flag says which check fired")
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.predictions WHERE reason IS NOT NULL AND NOT is_anomaly"), 0)
        XCTAssertGreaterThan(try h.count("SELECT count(*) FROM forecast.predictions WHERE ts = to_timestamp(\(t0 + 145 * 3600)) AND anomaly_score >= 0.3"), 0,
                             "the second spike is seen (and scored), only not paged")
        XCTAssertEqual(try unaccounted(h), [])
        XCTAssertEqual(h.stop(), 0)
    }

    func testCRLFConfigurationReadsLikeLF() throws {
        let h = try DaemonHarness()
        let text = try String(contentsOfFile: h.configPath, encoding: .utf8).replacingOccurrences(of: "\n", with: "\r\n")
        try text.write(toFile: h.configPath, atomically: true, encoding: .utf8)
        let r = try ForecastdProcess.run(["check-config", "--config", h.configPath])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("source public.readings"), r.stdout)
        XCTAssertTrue(r.stdout.contains("model.hidden = [8]"), r.stdout)
    }
}
