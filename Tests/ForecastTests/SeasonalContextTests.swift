import Foundation
import XCTest
@testable import Forecast

/// The contextual check: a day unlike the same day of other weeks, which neither the one-step
/// residuals nor the level-shift checks can see.
final class SeasonalContextTests: XCTestCase {
    func gaussian(_ n: Int, seed: UInt64) -> [Double] {
        var rng = SeededGenerator(seed: seed)
        return (0..<n).map { _ in rng.nextGaussian() }
    }

    /// Hourly demand with a weekly cycle: weekdays busy from 8 to 18 h, weekends quiet all day,
    /// noise of 1. `holiday` (a day index, a weekday) is as quiet as a Sunday.
    func weekly(weeks: Int, holiday: Int? = nil, seed: UInt64 = 7) -> [Double] {
        let noise = gaussian(weeks * 168, seed: seed)
        return (0..<(weeks * 168)).map { i in
            let day = i / 24, hour = i % 24
            let weekday = day % 7 < 5 && day != holiday
            let busy = weekday && (8..<18).contains(hour)
            return 30 + (busy ? 20 : 0) + 3 * sin(Double(hour) / 24 * 2 * .pi) + noise[i]
        }
    }

    /// Scores values at an hourly step with ordinary residuals (the forecast follows the day).
    func score(_ values: [Double], config: AnomalyConfig = AnomalyConfig(), from start: Int = 0,
               scorer: inout AnomalyScorer) -> [(flagged: Bool, reason: AnomalyReason?)] {
        let residuals = gaussian(values.count, seed: 99)
        return (start..<values.count).map { i in
            let out = scorer.score(residual: residuals[i], scale: 1, value: values[i], step: 3600)
            return (out.flagged, out.flagged ? scorer.lastReason : nil)
        }
    }

    func flags(_ values: [Double], config: AnomalyConfig = AnomalyConfig()) -> [(index: Int, reason: AnomalyReason?)] {
        var s = AnomalyScorer(config: config)
        let out = score(values, config: config, scorer: &s)
        return out.indices.filter { out[$0].flagged }.map { ($0, out[$0].reason) }
    }

    func testAWeekdayQuietAsASundayIsFlaggedAsUnlikeItsSeason() {
        let holiday = 7 * 7 + 2   // the Wednesday of week 8
        let values = weekly(weeks: 10, holiday: holiday)
        let found = flags(values)
        let inHoliday = found.filter { (holiday * 24..<(holiday + 1) * 24).contains($0.index) }
        XCTAssertEqual(inHoliday.map(\.reason), [.unlikeSeason], "flags \(found)")
        // The same weeks without the holiday: no contextual flag at all.
        XCTAssertEqual(flags(weekly(weeks: 10)).filter { $0.reason == .unlikeSeason }.count, 0)
        // Without the check, nothing else sees the holiday: its day is as quiet as every
        // weekend day, and the forecast follows it.
        var off = AnomalyConfig()
        off.contextSeasons = 0
        let without = flags(values, config: off)
        XCTAssertTrue(without.allSatisfy { !(holiday * 24..<(holiday + 1) * 24).contains($0.index) }, "flags \(without)")
    }

    func testTheSeasonIsFoundInTheData() {
        // A weekly cycle: the week. A daily cycle: the day. Noise: none.
        var s = AnomalyScorer(config: AnomalyConfig())
        _ = score(weekly(weeks: 6), scorer: &s)
        XCTAssertEqual(s.state.context.period, 168)

        let noise = gaussian(12 * 288, seed: 5)
        let daily = (0..<(12 * 288)).map { (i: Int) -> Double in
            let phase = Double(i % 288) / 288 * 2 * Double.pi
            return 50 + 10 * sin(phase) + noise[i]
        }
        var d = AnomalyScorer(config: AnomalyConfig())
        for (i, v) in daily.enumerated() { _ = d.score(residual: noise[(i + 1) % noise.count], scale: 1, value: v, step: 300) }
        XCTAssertEqual(d.state.context.period, 288)

        var n = AnomalyScorer(config: AnomalyConfig())
        for (i, v) in noise.enumerated() { _ = n.score(residual: noise[(i + 7) % noise.count], scale: 1, value: 50 + v, step: 300) }
        XCTAssertEqual(n.state.context.period, 0, "white noise has no season")
        // Steps finer than 5 minutes keep only days: the kept values stay bounded.
        XCTAssertEqual(SeasonalContextDetector(dayPoints: 1440, window: 360, seasons: 3, historyLength: 4320).candidates, [1440])
        XCTAssertLessThanOrEqual(SeasonalContextDetector(dayPoints: 288, window: 72, seasons: 3, historyLength: 1000).capacity, 3 * 2016 + 288 + 72)
    }

    func testRestoredContextCheckContinuesTheSameFlags() throws {
        let holiday = 7 * 7 + 2
        let values = weekly(weeks: 10, holiday: holiday)
        var whole = AnomalyScorer(config: AnomalyConfig())
        let all = score(values, scorer: &whole)
        let cut = 7 * 168   // a day before the holiday week
        var first = AnomalyScorer(config: AnomalyConfig())
        let residuals = gaussian(values.count, seed: 99)
        for i in 0..<cut { _ = first.score(residual: residuals[i], scale: 1, value: values[i], step: 3600) }
        let snap = GroupSnapshot(key: "g", version: 1, trainings: 1, points: cut, lastTrainPoints: cut, checkpoint: nil,
                                 series: [SeriesSnapshot(key: "s", scalerMean: 0, scalerStd: 1, residuals: [], anomaly: first.state)],
                                 lastRetrain: nil)
        let decoded = try SnapshotCodec.decode(SnapshotCodec.encode(snap)).series[0].anomaly.context
        XCTAssertEqual(decoded.period, 168)
        XCTAssertEqual(decoded, first.state.context, "two bytes a value in the snapshot too, losslessly")
        XCTAssertEqual(decoded.values.count, first.state.context.values.count)
        XCTAssertEqual(decoded.history.count, first.state.context.history.count)
        var second = AnomalyScorer(config: AnomalyConfig(), state: try SnapshotCodec.decode(SnapshotCodec.encode(snap)).series[0].anomaly)
        // Restored, it holds exactly what it saved (its two-byte values included).
        second.learn(history: [], step: 3600)
        XCTAssertEqual(second.state.context.values, first.state.context.values)
        XCTAssertEqual(second.state.context.history, first.state.context.history)
        var rest: [Int] = []
        for i in cut..<values.count where second.score(residual: residuals[i], scale: 1, value: values[i], step: 3600).flagged {
            rest.append(i)
        }
        XCTAssertEqual(rest, (cut..<values.count).filter { all[$0].flagged })
        XCTAssertTrue(rest.contains { (holiday * 24..<(holiday + 1) * 24).contains($0) })
    }

    /// A series that repeats exactly (NAB's `art_daily_no_noise`: 14 days of a noiseless 5-minute
    /// cycle) has no departures from its season: the two-byte values' rounding differs from
    /// block to block, and must not be taken for one.
    func testAnExactlyRepeatingDayRaisesNoContextualFlag() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "art_daily_no_noise", withExtension: "csv", subdirectory: "Fixtures"))
        let rows = try String(contentsOf: url, encoding: .utf8).split(separator: "\n").dropFirst()
        let values = rows.compactMap { Double($0.split(separator: ",").last!) }
        XCTAssertEqual(values.count, 4032)
        var s = AnomalyScorer(config: AnomalyConfig())
        let residuals = gaussian(values.count, seed: 3)
        var flags: [Int] = []
        for (i, v) in values.enumerated() where s.score(residual: 0.01 * residuals[i], scale: 1, value: v, step: 300).flagged {
            if s.lastReason == .unlikeSeason { flags.append(i) }
        }
        XCTAssertEqual(s.state.context.period, 288)
        XCTAssertEqual(flags, [])
    }

    /// 5-minute load with a daily cycle and noise of 1; `changed` (a day index) has half the swing.
    func daily5(days: Int, changed: Int? = nil, seed: UInt64 = 11) -> [Double] {
        let noise = gaussian(days * 288, seed: seed)
        return (0..<(days * 288)).map { i in
            let swing = i / 288 == changed ? 5.0 : 10.0
            return 50 + swing * sin(Double(i % 288) / 288 * 2 * .pi) + noise[i]
        }
    }

    func score5(_ values: [Double], _ range: Range<Int>, scorer: inout AnomalyScorer) -> [(score: Double, flagged: Bool, reason: AnomalyReason?)] {
        let residuals = gaussian(values.count, seed: 98)
        return range.map { i in
            let out = scorer.score(residual: residuals[i], scale: 1, value: values[i], step: 300)
            return (out.score, out.flagged, out.flagged ? scorer.lastReason : nil)
        }
    }

    /// Steps under 10 minutes hold the seasons as means of pairs of points: half the memory,
    /// and the damped day is still found.
    func testFiveMinuteSeasonsAreHeldInPairsAndStillFindADampedDay() {
        let check = SeasonalContextDetector(dayPoints: 288, window: 72, seasons: 3, historyLength: 1000)
        XCTAssertEqual(check.slot, 2)
        XCTAssertEqual(check.capacity, (3 * 2016 + 288 + 72 + 1) / 2)
        XCTAssertEqual(SeasonalContextDetector(dayPoints: 144, window: 36, seasons: 3, historyLength: 1000).slot, 1, "10-minute steps: each point")
        XCTAssertEqual(SeasonalContextDetector(dayPoints: 24, window: 6, seasons: 3, historyLength: 1000).slot, 1)
        let values = daily5(days: 14, changed: 11)
        var s = AnomalyScorer(config: AnomalyConfig())
        let out = score5(values, 0..<values.count, scorer: &s)
        XCTAssertEqual(s.state.context.period, 288)
        XCTAssertEqual(s.state.context.slot, 2)
        XCTAssertLessThanOrEqual(s.state.context.values.count, check.capacity + HalfRing.blockSize)
        let flagged = out.indices.filter { out[$0].reason == .unlikeSeason }
        XCTAssertTrue(flagged.contains { (11 * 288..<12 * 288).contains($0) }, "contextual flags \(flagged)")
        XCTAssertTrue(flagged.allSatisfy { (11 * 288..<13 * 288).contains($0) }, "contextual flags \(flagged)")
    }

    /// A checkpoint taken half way through a slot holds the open slot and the last window of
    /// deviations: the restored check gives the very scores the one that never stopped gives.
    func testARestoredFiveMinuteCheckContinuesWithTheSameScores() throws {
        let values = daily5(days: 14, changed: 11)
        var whole = AnomalyScorer(config: AnomalyConfig())
        let all = score5(values, 0..<values.count, scorer: &whole)
        let cut = 10 * 288 + 37   // odd: a slot is open
        var first = AnomalyScorer(config: AnomalyConfig())
        _ = score5(values, 0..<cut, scorer: &first)
        XCTAssertEqual(first.state.context.slotCount, 1)
        XCTAssertEqual(first.state.context.deviations.count, 72)
        let snap = GroupSnapshot(key: "g", version: 1, trainings: 1, points: cut, lastTrainPoints: cut, checkpoint: nil,
                                 series: [SeriesSnapshot(key: "s", scalerMean: 0, scalerStd: 1, residuals: [], anomaly: first.state)],
                                 lastRetrain: nil)
        let decoded = try SnapshotCodec.decode(SnapshotCodec.encode(snap)).series[0].anomaly
        XCTAssertEqual(decoded.context, first.state.context)
        var second = AnomalyScorer(config: AnomalyConfig(), state: decoded)
        second.learn(history: [], step: 300)
        let rest = score5(values, cut..<values.count, scorer: &second)
        XCTAssertTrue(rest.map(\.score) == all[cut...].map(\.score))
        XCTAssertEqual(rest.map(\.flagged), all[cut...].map(\.flagged))
    }

    /// A state from before slots (engine state version 8 and older) holds the points: they are
    /// put into pairs on restore, and the check goes on to flag what it would have flagged.
    func testAStateOfPointsFromBeforeSlotsIsRestoredIntoPairs() throws {
        let values = daily5(days: 14, changed: 11)
        var whole = AnomalyScorer(config: AnomalyConfig())
        let all = score5(values, 0..<values.count, scorer: &whole)
        let cut = 10 * 288
        var first = AnomalyScorer(config: AnomalyConfig())
        _ = score5(values, 0..<cut, scorer: &first)
        var old = first.state
        let c = old.context
        old.context = SeasonalContextDetector.State(period: c.period, values: Array(values[0..<cut]), history: c.history, red: c.red,
                                                    sinceFlag: c.sinceFlag, sinceReview: c.sinceReview, sinceFit: c.sinceFit)
        XCTAssertEqual(old.context.slot, 0)
        var second = AnomalyScorer(config: AnomalyConfig(), state: old)
        second.learn(history: [], step: 300)
        XCTAssertEqual(second.state.context.slot, 2)
        XCTAssertTrue(second.state.context.values == c.values, "the same pair means")
        XCTAssertEqual(second.state.context.deviations.count, 72)
        XCTAssertEqual(second.state.context.deviations.reduce(0, +), c.deviations.reduce(0, +), accuracy: 1e-9)
        let rest = score5(values, cut..<values.count, scorer: &second)
        XCTAssertEqual(rest.map(\.flagged), all[cut...].map(\.flagged))
        XCTAssertEqual(rest.map(\.reason), all[cut...].map(\.reason))
    }

    /// A check's history of `xs`, as the contextual check keeps it (two bytes a value).
    private func history(_ xs: [Double]) -> SpacedHistory {
        var h = SpacedHistory(span: xs.count, maxSamples: xs.count)
        for x in xs { h.push(x) }
        return h
    }

    /// The fitted tail follows the history's own distribution: close to the truth for a
    /// Gaussian and for a heavy-tailed one, where a Gaussian tail would be orders too small.
    func testTailModelFollowsEachDistribution() {
        let normal = history(gaussian(1000, seed: 1))
        let g = TailModel(fitting: normal.values)
        XCTAssertEqual(g.tail(g.median, history: normal), 1, accuracy: 1e-9)
        let p3 = g.tail(3, history: normal)   // two-sided truth 0.0027
        XCTAssertGreaterThan(p3, 0.0027 / 3)
        XCTAssertLessThan(p3, 0.0027 * 3)
        // Laplace(0, 1): P(|X| > x) = e^(−x); at x = 8, 3.4e-4. A Gaussian of the same spread
        // (σ = √2) gives 1.6e-8.
        var rng = SeededGenerator(seed: 2)
        let laplace = history((0..<1000).map { _ -> Double in
            let u = Double.random(in: -0.5..<0.5, using: &rng)
            return -(u < 0 ? -1.0 : 1.0) * log(1 - 2 * abs(u))
        })
        let l = TailModel(fitting: laplace.values)
        XCTAssertGreaterThan(l.tail(8, history: laplace), exp(-8) / 4)
        XCTAssertLessThan(l.tail(8, history: laplace), exp(-8) * 4)
        XCTAssertEqual(l.score(1e9, history: laplace), 1, "far beyond the history: the score's ceiling")
        let flat = history([2, 2, 2])
        XCTAssertEqual(TailModel(fitting: flat.values).tail(2, history: flat), 1)
    }

    /// Up to the threshold the tail is the share of the history at least as far from the
    /// median, counted over the history as it is: the share the fit's sorted distances gave
    /// while the history is the one fitted, and the share of the newer history after it moved.
    func testEmpiricalShareIsCountedOverTheHistoryAsItIs() {
        var h = history(gaussian(1000, seed: 3))
        let fitted = h.values
        let model = TailModel(fitting: fitted, floor: 0.01)
        func share(_ x: Double, _ values: [Double]) -> Double {
            let d = Float(max(abs(x - model.median) - 0.01, 0))
            let sorted = values.map { Float(max(abs($0 - model.median) - 0.01, 0)) }.sorted()
            let atLeast = sorted.count - (sorted.firstIndex { $0 >= d } ?? sorted.count)
            return max(Double(atLeast) / Double(values.count), 1e-10)
        }
        for x in [model.median, 0.3, -0.7, 1.2, -1.5] {
            XCTAssertEqual(model.tail(x, history: h), share(x, fitted), "\(x)")
        }
        for v in gaussian(16, seed: 4) { h.push(3 * v) }
        for x in [0.3, -0.7, 1.2] {
            XCTAssertEqual(model.tail(x, history: h), share(x, h.values), "\(x), after 16 more values")
        }
    }

    func testBadContextSettingIsNamed() {
        var c = AnomalyConfig()
        c.contextSeasons = -1
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("anomaly.context_seasons")) }
    }
}
