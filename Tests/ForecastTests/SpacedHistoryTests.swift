import XCTest
@testable import Forecast

/// The sampled histories of the windowed checks: the same statistics as keeping every value,
/// in a bounded number of samples.
final class SpacedHistoryTests: XCTestCase {
    /// Differences of two adjacent day-long window means over noise: what a level-shift check
    /// records, overlapping windows and all.
    func windowedDifferences(count: Int, window: Int, seed: UInt64) -> [Double] {
        var rng = SeededGenerator(seed: seed)
        let x = (0..<(count + 2 * window)).map { i in rng.nextGaussian() + sin(Double(i) / 1440 * 2 * .pi) }
        var prefix = [0.0]
        for v in x { prefix.append(prefix.last! + v) }
        return (0..<count).map { i in
            let older = (prefix[i + window] - prefix[i]) / Double(window)
            let newer = (prefix[i + 2 * window] - prefix[i + window]) / Double(window)
            return newer - older
        }
    }

    func testAShortSpanKeepsEveryValueExactlyAsRollingStats() {
        var spaced = SpacedHistory(span: 1000, maxSamples: 1000)
        var full = HalfStats(capacity: 1000)
        for d in windowedDifferences(count: 3000, window: 288, seed: 1) {
            spaced.push(d)
            full.push(d)
        }
        XCTAssertEqual(spaced.stride, 1)
        XCTAssertEqual(spaced.values, full.values)
        XCTAssertEqual(spaced.mean, full.mean)
        XCTAssertEqual(spaced.variance, full.variance)
        XCTAssertEqual(spaced.pointsCovered, 1000)
    }

    func testThreeDaysOfOneMinuteDifferencesAreSampledWithTheSameMeanAndSpread() {
        // One-minute data: a day-long window, a three-day history of 4,320 differences.
        var spaced = SpacedHistory(span: 4320, maxSamples: 1000)
        var full = RollingStats<Float>(capacity: 4320)
        let d = windowedDifferences(count: 9000, window: 1440, seed: 2)
        for v in d {
            spaced.push(v)
            full.push(v)
        }
        XCTAssertEqual(spaced.stride, 5)
        XCTAssertEqual(spaced.count, 864)
        XCTAssertEqual(spaced.pointsCovered, 4320)
        XCTAssertLessThan(spaced.bytesHeld, 900 * 4)
        let sdFull = full.variance.squareRoot(), sdSpaced = spaced.variance.squareRoot()
        XCTAssertEqual(spaced.mean, full.mean, accuracy: 0.01 * sdFull)
        XCTAssertEqual(sdSpaced, sdFull, accuracy: 0.01 * sdFull)
        // The kept values are offered ones, one in five (to Float16's eleven bits).
        for (kept, i) in zip(spaced.values.suffix(3), [8985, 8990, 8995]) {
            XCTAssertEqual(kept, d[i], accuracy: abs(d[i]) / 2048)
        }
    }

    func testRestoringADenserHistoryThinsItToTheSpacing() {
        // A checkpoint written before histories were sampled: 4,320 consecutive differences.
        let saved = (0..<4320).map(Double.init)
        var h = SpacedHistory(span: 4320, maxSamples: 1000)
        h.restore(saved)
        XCTAssertEqual(h.count, 864)
        // (Held to Float16's eleven bits: 4,319 comes back as 4,320.)
        XCTAssertEqual(h.values.last!, 4319, accuracy: 4319 / 2048)
        XCTAssertEqual(h.values.first!, Double(4319 - 5 * 863), accuracy: 4319 / 2048)
        // Samples saved at this spacing come back as they were.
        var again = SpacedHistory(span: 4320, maxSamples: 1000)
        again.restore(h.values)
        XCTAssertEqual(again.values, h.values)
    }
}
