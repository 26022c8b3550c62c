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

    /// The reasons of the flagged points, in order.
    func reasons(_ residuals: [Double], values: [Double]? = nil, config: AnomalyConfig = AnomalyConfig()) -> [AnomalyReason?] {
        var s = AnomalyScorer(config: config)
        var out: [AnomalyReason?] = []
        for i in residuals.indices where s.score(residual: residuals[i], scale: 1, value: values?[i]).flagged {
            out.append(s.lastReason)
        }
        return out
    }

    /// Each flag names the check that fired, for the `reason` column.
    func testEveryFlagNamesTheCheckThatFired() {
        var burst = gaussian(1500)
        for i in 1000..<1060 { burst[i] += 6 }
        XCTAssertEqual(reasons(burst), [.residuals])
        let day = daily(days: 12, missingPeakDay: 9)
        // The day without its peak is unlike the days before it; without that check, its
        // lower level is what gives it away.
        XCTAssertEqual(reasons(gaussian(day.count), values: day), [.unlikeSeason])
        XCTAssertEqual(reasons(gaussian(day.count), values: day, config: Self.noContext), [.levelShiftDay])
        let hump = steady(days: 10, humpDay: 8)
        XCTAssertEqual(reasons(gaussian(hump.count), values: hump), [.levelShiftHours])
        let values = gaussian(600, seed: 5).map { 100 + $0 } + [140] + gaussian(100, seed: 6).map { 100 + $0 }
        var residuals = gaussian(values.count)
        residuals[600] = 5
        XCTAssertEqual(reasons(residuals, values: values), [.outOfRange])
    }

    func testDefaultsAreValidAndBadSettingsAreNamed() throws {
        XCTAssertNoThrow(try AnomalyConfig().validate())
        let bad: [(String, (inout AnomalyConfig) -> Void)] = [
            ("anomaly.raw_scale", { $0.rawScale = 0 }),
            ("anomaly.range_tolerance", { $0.rangeTolerance = -1 }),
            ("anomaly.min_spread", { $0.minSpread = 0 }),
            ("anomaly.shift_window", { $0.shiftWindow = -1 }),
            ("anomaly.shift_trim", { $0.shiftTrim = 0.5 }),
            ("anomaly.short_shift_window", { $0.shortShiftWindow = -1 }),
        ]
        for (name, change) in bad {
            var c = AnomalyConfig()
            change(&c)
            XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains(name), name) }
        }
    }

    /// The defaults without the contextual check, for tests of the level-shift checks.
    static let noContext: AnomalyConfig = {
        var c = AnomalyConfig()
        c.contextSeasons = 0
        return c
    }()

    /// A daily pattern (288 points a day) with noise; `missingPeakDay` loses its peak.
    func daily(days: Int, missingPeakDay: Int? = nil) -> [Double] {
        let noise = gaussian(days * 288, seed: 21)
        return (0..<(days * 288)).map { i in
            let day = i / 288, t = i % 288
            let peak = (108..<216).contains(t) && day != missingPeakDay
            return (peak ? 80 : 20) + noise[i]
        }
    }

    func testPatternChangeTheForecastFollowsIsFlaggedByTheLevelShiftCheck() {
        // The model follows the series: residuals stay ordinary throughout.
        let values = daily(days: 12, missingPeakDay: 9)
        let out = run(gaussian(values.count), values: values, config: Self.noContext)
        let flags = out.indices.filter { out[$0].flagged }
        XCTAssertEqual(flags.count, 1, "flags at \(flags)")
        XCTAssertTrue((9 * 288 + 108..<10 * 288).contains(flags.first ?? -1), "flags at \(flags)")
        // Without the missing peak: no flag; with the check off: the change goes unseen.
        let normal = run(gaussian(values.count), values: daily(days: 12), config: Self.noContext)
        XCTAssertEqual(normal.filter(\.flagged).count, 0)
        var off = Self.noContext
        off.shiftWindow = 0
        XCTAssertEqual(run(gaussian(values.count), values: values, config: off).filter(\.flagged).count, 0)
        // The contextual check sees the day too, and no sooner than its peak goes missing.
        var contextOnly = AnomalyConfig()
        contextOnly.shiftWindow = 0
        contextOnly.shortShiftWindow = 0
        let seen = run(gaussian(values.count), values: values, config: contextOnly)
        let seenAt = seen.indices.filter { seen[$0].flagged }
        XCTAssertEqual(seenAt.count, 1, "flags at \(seenAt)")
        XCTAssertTrue((9 * 288 + 108..<10 * 288).contains(seenAt.first ?? -1), "flags at \(seenAt)")
        XCTAssertEqual(run(gaussian(values.count), values: daily(days: 12), config: contextOnly).filter(\.flagged).count, 0)
    }

    /// A steady noisy level; `humpDay` carries a hump of +4 noise deviations for 40 points
    /// (a few hours of 5-minute data), like a busy spell on a CPU.
    func steady(days: Int, humpDay: Int? = nil) -> [Double] {
        let noise = gaussian(days * 288, seed: 41)
        return (0..<(days * 288)).map { i in
            let hump = humpDay.map { (($0 * 288 + 100)..<($0 * 288 + 140)).contains(i) } ?? false
            return 50 + noise[i] + (hump ? 4 : 0)
        }
    }

    func testHumpOfAFewHoursTheForecastFollowsIsFlaggedEarlyByTheShortLevelShiftCheck() {
        // Residuals ordinary throughout: the model follows the hump.
        let values = steady(days: 10, humpDay: 8)
        let hump = 8 * 288 + 100
        let out = run(gaussian(values.count), values: values)
        let flags = out.indices.filter { out[$0].flagged }
        XCTAssertEqual(flags.count, 1, "flags at \(flags)")
        XCTAssertTrue((hump..<hump + 40).contains(flags.first ?? -1), "flags at \(flags)")
        // The day-long window dilutes the hump: alone, it sees it later or not at all.
        var dayOnly = AnomalyConfig()
        dayOnly.shortShiftWindow = 0
        let late = run(gaussian(values.count), values: values, config: dayOnly)
        let lateFlags = late.indices.filter { late[$0].flagged }
        XCTAssertGreaterThan(lateFlags.first ?? .max, flags.first ?? .max, "day-only flags at \(lateFlags)")
        // Without the hump: no flag.
        let normal = run(gaussian(values.count), values: steady(days: 10))
        XCTAssertEqual(normal.filter(\.flagged).count, 0, "flags at \(normal.indices.filter { normal[$0].flagged })")
    }

    func testLevelShiftWindowsAreADayAndAQuarterDayAtTheSeriesStep() {
        let c = AnomalyConfig()
        XCTAssertEqual(c.shiftWindows(step: 300).day, 288)
        XCTAssertEqual(c.shiftWindows(step: 300).short, 72)
        XCTAssertEqual(c.shiftWindows(step: 600).day, 144)
        XCTAssertEqual(c.shiftWindows(step: 3600).day, 24)
        XCTAssertEqual(c.shiftWindows(step: 3600).short, 6)
        // Kept between 24 and 1440 points: daily data, or row numbers taken for seconds.
        XCTAssertEqual(c.shiftWindows(step: 86_400).day, 24)
        XCTAssertEqual(c.shiftWindows(step: 1).day, 1440)
        // Unknown step: 5-minute data is assumed.
        XCTAssertEqual(c.shiftWindows(step: nil).day, 288)
        XCTAssertEqual(c.shiftWindows(step: 0).day, 288)
        // Settings win; the short window follows a configured day window, or the step's day
        // when the day check is off.
        var set = AnomalyConfig()
        set.shiftWindow = 500
        XCTAssertEqual(set.shiftWindows(step: 600).day, 500)
        XCTAssertEqual(set.shiftWindows(step: 600).short, 125)
        set.shiftWindow = 0
        XCTAssertEqual(set.shiftWindows(step: 600).short, 36)
        set.shortShiftWindow = 10
        XCTAssertEqual(set.shiftWindows(step: 600).short, 10)
    }

    func testTenMinuteAndOneMinuteDataGetADayLongWindowOfTheirOwnStep() {
        for (step, perDay) in [(600.0, 144), (60.0, 1440)] {
            // The missing-peak day of `daily` (on day 6 of 8), at this step.
            let days = 8
            let noise = gaussian(days * perDay, seed: 21)
            let values = (0..<(days * perDay)).map { i -> Double in
                let day = i / perDay, t = i % perDay
                return ((perDay * 3 / 8..<perDay * 6 / 8).contains(t) && day != 6 ? 80 : 20) + noise[i]
            }
            let residuals = gaussian(values.count)
            var s = AnomalyScorer(config: AnomalyConfig())
            let out = values.indices.map { s.score(residual: residuals[$0], scale: 1, value: values[$0], step: step) }
            let flags = out.indices.filter { out[$0].flagged }
            XCTAssertEqual(flags.count, 1, "step \(step): flags at \(flags)")
            XCTAssertTrue((6 * perDay + perDay * 3 / 8..<7 * perDay).contains(flags.first ?? -1), "step \(step): flags at \(flags)")
            XCTAssertEqual(s.state.shift.window, perDay)
            XCTAssertEqual(s.state.shortShift.window, perDay / 4)
            // Three days of differences at any step, held as at most 1,000 samples.
            XCTAssertLessThanOrEqual(s.state.shift.history.count, 1000, "step \(step)")
            XCTAssertLessThanOrEqual(s.state.shortShift.history.count, 1000, "step \(step)")
            if step == 60 { XCTAssertEqual(s.state.shift.history.count, 864, "three days, one difference in five") }
        }
    }

    func testASpikeThatComesEveryDayIsLearntNotPagedEveryDay() {
        // 5-minute data with a spike at the same time each day that the model does not foresee.
        let days = 5
        var values = gaussian(days * 288, seed: 51).map { 100 + $0 }
        var residuals = gaussian(values.count)
        for d in 0..<days {
            values[d * 288 + 150] = 140
            residuals[d * 288 + 150] = 8
        }
        values[4 * 288 + 200] = 200   // higher than anything before
        residuals[4 * 288 + 200] = 8
        var s = AnomalyScorer(config: AnomalyConfig())
        let out = values.indices.map { s.score(residual: residuals[$0], scale: 1, value: values[$0], step: 300) }
        // The range check waits for a day of values, so the first spike widens the range
        // instead of being paged (and then, kept out of the range, paged again every day).
        XCTAssertEqual(out.indices.filter { out[$0].flagged }, [4 * 288 + 200])
    }

    func testValuesBeforeTheFirstForecastAreLearnt() {
        let history = gaussian(2 * 288, seed: 52).map { 100 + $0 }
        var next = gaussian(100, seed: 53).map { 100 + $0 }
        var residuals = gaussian(next.count)
        next[50] = 140
        residuals[50] = 8
        var primed = AnomalyScorer(config: AnomalyConfig())
        primed.learn(history: history, step: 300)
        XCTAssertEqual(primed.state.shift.values.count, 2 * 288)
        XCTAssertEqual(primed.state.shortShift.values.count, 2 * 72)
        XCTAssertEqual(primed.state.valueCount, history.count)
        let a = next.indices.map { primed.score(residual: residuals[$0], scale: 1, value: next[$0], step: 300) }
        XCTAssertEqual(a.indices.filter { a[$0].flagged }, [50])
        // A scorer without that history has not seen a day of values yet at point 50.
        var fresh = AnomalyScorer(config: AnomalyConfig())
        let b = next.indices.map { fresh.score(residual: residuals[$0], scale: 1, value: next[$0], step: 300) }
        XCTAssertEqual(b.filter(\.flagged).count, 0)
        // Only a new scorer learns: one that has scored (or was restored) keeps its own memory.
        let before = primed.state
        primed.learn(history: history, step: 300)
        XCTAssertEqual(primed.state, before)
    }

    /// A flat series with a short daily burst whose time of day wanders by up to ±12 points.
    func dailyBursts(days: Int) -> [Double] {
        let noise = gaussian(days * 288, seed: 31)
        var rng = SeededGenerator(seed: 32)
        var values = (0..<(days * 288)).map { 10 + 0.2 * noise[$0] }
        for day in 0..<days {
            let start = day * 288 + 150 + Int(rng.next() % 25) - 12
            for i in start..<(start + 3) { values[i] = 60 }
        }
        return values
    }

    func testWanderingDailyBurstDoesNotLookLikeALevelShift() {
        // The model follows the series apart from the bursts themselves (residuals ordinary
        // throughout here, to isolate the level-shift check).
        let values = dailyBursts(days: 12)
        let out = run(gaussian(values.count), values: values)
        XCTAssertEqual(out.filter(\.flagged).count, 0, "flags at \(out.indices.filter { out[$0].flagged })")
        // The plain mean moves whenever a burst enters one window a little before another
        // leaves the other: with the trim off, the check pages on an ordinary day.
        var plain = AnomalyConfig()
        plain.shiftTrim = 0
        XCTAssertGreaterThan(run(gaussian(values.count), values: values, config: plain).filter(\.flagged).count, 0)
        // A change of the bulk of the values is still seen through the trim.
        var shifted = values
        for i in (9 * 288)..<shifted.count { shifted[i] += 2 }
        let out2 = run(gaussian(values.count), values: shifted)
        let f2 = out2.indices.filter { out2[$0].flagged }
        XCTAssertEqual(f2.count, 1, "flags at \(f2)")
        XCTAssertTrue((9 * 288..<10 * 288).contains(f2.first ?? -1), "flags at \(f2)")
    }

    func testScoreIsRedOnlyWhereAFlagIsRaised() {
        // Two unexpected values outside the range, closer together than the cooldown: the
        // second is not flagged and so does not score red either (it scores yellow); a
        // threshold on the score picks the same points as the flags.
        var values = gaussian(800, seed: 5).map { 100 + $0 }
        var residuals = gaussian(values.count)
        values[600] = 140
        values[650] = 150
        residuals[600] = 5
        residuals[650] = 5
        let out = run(residuals, values: values)
        let flags = out.indices.filter { out[$0].flagged }
        XCTAssertEqual(flags, [600])
        XCTAssertEqual(out.indices.filter { out[$0].score >= AnomalyConfig().threshold }, flags)
        XCTAssertEqual(out[650].score, AnomalyScorer.yellowScore)
        // Past the cooldown the same value is flagged and scores 1.
        values[750] = 200   // 150 is inside the range now: the unflagged point widened it
        residuals[750] = 5
        let later = run(residuals, values: values)
        XCTAssertEqual(later.indices.filter { later[$0].flagged }, [600, 750])
        XCTAssertEqual(later[750].score, 1)
    }

    func testStateRoundTripThroughTheSnapshotCodecContinuesTheSameFlags() throws {
        var values = daily(days: 12, missingPeakDay: 9)
        values[2000] = 300   // and an unexpected value outside the range
        var residuals = gaussian(values.count)
        residuals[2000] = 50
        let whole = run(residuals, values: values)
        var first = AnomalyScorer(config: AnomalyConfig())
        for i in 0..<1900 { _ = first.score(residual: residuals[i], scale: 1, value: values[i]) }
        let snap = GroupSnapshot(key: "g", version: 1, trainings: 1, points: 1900, lastTrainPoints: 1900, checkpoint: nil,
                                 series: [SeriesSnapshot(key: "s", scalerMean: 0, scalerStd: 1, residuals: [],
                                                         anomaly: first.state)],
                                 lastRetrain: nil)
        let decoded = try SnapshotCodec.decode(SnapshotCodec.encode(snap))
        // Both level-shift checks come back whole (as Float32).
        for (restored, saved) in [(decoded.series[0].anomaly.shift, first.state.shift),
                                  (decoded.series[0].anomaly.shortShift, first.state.shortShift)] {
            XCTAssertEqual(restored.values.count, saved.values.count)
            XCTAssertEqual(restored.history.count, saved.history.count)
            XCTAssertEqual(restored.sinceFlag, saved.sinceFlag)
            XCTAssertEqual(restored.red, saved.red)
            XCTAssertEqual(restored.values.last ?? 0, saved.values.last ?? 1, accuracy: 1e-4)
        }
        XCTAssertEqual(first.state.shortShift.values.count, 2 * 72)
        XCTAssertEqual(decoded.series[0].anomaly.shift.window, 288)
        var second = AnomalyScorer(config: AnomalyConfig(), state: decoded.series[0].anomaly)
        let rest = (1900..<values.count).map { second.score(residual: residuals[$0], scale: 1, value: values[$0]) }
        XCTAssertEqual(rest.indices.filter { rest[$0].flagged }.map { $0 + 1900 },
                       (1900..<values.count).filter { whole[$0].flagged })
        XCTAssertEqual(whole.filter(\.flagged).count, 2)
        for k in rest.indices { XCTAssertEqual(rest[k].score, whole[k + 1900].score, accuracy: 0.02) }
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
        var c = EngineConfig.smallForTests
        c.anomaly.minHistory = 50
        func series(_ k: Double) -> [Observation] {
            var rng = SeededGenerator(seed: 4)
            return (0..<400).map { i in
                var v = 10 + sin(Double(i) * 2 * .pi / 24) + 0.1 * rng.nextGaussian()
                if i == 330 { v += 8 }
                // Hourly: the sine is a daily cycle, and a day of values is seen before the spike.
                return Observation(series: "s", time: 1_700_000_000 + Double(i) * 3600, value: k * v)
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
