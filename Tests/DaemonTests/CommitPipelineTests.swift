import Foundation
import Ingest
import TestSupport
import XCTest

/// The commit of a batch runs beside the next cycle: while one commit waits in the database,
/// the daemon reads and forecasts the rows that arrive after it, and nothing is counted twice
/// or lost when the commit goes through.
final class CommitPipelineTests: XCTestCase {
    /// Backends of this test's database waiting for a lock.
    private func lockWaits(_ h: DaemonHarness) throws -> Int {
        try h.count("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
    }

    /// The newest `N observations` in STATUS=.
    private func statusObservations(_ notify: NotifyListener) -> Int? {
        for (_, line) in notify.assignments.reversed() where line.hasPrefix("STATUS=") {
            guard let r = line.range(of: #"(\d+) observations"#, options: .regularExpression) else { continue }
            return Int(line[r].split(separator: " ")[0])
        }
        return nil
    }

    func testTheNextBatchIsForecastWhileACommitWaitsInTheDatabase() throws {
        let h = try DaemonHarness(notifySocket: true)
        // No periodic checkpoint inside the test: a checkpoint waits for the commit in flight.
        try h.writeConfig(DaemonHarness.smallModel, checkpointInterval: 600)
        try h.start(watchdogSeconds: 0.6)  // STATUS= every 0.2 s
        let notify = try XCTUnwrap(h.notify)
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<40))
        h.waitFor("SELECT sum(observations) FROM forecast.status") { $0 == "80" }
        h.waitFor("SELECT count(*) FROM forecast.latest") { $0 == "2" }

        // Another session locks the state table against writes, so the next commit waits for it
        // in the database. A table lock takes no transaction id (a row lock would), so the
        // blocker does not hold back the ingest's snapshot horizon and new rows stay readable.
        let blocker = try PostgresConnection(url: h.url)
        try blocker.execute("BEGIN")
        try blocker.execute("LOCK TABLE forecast.series_state IN EXCLUSIVE MODE")
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 40..<41))
        let waitDeadline = Date().addingTimeInterval(30)
        while try lockWaits(h) < 1 && Date() < waitDeadline { usleep(50_000) }
        let activity = try h.admin.execute("SELECT pid, datname, state, wait_event_type, wait_event, left(query, 80) FROM pg_stat_activity").rows.map { $0.map { $0 ?? "-" }.joined(separator: " | ") }.joined(separator: "\n") + "\n" + h.log.suffix(1500)
        XCTAssertEqual(try lockWaits(h), 1, activity)

        // Rows that arrive now are read and forecast beside the waiting commit.
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 41..<42))
        let deadline = Date().addingTimeInterval(30)
        while (statusObservations(notify) ?? 0) < 84 && Date() < deadline { usleep(50_000) }
        XCTAssertEqual(statusObservations(notify), 84, "the rows after the waiting commit were forecast")
        XCTAssertEqual(try lockWaits(h), 1, "the first commit is still waiting")
        XCTAssertEqual(try h.count("SELECT sum(observations) FROM forecast.status"), 80, "nothing committed yet")

        try blocker.execute("ROLLBACK")
        h.waitFor("SELECT sum(observations) FROM forecast.status") { $0 == "84" }
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.ingest_queue"), 0)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL AND ts >= to_timestamp(\(DaemonHarness.t0 + 40 * 60))"), 4,
                       "each of the four rows has its one completed prediction")
        XCTAssertEqual(h.stop(), 0)
    }

    /// A checkpoint is written beside the cycles, on a connection of its own: while one waits
    /// in the database (here for a lock on forecast.models), rows that arrive are read, forecast
    /// and committed, and nothing is lost or counted twice when it goes through. Before, the
    /// cycle stopped for every checkpoint, and then the batches after it waited for it.
    func testRowsAreForecastAndCommittedWhileACheckpointWaitsInTheDatabase() throws {
        let h = try DaemonHarness(notifySocket: true)
        try h.writeConfig(DaemonHarness.smallModel, checkpointInterval: 1)
        try h.start(watchdogSeconds: 0.6)
        let notify = try XCTUnwrap(h.notify)
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<40))
        h.waitFor("SELECT sum(observations) FROM forecast.status") { $0 == "80" }
        h.waitFor("SELECT count(*) FROM forecast.latest") { $0 == "2" }
        h.waitFor("SELECT count(*) FROM forecast.models WHERE engine_state IS NOT NULL") { $0 != "0" }

        let blocker = try PostgresConnection(url: h.url)
        try blocker.execute("BEGIN")
        try blocker.execute("LOCK TABLE forecast.models IN EXCLUSIVE MODE")
        let newestState = "SELECT md5(engine_state) FROM forecast.models ORDER BY version DESC LIMIT 1"
        let before = try h.admin.execute(newestState).scalar
        // The next checkpoint (one is due every second) waits for the lock.
        let waitDeadline = Date().addingTimeInterval(30)
        while try lockWaits(h) < 1 && Date() < waitDeadline { usleep(50_000) }
        let activity = try h.admin.execute("SELECT pid, state, wait_event_type, wait_event, left(query, 80) FROM pg_stat_activity WHERE datname = current_database()").rows.map { $0.map { $0 ?? "-" }.joined(separator: " | ") }.joined(separator: "\n") + "\n" + h.log.suffix(1500)
        XCTAssertEqual(try lockWaits(h), 1, activity)
        XCTAssertEqual(try h.count("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%forecast.models%'"), 1,
                       "the waiting statement is the checkpoint's\n" + activity)

        try h.insert(DaemonHarness.rows(sensors: 2, steps: 40..<42))
        let deadline = Date().addingTimeInterval(30)
        while (statusObservations(notify) ?? 0) < 84 && Date() < deadline { usleep(50_000) }
        XCTAssertEqual(statusObservations(notify), 84, "the rows that came during the checkpoint were forecast")
        h.waitFor("SELECT sum(observations) FROM forecast.status") { $0 == "84" }
        XCTAssertEqual(try lockWaits(h), 1, "their batch was committed while the checkpoint still waits")
        XCTAssertEqual(try h.admin.execute(newestState).scalar, before, "the stored state is the last one written")

        try blocker.execute("ROLLBACK")
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.ingest_queue"), 0)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL AND ts >= to_timestamp(\(DaemonHarness.t0 + 40 * 60))"), 4,
                       "each of the four rows has its one completed prediction")
        // Checkpoints go on: the next holds the four new observations.
        h.waitFor(newestState) { $0 != nil && $0 != before }
        XCTAssertEqual(h.stop(), 0)
        XCTAssertFalse(h.log.contains("stopped without a final checkpoint"), h.log.suffix(2000).description)
    }

    /// A daemon killed while its checkpoint is being written (here held by a lock on
    /// forecast.models) leaves the last checkpoint in place; the next start goes on from it and
    /// the rows since, and every row is observed once with its one completed prediction.
    func testAKillWhileACheckpointIsWrittenLeavesTheLastOneAndLosesNothing() throws {
        let h = try DaemonHarness()
        try h.writeConfig(DaemonHarness.smallModel, checkpointInterval: 1)
        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 0..<40))
        h.waitFor("SELECT sum(observations) FROM forecast.status") { $0 == "80" }
        h.waitFor("SELECT count(*) FROM forecast.models WHERE engine_state IS NOT NULL") { $0 != "0" }
        let newestState = "SELECT md5(engine_state) || state_generation FROM forecast.models ORDER BY version DESC LIMIT 1"

        let blocker = try PostgresConnection(url: h.url)
        try blocker.execute("BEGIN")
        try blocker.execute("LOCK TABLE forecast.models IN EXCLUSIVE MODE")
        let before = try h.admin.execute(newestState).scalar
        let waitDeadline = Date().addingTimeInterval(30)
        while try lockWaits(h) < 1 && Date() < waitDeadline { usleep(50_000) }
        XCTAssertEqual(try lockWaits(h), 1, h.log.suffix(1500).description)
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 40..<42))
        h.waitFor("SELECT sum(observations) FROM forecast.status") { $0 == "84" }
        h.kill9()
        try blocker.execute("ROLLBACK")
        XCTAssertEqual(try h.admin.execute(newestState).scalar, before, "the checkpoint cut off was never pointed at")

        try h.start()
        try h.insert(DaemonHarness.rows(sensors: 2, steps: 42..<44))
        h.waitFor("SELECT sum(observations) FROM forecast.status") { $0 == "88" }
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.ingest_queue"), 0)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.predictions WHERE actual IS NOT NULL AND ts >= to_timestamp(\(DaemonHarness.t0 + 40 * 60))"), 8,
                       "each of the eight rows since has its one completed prediction")
        XCTAssertEqual(try h.count("SELECT count(*) - count(DISTINCT (series, ts)) FROM forecast.predictions"), 0)
        // Checkpoints go on after the restart, and what the cut-off one wrote is gone.
        h.waitFor(newestState) { $0 != nil && $0 != before }
        XCTAssertEqual(h.stop(), 0)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.model_state_chunks c JOIN forecast.models m USING (source, model_key, version) WHERE c.generation <> m.state_generation"), 0)
    }
}
