import XCTest
@testable import Forecast

/// The level-shift check's trimmed means, followed point by point from each half's sum and
/// extremes (`TrimmedSum`), are the means of the sorted halves without their `trim` share at
/// either end, as the check computed them before (sorted copies of both halves).
final class TrimmedSumTests: XCTestCase {
    /// The reference: both halves sorted afresh at every point.
    private func sortedDifferences(_ xs: [Double], window w: Int, trim: Double) -> [Double?] {
        let values = xs.map(Float.init)
        return values.indices.map { i in
            guard i + 1 >= 2 * w else { return nil }
            func mean(_ half: ArraySlice<Float>) -> Double {
                let sorted = half.sorted(), k = Int(Double(w) * trim)
                var sum = 0.0
                for j in k..<(sorted.count - k) { sum += Double(sorted[j]) }
                return sum / Double(sorted.count - 2 * k)
            }
            return mean(values[(i + 1 - w)...i]) - mean(values[(i + 1 - 2 * w)...(i - w)])
        }
    }

    private func differences(_ xs: [Double], window w: Int, trim: Double) -> [Double?] {
        var d = LevelShiftDetector(window: w, trim: trim, historyLength: 100)
        return xs.map { d.push($0, level: 1, threshold: 0.5, minHistory: .max).d }
    }

    func testTrimmedMeansAreThoseOfTheSortedHalves() {
        var rng = SeededGenerator(seed: 5)
        let n = 1200
        let noise = (0..<n).map { i in 100 + 10 * sin(Double(i) / 40) + Double(rng.nextGaussian()) }
        // Spikes in and out of the extremes, runs of equal values, a step, integers with ties.
        let spiky = noise.enumerated().map { i, v in i % 37 == 0 ? v + 500 : i % 53 == 0 ? v - 800 : v }
        let flat = (0..<n).map { i in Double((i / 50) % 3) }
        let counts = (0..<n).map { _ in Double(Int(rng.nextUnitFloat() * 5)) }
        let step = (0..<n).map { i in i < n / 2 ? 1.0 : 2.0 }
        let price = noise.map { 40_000 + $0 / 100 }
        for (name, xs) in [("noise", noise), ("spiky", spiky), ("flat", flat), ("counts", counts), ("step", step), ("price", price)] {
            for (w, trim) in [(288, 0.025), (72, 0.025), (40, 0.1), (24, 0.0), (100, 0.3)] {
                XCTAssertEqual(differences(xs, window: w, trim: trim), sortedDifferences(xs, window: w, trim: trim), "\(name), window \(w), trim \(trim)")
            }
        }
    }

    /// Values far apart in size (the sums are no longer exact) stay within rounding of the
    /// sorted means, and a value beyond Float's range does not turn the means into NaN.
    func testValuesOfEverySizeStayWithinRounding() {
        var rng = SeededGenerator(seed: 6)
        let xs = (0..<2000).map { i -> Double in
            let scale = [1e-6, 1.0, 1e9][Int(rng.nextUnitFloat() * 3) % 3]
            return scale * (1 + Double(rng.nextUnitFloat())) + (i == 700 ? 1e300 : 0)
        }
        let got = differences(xs, window: 100, trim: 0.05), want = sortedDifferences(xs.map { min($0, Double(Float.greatestFiniteMagnitude)) }, window: 100, trim: 0.05)
        for (g, w) in zip(got, want) {
            XCTAssertEqual(g == nil, w == nil)
            guard let g, let w else { continue }
            XCTAssertTrue(g.isFinite)
            XCTAssertEqual(g, w, accuracy: 1e-6 * max(1, abs(w)) + 1e-3)
        }
    }
}
