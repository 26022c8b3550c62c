import Foundation
import XCTest
@testable import Forecast

extension EngineConfig {
    /// A small, fast configuration for tests (debug builds are slow).
    static var smallForTests: EngineConfig {
        var c = EngineConfig()
        c.hiddenSizes = [8]
        c.seqLength = 12
        c.warmup = 60
        c.retrainEvery = 40
        c.history = 120
        c.initialEpochs = 3
        c.epochs = 1
        c.residualWindow = 100
        return c
    }
}

final class StreamingEngineTests: XCTestCase {
    func smallConfig() -> EngineConfig { .smallForTests }

    func noisySine(_ n: Int, series: String = "s", seed: UInt64 = 1, offset: Double = 10) -> [Observation] {
        var rng = SeededGenerator(seed: seed)
        return (0..<n).map { i in
            Observation(series: series, time: 1_700_000_000 + Double(i) * 60,
                        value: offset + sin(Double(i) * 2 * .pi / 24) + 0.1 * rng.nextGaussian())
        }
    }

    func testFirstForecastComesRightAfterWarmupAndIsForTheNextStep() throws {
        let engine = try StreamingEngine(config: smallConfig())
        let out = engine.process(noisySine(100))
        XCTAssertEqual(out.count, 100)
        let firstNext = out.firstIndex { $0.next != nil }
        XCTAssertEqual(firstNext, 59, "the forecast for point 60 is made once point 59 (the 60th) is seen")
        XCTAssertNil(out[59].forecast)
        XCTAssertNotNil(out[60].forecast)
        XCTAssertEqual(out[60].forecast, out[59].next)
        let f = try XCTUnwrap(out[59].next)
        XCTAssertEqual(f.time, out[60].observation.time)
        XCTAssertLessThanOrEqual(f.lower, f.value)
        XCTAssertGreaterThanOrEqual(f.upper, f.value)
        XCTAssertEqual(f.modelVersion, 1)
    }

    func testSameInputAndSeedGiveIdenticalResults() throws {
        let data = noisySine(200)
        let a = try StreamingEngine(config: smallConfig()).process(data)
        let b = try StreamingEngine(config: smallConfig()).process(data)
        XCTAssertEqual(a, b)
        var other = smallConfig()
        other.seed = 7
        let c = try StreamingEngine(config: other).process(data)
        XCTAssertNotEqual(a.compactMap { $0.next?.value }, c.compactMap { $0.next?.value })
    }

    func testCatchUpBatchEqualsOneByOneArrival() throws {
        let data = noisySine(150, series: "a") + noisySine(150, series: "b", seed: 2, offset: 100)
        let batched = try StreamingEngine(config: smallConfig()).process(data)
        let single = try StreamingEngine(config: smallConfig())
        // Interleave one point of each series at a time, as a live stream would.
        var oneByOne: [String: [ScoredObservation]] = [:]
        for i in 0..<150 {
            for o in [data[i], data[150 + i]] {
                oneByOne[o.series, default: []].append(single.process([o])[0])
            }
        }
        XCTAssertEqual(Array(batched[0..<150]), oneByOne["a"])
        XCTAssertEqual(Array(batched[150...]), oneByOne["b"])
    }

    func testBadRowsAreRejectedAndCountedWithoutStoppingTheSeries() throws {
        var data = noisySine(120)
        data.insert(Observation(series: "s", time: data[70].time, value: 3), at: 71)           // duplicate time
        data.insert(Observation(series: "s", time: data[10].time, value: 3), at: 80)           // out of order
        data.insert(Observation(series: "s", time: data[90].time + 1, value: nil), at: 91)      // missing
        data.insert(Observation(series: "s", time: data[100].time + 1, value: .nan), at: 101)   // NaN
        let engine = try StreamingEngine(config: smallConfig())
        let out = engine.process(data)
        XCTAssertEqual(out.count, data.count)
        XCTAssertEqual(out[71].rejected, .duplicateTime)
        XCTAssertEqual(out[80].rejected, .outOfOrderTime)
        XCTAssertEqual(out[91].rejected, .nullValue)
        XCTAssertEqual(out[101].rejected, .nonFiniteValue)
        XCTAssertEqual(engine.rejected["s"], [.duplicateTime: 1, .outOfOrderTime: 1, .nullValue: 1, .nonFiniteValue: 1])
        XCTAssertNotNil(out.last?.forecast, "the series goes on after bad rows")
    }

    func testIntervalsCoverRoughlyTheRequestedShare() throws {
        var c = smallConfig()
        c.coverage = 0.9
        let out = try StreamingEngine(config: c).process(noisySine(700))
        let scored = out[200...].compactMap { r -> Bool? in
            guard let f = r.forecast, let v = r.observation.value else { return nil }
            return v >= f.lower && v <= f.upper
        }
        let coverage = Double(scored.filter { $0 }.count) / Double(scored.count)
        XCTAssertGreaterThan(coverage, 0.8)
        XCTAssertLessThan(coverage, 0.97)
    }

    func testForecastsBeatPersistenceOnANoisySine() throws {
        var c = smallConfig()
        c.hiddenSizes = [16]
        c.initialEpochs = 10
        c.epochs = 2
        let data = noisySine(600)
        let out = try StreamingEngine(config: c).process(data)
        var acc = AccuracyAccumulator()
        for i in 300..<600 {
            guard let f = out[i].forecast else { continue }
            acc.add(actual: data[i].value!, predicted: f.value, lower: f.lower, upper: f.upper, previous: data[i - 1].value!)
        }
        let mase = try XCTUnwrap(acc.metrics.mase)
        XCTAssertLessThan(mase, 0.9, "MASE \(mase)")
    }

    func testLastValueScaleIsTheMeanAbsoluteMoveSoSpikesDoNotSquashOrdinaryMoves() {
        // 200 alternating unit moves around 10, then one spike of 500 and back.
        var u = (0..<201).map { 10 + Double($0 % 2) }
        u += [510, 10]
        let s = Scaler(fitting: u, for: .lastValue)
        XCTAssertEqual(s.std, (200 + 500 + 500) / 202, accuracy: 1e-12)
        // The RMS move would be ~50: ordinary moves would be 0.02 in model units.
        XCTAssertLessThan(s.std, 6.5)
        // A flagged spike is left out: only the ordinary unit moves count.
        var flags = [Bool](repeating: false, count: u.count)
        flags[201] = true
        XCTAssertEqual(Scaler(fitting: u, skipping: flags, for: .lastValue).std, 1)
        XCTAssertEqual(Scaler(fitting: [3, 3, 3], for: .lastValue).std, 1)
        XCTAssertEqual(Scaler(fitting: [1, 3], for: .zScore).std, 1)
    }

    func testIntervalsKeepTheirWidthWhenARetrainRefitsTheScale() throws {
        // A random walk with big steps for 100 points, then small ones. Once the big steps leave
        // the training history the refit scale drops several-fold, but the forecast errors of
        // the small-step stretch do not change, and neither may the interval width.
        var c = smallConfig()
        c.holdoutFraction = 0   // every retrain is installed, with its refit scaler
        var rng = SeededGenerator(seed: 11)
        var level = 100.0
        let data = (0..<400).map { i -> Observation in
            level += (i < 100 ? 5 : 1) * rng.nextGaussian()
            return Observation(series: "s", time: 1_700_000_000 + Double(i) * 60, value: level)
        }
        let engine = try StreamingEngine(config: c)
        let out = engine.process(data)
        let versions = out.map { $0.next?.modelVersion ?? 0 }
        var jumps: [Double] = []
        for i in 201..<399 where versions[i] != versions[i - 1] {
            let before = try XCTUnwrap(out[i - 1].next), after = try XCTUnwrap(out[i].next)
            jumps.append((after.upper - after.lower) / (before.upper - before.lower))
        }
        XCTAssertFalse(jumps.isEmpty, "no retrain installed after the big steps left the history")
        for j in jumps { XCTAssertEqual(j, 1, accuracy: 0.3, "interval width jumped by \(j) at a retrain") }
    }

    func testTransformsReportPredictionsInOriginalUnits() throws {
        for transform in TargetTransform.allCases {
            var c = smallConfig()
            c.transform = transform
            let data = noisySine(200, offset: 50)
            let out = try StreamingEngine(config: c).process(data)
            let values = out.compactMap { $0.next?.value }
            XCTAssertFalse(values.isEmpty, "\(transform)")
            for v in values { XCTAssert(v > 45 && v < 55, "\(transform): \(v)") }
        }
    }

    func testLogReturnRejectsNonPositivePrices() throws {
        var c = smallConfig()
        c.transform = .logReturn
        let engine = try StreamingEngine(config: c)
        let out = engine.process([Observation(series: "p", time: 0, value: 10), Observation(series: "p", time: 1, value: 0)])
        XCTAssertEqual(out[1].rejected, .notPositiveValue)
    }

    func testDivergedTrainingIsRolledBackAndRecorded() throws {
        var c = smallConfig()
        c.explodingGradNorm = 1e-12   // every training counts as exploding
        let engine = try StreamingEngine(config: c)
        let out = engine.process(noisySine(100))
        XCTAssertTrue(out.allSatisfy { $0.next == nil }, "no model was ever installed")
        let r = try XCTUnwrap(engine.retrains(for: "s").first)
        XCTAssertFalse(r.accepted)
        XCTAssertTrue(r.reason?.hasPrefix("diverged") ?? false, r.reason ?? "")
    }

    func testRetrainKeepsBothHoldoutLossesAndVersionsOnlyAdvanceOnAccept() throws {
        let engine = try StreamingEngine(config: smallConfig())
        _ = engine.process(noisySine(300))
        let records = engine.retrains(for: "s")
        XCTAssertGreaterThan(records.count, 3)
        for r in records.dropFirst() {
            XCTAssertNotNil(r.holdoutLoss)
            XCTAssertNotNil(r.currentHoldoutLoss)
            if r.accepted { XCTAssertLessThanOrEqual(r.holdoutLoss!, r.currentHoldoutLoss!) }
        }
        XCTAssertEqual(engine.modelVersion(for: "s"), records.filter(\.accepted).count)
    }

    func testDeferredTrainingDoesNotBlockIngest() throws {
        let engine = try StreamingEngine(config: smallConfig(), mode: .deferred)
        let first = engine.process(noisySine(80))
        XCTAssertTrue(first.allSatisfy { $0.next == nil }, "no model until the job is installed")
        let jobs = engine.takeTrainingJobs()
        XCTAssertEqual(jobs.count, 1)
        XCTAssertTrue(engine.takeTrainingJobs().isEmpty)
        let record = engine.install(jobs[0].run())
        XCTAssertTrue(record.accepted)
        let more = Array(noisySine(81).suffix(1))
        XCTAssertNotNil(engine.process(more)[0].next)
    }

    func testSharedScopeServesNewSeriesWithTheTrainedModel() throws {
        var c = smallConfig()
        c.scope = .shared
        let engine = try StreamingEngine(config: c)
        _ = engine.process(noisySine(100, series: "a"))
        let out = engine.process(noisySine(20, series: "late", seed: 3, offset: 500))
        let f = try XCTUnwrap(out.last?.next)
        XCTAssert(f.value > 495 && f.value < 505, "\(f.value)")
        XCTAssertEqual(engine.modelVersion(for: "late"), engine.modelVersion(for: "a"))
    }

    func testInvalidSettingsNameTheSetting() {
        var c = EngineConfig()
        c.warmup = 10
        XCTAssertThrowsError(try StreamingEngine(config: c)) { XCTAssertTrue("\($0)".hasPrefix("warmup:"), "\($0)") }
        c = EngineConfig()
        c.coverage = 1.5
        XCTAssertThrowsError(try StreamingEngine(config: c)) { XCTAssertTrue("\($0)".hasPrefix("coverage:"), "\($0)") }
    }

    func testSeriesWithHistoryHasItsAnomalyChecksReadyAtTheFirstForecast() throws {
        // Hourly values with a daily cycle; the first forecast comes after the 60-point warm-up
        // and a spike follows 10 points later. The range check has learnt the warm-up's values.
        var rng = SeededGenerator(seed: 9)
        let observations = (0..<100).map { i -> Observation in
            var v = 10 + sin(Double(i) * 2 * .pi / 24) + 0.1 * rng.nextGaussian()
            if i == 70 { v += 8 }
            return Observation(series: "s", time: 1_700_000_000 + Double(i) * 3600, value: v)
        }
        var c = EngineConfig.smallForTests
        c.anomaly.minHistory = 50
        let out = try StreamingEngine(config: c).process(observations)
        XCTAssertLessThan(try XCTUnwrap(out.firstIndex { $0.forecast != nil }), 65)
        XCTAssertEqual(out.indices.filter { out[$0].isAnomaly }, [70])
    }
}
