import Foundation
@testable import Replay
import XCTest

final class ProgressBarTests: XCTestCase {
    func testFormatOnATerminal() {
        let line = ProgressBar.format(completed: 7812, total: 17_420, unit: "points", elapsed: 6.33, done: false, bar: true)
        XCTAssertEqual(line, "[########------------] 44% 7,812/17,420 points  1,234 pts/s  ETA 0:08")
    }

    func testFormatWhenDoneAndWithoutTotal() {
        XCTAssertEqual(ProgressBar.format(completed: 100, total: 100, unit: "points", elapsed: 125, done: true, bar: false),
                       "100% 100/100 points  1 pts/s  done in 2:05")
        XCTAssertEqual(ProgressBar.format(completed: 5000, total: 0, unit: "rows", elapsed: 2, done: false, bar: true),
                       "5,000 rows  2,500 rows/s")
        XCTAssertEqual(ProgressBar.duration(3725), "1:02:05")
    }

    func testTerminalRedrawIsThrottled() {
        let clock = ManualClock()
        let out = Captured()
        let bar = ProgressBar(total: 1000, interactive: true, write: out.append, now: clock.read)
        for i in 1...1000 {
            clock.advance(0.001)  // 1 s in total: ~10 redraws
            bar.update(completed: i)
        }
        bar.finish()
        let lines = out.all
        XCTAssertLessThanOrEqual(lines.count, 12)
        XCTAssertGreaterThanOrEqual(lines.count, 9)
        XCTAssertTrue(lines.allSatisfy { $0.hasPrefix("\r") })
        XCTAssertTrue(lines.last!.hasSuffix("\n"))
        XCTAssertTrue(lines.last!.contains("100% 1,000/1,000 points"))
    }

    func testPlainOutputEveryFiveSecondsOrTenPercent() {
        let clock = ManualClock()
        let out = Captured()
        let bar = ProgressBar(total: 100, label: "replay", interactive: false, write: out.append, now: clock.read)
        for i in 1...100 {
            clock.advance(0.5)  // 50 s in total
            bar.advance()
            _ = i
        }
        bar.finish()
        bar.advance()  // ignored after finish
        let lines = out.all
        XCTAssertTrue(lines.allSatisfy { $0.hasPrefix("replay: ") && $0.hasSuffix("\n") && !$0.contains("\r") })
        XCTAssertGreaterThanOrEqual(lines.count, 10)
        XCTAssertLessThanOrEqual(lines.count, 12)
        XCTAssertTrue(lines.last!.contains("done in 0:50"))
    }
}

private final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var t = 0.0
    func advance(_ dt: Double) { lock.lock(); t += dt; lock.unlock() }
    var read: @Sendable () -> Double { { [self] in lock.lock(); defer { lock.unlock() }; return t } }
}

private final class Captured: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []
    var append: @Sendable (String) -> Void { { [self] s in lock.lock(); lines.append(s); lock.unlock() } }
    var all: [String] { lock.lock(); defer { lock.unlock() }; return lines }
}
