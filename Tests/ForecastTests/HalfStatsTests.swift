import XCTest
@testable import Forecast

/// The windowed checks' two-byte histories: precision at any scale, a unit that follows the
/// values up and down, and sums that stay those of the values held.
final class HalfStatsTests: XCTestCase {
    func testWideningByBitsIsTheLibrarysConversionForEveryFloat16() {
        for bits in 0...UInt16.max {
            let h = Float16(bitPattern: bits)
            if h.isNaN { XCTAssertTrue(h.widened.isNaN); continue }
            XCTAssertEqual(h.widened.bitPattern, Float(h).bitPattern, "bits \(bits)")
        }
    }

    func testValuesAtAnyScaleKeepElevenBitsAndTheSumsMatchThem() {
        var rng = SeededGenerator(seed: 5)
        for scale in [1e-7, 1.0, 3e4, 1e12] {
            var h = HalfStats(capacity: 1000)
            var offered: [Double] = []
            for _ in 0..<2500 {
                let v = scale * rng.nextGaussian()
                h.push(v)
                offered.append(v)
            }
            let kept = h.values
            XCTAssertEqual(kept.count, 1000)
            let largest = offered.suffix(1000).map(abs).max()!
            for (k, v) in zip(kept, offered.suffix(1000)) {
                XCTAssertEqual(k, v, accuracy: max(abs(v) / 2048, largest * 0x1p-24), "scale \(scale)")
            }
            let mean = kept.reduce(0, +) / 1000
            let variance = kept.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 1000
            XCTAssertEqual(h.mean, mean, accuracy: 1e-9 * scale)
            XCTAssertEqual(h.variance, variance, accuracy: 1e-9 * variance)
            XCTAssertLessThanOrEqual(h.bytesHeld, 1000 * 2 + 64, "two bytes a value")
        }
    }

    func testAShockRaisesTheUnitAndItsLeavingLowersItAgain() {
        var h = HalfStats(capacity: 100)
        for i in 0..<100 { h.push(Double(i % 7) * 0.001) }
        h.push(1e9)                                   // a shock: the unit rises at once
        XCTAssertEqual(h.values.last!, 1e9, accuracy: 1e9 / 2048)
        for i in 0..<300 { h.push(Double(i % 7) * 0.001 + 0.0005) }
        // The shock has left; the unit has come down, so small values are held to 11 bits again.
        for (k, i) in zip(h.values, 200..<300) {
            let v = Double(i % 7) * 0.001 + 0.0005
            XCTAssertEqual(k, v, accuracy: v / 2048)
        }
        XCTAssertEqual(h.mean, h.values.reduce(0, +) / 100, accuracy: 1e-12)
        // Zeros before any other value are held exactly.
        var z = HalfStats(capacity: 10)
        for _ in 0..<5 { z.push(0) }
        z.push(-3)
        XCTAssertEqual(z.values, [0, 0, 0, 0, 0, -3])
    }
}
