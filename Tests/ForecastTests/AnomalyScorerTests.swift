import Foundation
import XCTest
@testable import Forecast

final class AnomalyScorerTests: XCTestCase {
    /// Standard-normal residuals from a fixed seed.
    func gaussian(_ n: Int, seed: UInt64 = 3) -> [Double] {
        var rng = SeededGenerator(seed: seed)
        return (0..<n).map { _ in rng.nextGaussian() }
    }

    /// Scores residuals (robust scale 1) and values with a fresh scorer.
    func run(_ residuals: [Double], values: [Double]? = nil, config: AnomalyConfig = AnomalyConfig())
        -> [(score: Double, flagged: Bool)] {
        var s = AnomalyScorer(config: config)
        return residuals.indices.map { i in s.score(residual: residuals[i], scale: 1, value: values?[i]) }
    }

    func testDefaultsAreValidAndBadSettingsAreNamed() throws {
        XCTAssertNoThrow(try AnomalyConfig().validate())
        var c = AnomalyConfig()
        c.rawScale = 0
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("anomaly.raw_scale")) }
        c = AnomalyConfig()
        c.rangeTolerance = -1
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("anomaly.range_tolerance")) }
        c = AnomalyConfig()
        c.minSpread = 0
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("anomaly.min_spread")) }
    }

    func testNoAnomalyGivesNoFlags() {
        let values = gaussian(3000, seed: 11).map { 50 + 5 * $0 }
        let out = run(gaussian(3000), values: values)
        XCTAssertTrue(out.allSatisfy { $0.score >= 0 && $0.score <= 1 })
        XCTAssertLessThanOrEqual(out.filter(\.flagged).count, 1)
    }

    func testLevelShiftInResidualsIsFlaggedOnceWithoutFlapping() {
        var r = gaussian(1500)
        for i in 1000..<1060 { r[i] += 6 }   // a sustained burst of large residuals
        let out = run(r)
        let flags = out.indices.filter { out[$0].flagged }
        XCTAssertEqual(flags.count, 1, "flags at \(flags)")
        XCTAssertTrue((1000..<1015).contains(flags.first ?? -1), "flags at \(flags)")
        // HTM's filter: the score is high once, not on every point of the incident.
        XCTAssertLessThan(out[1000..<1060].filter { $0.score >= 0.5 }.count, 5)
    }

    func testUnexpectedValueOutsideTheSeenRangeScoresOne() {
        let values = gaussian(600, seed: 5).map { 100 + $0 } + [140] + gaussian(100, seed: 6).map { 100 + $0 }
        var residuals = gaussian(values.count)
        residuals[600] = 5   // the model did not expect it either
        let out = run(residuals, values: values)
        XCTAssertEqual(out[600].score, 1)
        XCTAssertTrue(out[600].flagged)
        XCTAssertEqual(out.filter(\.flagged).count, 1)
        // The same value, predicted well (e.g. a trend the model follows), is not an anomaly.
        residuals[600] = 0.5
        let expected = run(residuals, values: values)
        XCTAssertLessThan(expected[600].score, 0.5)
        XCTAssertFalse(expected[600].flagged)
    }

    func testScaleInvariance() {
        var values = gaussian(1500, seed: 8).map { 20 + $0 }
        values[1200] = 40
        let r = gaussian(1500)
        var a = AnomalyScorer(config: AnomalyConfig())
        var b = AnomalyScorer(config: AnomalyConfig())
        for i in r.indices {
            var ri = r[i]
            if i == 900 { ri = 30 }
            let x = a.score(residual: ri, scale: 0.7, value: values[i])
            let y = b.score(residual: ri * 1000, scale: 700, value: values[i] * 1000)
            XCTAssertEqual(x.flagged, y.flagged, "point \(i)")
            XCTAssertEqual(x.score, y.score, accuracy: 1e-9, "point \(i)")
        }
    }

    func testEngineFlagsSpikeOnceAndSameFlagsAtAnyScaleAndIntervalsStayNarrow() throws {
        var c = EngineConfig()   // small and fast, as in StreamingEngineTests
        c.hiddenSizes = [8]
        c.seqLength = 12
        c.warmup = 60
        c.retrainEvery = 40
        c.history = 120
        c.initialEpochs = 3
        c.epochs = 1
        c.residualWindow = 100
        c.anomaly.minHistory = 50
        func series(_ k: Double) -> [Observation] {
            var rng = SeededGenerator(seed: 4)
            return (0..<400).map { i in
                var v = 10 + sin(Double(i) * 2 * .pi / 24) + 0.1 * rng.nextGaussian()
                if i == 330 { v += 8 }
                return Observation(series: "s", time: 1_700_000_000 + Double(i) * 60, value: k * v)
            }
        }
        let small = try StreamingEngine(config: c).process(series(1))
        let big = try StreamingEngine(config: c).process(series(1000))
        let flagsSmall = small.indices.filter { small[$0].isAnomaly }
        let flagsBig = big.indices.filter { big[$0].isAnomaly }
        XCTAssertEqual(flagsSmall, [330])
        XCTAssertEqual(flagsSmall, flagsBig)
        // The spike's residual is kept out of the residual window: intervals after it are
        // as narrow as before it.
        let before = try XCTUnwrap(small[329].next)
        let after = try XCTUnwrap(small[340].next)
        let widthBefore = before.upper - before.lower
        let widthAfter = after.upper - after.lower
        XCTAssertLessThan(widthAfter, 1.5 * widthBefore)
    }
}
