import XCTest
@testable import Forecast

final class ResidualWindowTests: XCTestCase {
    /// The quantiles of a sorted copy of the last `capacity` residuals (what the window held
    /// before its order became slot numbers), under appends, ties, signed zeros, skipped
    /// non-finite values and rescaling.
    func testQuantilesAreThoseOfTheSortedResiduals() {
        var rng = SeededGenerator(seed: 29)
        let qs = [0, 0.025, 0.25, 0.5, 0.75, 0.975, 1]
        for capacity in [1, 2, 10, 500] {
            var window = ResidualWindow(capacity: capacity)
            var kept: [Float] = []
            for step in 0..<(4 * capacity + 50) {
                let r: Double
                switch rng.next() % 6 {
                case 0: r = Double(rng.next() % 4) - 1.5          // ties
                case 1: r = rng.next() % 2 == 0 ? 0.0 : -0.0
                case 2: r = rng.next() % 2 == 0 ? .nan : .infinity
                default: r = rng.nextGaussian() * 3
                }
                window.add(r)
                if Float(r).isFinite {
                    kept.append(Float(r))
                    if kept.count > capacity { kept.removeFirst() }
                }
                if step % 97 == 13 {
                    let factor = 0.5 + Double(rng.next() % 1000) / 400
                    window.rescale(by: factor)
                    kept = kept.map { Float(Double($0) * factor) }
                }
                XCTAssertEqual(window.count, kept.count)
                let sorted = kept.sorted()
                for q in qs {
                    guard let got = window.quantile(q) else { XCTAssertTrue(kept.isEmpty); continue }
                    let pos = q * Double(sorted.count - 1)
                    let lo = Int(pos.rounded(.down)), hi = min(lo + 1, sorted.count - 1)
                    let a = Double(sorted[lo]), b = Double(sorted[hi])
                    let want = a + (b - a) * (pos - Double(lo))
                    XCTAssertEqual(got, want, "capacity \(capacity), step \(step), q \(q)")
                }
            }
            XCTAssertEqual(window.values, kept.map(Double.init), "capacity \(capacity): oldest first")
        }
    }

    /// A full window holds its residuals and two bytes of order for each, not a second copy.
    func testFullWindowHoldsSixBytesAResidual() {
        var window = ResidualWindow(capacity: 500)
        for i in 0..<700 { window.add(Double(i % 37) * 0.1) }
        XCTAssertLessThanOrEqual(window.bytesHeld, 500 * 6 + 64)
    }

    func testWindowsBeyondTwoByteSlotsAreRefused() {
        var config = EngineConfig()
        config.residualWindow = ResidualWindow.maxCapacity + 1
        XCTAssertThrowsError(try config.validate()) { error in
            XCTAssertTrue("\(error)".contains("residual_window"), "\(error)")
        }
    }
}
