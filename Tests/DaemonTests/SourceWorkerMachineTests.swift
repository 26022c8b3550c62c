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
}
