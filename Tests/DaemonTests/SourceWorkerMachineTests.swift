@testable import Daemon
import XCTest

/// The source worker's decisions, without a database: outage, broken source, reload and stop.
final class SourceWorkerMachineTests: XCTestCase {
    let settings = LiveSettings(pollInterval: 5, batchRows: 100, checkpointsKept: 3, checkpointInterval: 60)

    func testStartsByConnectingThenCyclesAndWaitsWhenCaughtUp() {
        var m = SourceWorkerMachine(settings: settings)
        XCTAssertEqual(m.start(), [.connect])
        XCTAssertEqual(m.connected(), [.runCycle])
        XCTAssertEqual(m.cycleCompleted(rows: 100), [.runCycle], "a full batch: more is waiting")
        XCTAssertEqual(m.cycleCompleted(rows: 3), [.waitForWork(seconds: 5)])
        XCTAssertEqual(m.waited(), [.runCycle])
    }

    func testOutageBacksOffDoublingUpToTheCapSaysSoOnceAndRecovers() {
        var m = SourceWorkerMachine(settings: settings)
        _ = m.start()
        _ = m.connected()
        let first = m.failed(.connection("server closed the connection"))
        XCTAssertEqual(first, [.markDatabaseDown, .log(.warning, "database unavailable, retrying with backoff: server closed the connection"),
                               .disconnect, .sleep(seconds: 0.5)])
        XCTAssertEqual(m.waited(), [.connect])
        var sleeps: [Double] = []
        for _ in 0..<8 {
            let a = m.failed(.connection("refused"))
            XCTAssertFalse(a.contains { if case .log = $0 { return true } else { return false } }, "said once: \(a)")
            if case .sleep(let s)? = a.last { sleeps.append(s) }
            XCTAssertEqual(m.waited(), [.connect])
        }
        XCTAssertEqual(sleeps, [1, 2, 4, 8, 16, 30, 30, 30])
        XCTAssertEqual(m.connected(), [.log(.notice, "database reachable again"), .runCycle])
        _ = m.cycleCompleted(rows: 0)
        XCTAssertEqual(m.failed(.connection("x")).last, .sleep(seconds: 0.5), "a good cycle resets the backoff")
    }

    func testBrokenSourceIsCountedAndLoggedOnceRetriedEveryPollAndRecovers() {
        var m = SourceWorkerMachine(settings: settings)
        _ = m.start()
        _ = m.connected()
        XCTAssertEqual(m.failed(.source("relation \"public.r\" does not exist")),
                       [.log(.error, "cannot read source: relation \"public.r\" does not exist"),
                        .reportProblem("relation \"public.r\" does not exist"),
                        .disconnectStore, .sleep(seconds: 5)])
        XCTAssertEqual(m.waited(), [.connect])
        XCTAssertEqual(m.failed(.source("relation \"public.r\" does not exist")), [.disconnectStore, .sleep(seconds: 5)],
                       "reported once per outage, not once per poll")
        XCTAssertEqual(m.waited(), [.connect])
        XCTAssertEqual(m.connected(), [.runCycle])
        XCTAssertEqual(m.cycleCompleted(rows: 0), [.log(.notice, "source readable again"), .reportProblem(nil),
                                                    .waitForWork(seconds: 5)])
        XCTAssertFalse(m.sourceBroken)
    }

    func testASecondDaemonWaitsForTheWriterLockSayingSoOnce() {
        var m = SourceWorkerMachine(settings: settings)
        _ = m.start()
        let held = "source public.r is processed by another forecastd (backend pid 42); waiting for its writer lock"
        XCTAssertEqual(m.failed(.locked(held)), [.log(.notice, held), .reportProblem(held), .disconnect, .sleep(seconds: 5)])
        XCTAssertEqual(m.waited(), [.connect])
        XCTAssertEqual(m.failed(.locked(held)), [.disconnect, .sleep(seconds: 5)], "said once")
        XCTAssertEqual(m.waited(), [.connect])
        XCTAssertEqual(m.connected(), [.log(.notice, "writer lock acquired: this daemon now processes the source"),
                                       .reportProblem(nil), .runCycle])
    }

    func testOtherFailuresAreLoggedAndRetriedWithBackoff() {
        var m = SourceWorkerMachine(settings: settings)
        _ = m.start()
        XCTAssertEqual(m.failed(.other("unexpected answer")), [.log(.error, "cycle failed: unexpected answer"), .disconnect, .sleep(seconds: 0.5)])
        XCTAssertEqual(m.failed(.other("again")).last, .sleep(seconds: 1))
    }

    func testReloadChangesThePollIntervalAndBatchSizeFromTheNextDecision() {
        var m = SourceWorkerMachine(settings: settings)
        _ = m.start()
        _ = m.connected()
        m.reload(LiveSettings(pollInterval: 0.5, batchRows: 10, checkpointsKept: 3, checkpointInterval: 60))
        XCTAssertEqual(m.cycleCompleted(rows: 10), [.runCycle], "10 rows are now a full batch")
        XCTAssertEqual(m.cycleCompleted(rows: 9), [.waitForWork(seconds: 0.5)])
        XCTAssertEqual(m.failed(.source("gone")).last, .sleep(seconds: 0.5))
    }

    func testStopShutsDownOnceWhateverWasPlanned() {
        var m = SourceWorkerMachine(settings: settings)
        _ = m.start()
        _ = m.connected()
        XCTAssertEqual(m.stop(), [.shutdown])
        XCTAssertEqual(m.stop(), [], "a second stop adds nothing")
        XCTAssertEqual(m.cycleCompleted(rows: 100), [], "no further cycle after a stop")
        XCTAssertEqual(m.waited(), [])
        XCTAssertEqual(m.failed(.connection("x")), [], "a failure while stopping does not start a backoff")
        XCTAssertEqual(m.connected(), [])
        m.finished()
        XCTAssertEqual(m.state, .stopped)
        XCTAssertEqual(m.stop(), [])
    }

    func testStopDuringABackoffEndsIt() {
        var m = SourceWorkerMachine(settings: settings)
        _ = m.start()
        _ = m.failed(.connection("down"))
        XCTAssertEqual(m.stop(), [.shutdown])
        XCTAssertEqual(m.waited(), [], "the backoff's end does not reconnect")
    }

    func testStandbyWaitsQuietlyEveryPollAndSaysOnceWhenTheLeaseIsWon() {
        var m = SourceWorkerMachine(settings: settings)
        _ = m.start()
        XCTAssertEqual(m.failed(.standby("standing by: public.r shard 2/4 is processed by worker b")),
                       [.log(.notice, "standing by: public.r shard 2/4 is processed by worker b"), .disconnect, .sleep(seconds: 5)],
                       "not a problem of the source: no reportProblem")
        XCTAssertEqual(m.waited(), [.connect])
        XCTAssertEqual(m.failed(.standby("standing by: this daemon holds its share")), [.disconnect, .sleep(seconds: 5)], "said once")
        XCTAssertEqual(m.waited(), [.connect])
        XCTAssertEqual(m.connected(), [.log(.notice, "lease acquired: this daemon now processes the shard"), .runCycle])
        XCTAssertEqual(m.failed(.standby("handed over")).first, .log(.notice, "handed over"), "a new standby is said again")
    }
}

/// The fair share of shards: what a daemon may take and what it must give up as daemons come and go.
final class ShardSharesTests: XCTestCase {
    func testADaemonTakesEveryShardAloneGivesHalfToAJoinerAndTakesThemBack() {
        var s = ShardShares(shards: ["r": 4])
        XCTAssertEqual((0..<5).map { _ in s.reserve("r") }, [true, true, true, true, false])
        XCTAssertFalse(s.giveUpOne("r"))
        s.setDaemons(["r": 2])
        XCTAssertEqual(s.entries["r"]?.share, 2)
        XCTAssertEqual((0..<4).map { _ in s.giveUpOne("r") }, [true, true, false, false], "exactly the excess, once each")
        XCTAssertFalse(s.reserve("r"), "at its share: a standby worker does not take a shard back")
        s.setDaemons(["r": 1])  // the other daemon died
        XCTAssertTrue(s.reserve("r"))
        s.release("r")  // its lock was not won yet
        XCTAssertEqual(s.entries["r"]?.held, 2)
        XCTAssertEqual((0..<3).map { _ in s.reserve("r") }, [true, true, false])
    }

    func testSharesRoundUpSoEveryShardHasAPlaceAndUnknownSourcesTakeNothing() {
        var s = ShardShares(shards: ["r": 8, "q": 1])
        s.setDaemons(["r": 3, "q": 5])
        XCTAssertEqual(s.entries["r"]?.share, 3, "3 + 3 + 2")
        XCTAssertEqual(s.entries["q"]?.share, 1, "one shard: every daemon may hold it (the lock picks one)")
        s.setDaemons([:])
        XCTAssertEqual(s.entries["r"]?.daemons, 1, "a registry not read yet counts this daemon alone")
        XCTAssertFalse(s.reserve("nope"))
    }
}
