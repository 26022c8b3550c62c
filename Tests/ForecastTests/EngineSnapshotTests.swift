import Foundation
import XCTest
@testable import Forecast

/// A restart must go on where the engine stopped: snapshot → bytes → restore + prime + pending.
final class EngineSnapshotTests: XCTestCase {
    func config() -> EngineConfig {
        var c = EngineConfig.smallForTests
        c.retrainEvery = 100
        c.scope = .shared
        return c
    }

    func data(_ n: Int, from start: Int = 0) -> [Observation] {
        var out: [Observation] = []
        for i in start..<(start + n) {
            let x = Double(i)
            let wave: Double = sin(x / 4) + 0.05 * cos(x * 1.3)
            out.append(Observation(series: "a", time: x * 60, value: 5 + wave))
            out.append(Observation(series: "b", time: x * 60, value: 50 + wave))
        }
        return out
    }

    func testRestoredEngineForecastsLikeTheOriginal() throws {
        let original = try StreamingEngine(config: config())
        _ = original.process(data(150))
        let blobs = original.snapshot().map(SnapshotCodec.encode)
        // What a checkpoint writes, encoded series by series, is the same bytes.

        let restored = try StreamingEngine(config: config())
        try restored.restore(try blobs.map(SnapshotCodec.decode))
        restored.prime(data(150).suffix(2 * 130))
        for s in ["a", "b"] {
            restored.restorePending(series: s, forecast: try XCTUnwrap(original.pendingForecast(series: s)))
        }
        XCTAssertEqual(restored.modelVersion(for: "a"), original.modelVersion(for: "a"))
        let blends = original.snapshot().flatMap { $0.series.map(\.blend) }
        XCTAssertTrue(blends.allSatisfy { ($0?.scored ?? 0) > 0 }, "the blend has scored forecasts to carry over")
        XCTAssertEqual(restored.snapshot().flatMap { $0.series.map(\.blend) }, blends)

        // Until the next retrain both engines hold the same model and windows.
        let next = data(20, from: 150)
        let a = original.process(next), b = restored.process(next)
        XCTAssertEqual(a.map { $0.next?.value }, b.map { $0.next?.value })
        XCTAssertEqual(a.map { $0.forecast?.value }, b.map { $0.forecast?.value })
    }

    /// What a checkpoint writes, encoded series by series, decodes to the snapshot (inline
    /// training: nothing changes the state between the two; the bytes themselves differ in the
    /// order of the retrain record's JSON keys).
    func testEncodedSnapshotsAreTheEncodedSnapshot() throws {
        let engine = try StreamingEngine(config: config(), mode: .inline)
        _ = engine.process(data(150))
        let encoded = engine.encodedSnapshots()
        XCTAssertEqual(try encoded.map { try SnapshotCodec.decode($0.bytes) },
                       try engine.snapshot().map { try SnapshotCodec.decode(SnapshotCodec.encode($0)) })
        XCTAssertEqual(encoded.map(\.group.series.count), [0])
        XCTAssertEqual(try SnapshotCodec.decode(encoded[0].bytes).series.map(\.key), ["a", "b"])
    }

    /// Several threads write and rebuild the series of a checkpoint (batches of 256): the bytes
    /// are those one thread writes, and a restore from them gives the same state back.
    func testThreadsEncodeAndRestoreWhatOneThreadDoes() throws {
        var c = config()
        c.predictThreads = 3
        let engine = try StreamingEngine(config: c, mode: .inline)
        for step in 0..<130 {
            _ = engine.process((0..<600).map { s in
                Observation(series: "s\(s)", time: Double(step) * 60, value: Double(s) + sin(Double(step + s) / 4)) })
        }
        let snapshot = engine.snapshot()
        let encoded = engine.encodedSnapshots()
        let one = snapshot.map { SnapshotCodec.encode($0) }
        XCTAssertEqual(encoded.count, one.count)
        for (a, b) in zip(encoded.map(\.bytes), one) {
            XCTAssertEqual(a.count, b.count)
            let first = a.indices.first { $0 < b.count && a[$0] != b[$0] }
            XCTAssertNil(first, "first differing byte at \(first ?? -1) of \(a.count)")
        }
        let restored = try StreamingEngine(config: c, mode: .inline)
        restored.install(try encoded.map { try restored.prepareRestore(encoded: $0.bytes) })
        XCTAssertEqual(restored.snapshot(), snapshot)
        XCTAssertEqual(restored.snapshot().first?.series.count, 600)
    }

    /// Version 7 keeps what the engine holds in two bytes in two bytes, losslessly, and keeps
    /// anything else (values from an older state) as Float32, as before.
    func testTwoByteHistoriesArePackedLosslessly() throws {
        var scorer = AnomalyScorer(config: AnomalyConfig())
        var rng = SeededGenerator(seed: 4)
        for i in 0..<3000 {
            let v = 1e6 + 300 * sin(Double(i) / 288 * 2 * .pi) + rng.nextGaussian()
            _ = scorer.score(residual: rng.nextGaussian(), scale: 1, value: v, step: 300)
        }
        var packed = scorer.state
        XCTAssertGreaterThan(packed.context.values.count, 2 * HalfRing.blockSize)
        XCTAssertGreaterThan(packed.shift.history.count, 100)
        func snapshot(_ a: AnomalyScorer.State) -> GroupSnapshot {
            GroupSnapshot(key: "g", version: 1, trainings: 1, points: 3000, lastTrainPoints: 3000, checkpoint: nil,
                          series: [SeriesSnapshot(key: "s", scalerMean: 0, scalerStd: 1, residuals: [], anomaly: a)],
                          lastRetrain: nil)
        }
        let bytes = SnapshotCodec.encode(snapshot(packed))
        XCTAssertEqual(try SnapshotCodec.decode(bytes).series[0].anomaly, packed)
        // Two bytes less than version 6 for every value of the histories and every value of the
        // contextual check's full blocks, less a tag, a median and a scale per block and a tag
        // and a unit per list.
        let v6 = SnapshotCodec.encode(snapshot(packed), version: 6)
        let blocks = packed.context.values.count / HalfRing.blockSize
        let halves = packed.history.count + packed.shift.history.count + packed.shortShift.history.count
            + packed.context.history.count + blocks * HalfRing.blockSize
        let v7 = SnapshotCodec.encode(snapshot(packed), version: 7)
        let v8 = SnapshotCodec.encode(snapshot(packed), version: 8)
        XCTAssertEqual(v8.count, v7.count + 8, "version 8 adds the window (here none: its length -1)")
        XCTAssertEqual(bytes.count, v8.count + 6 * 8 + 8 * packed.context.deviations.count,
                       "version 9 adds the contextual check's slot and its last window of deviations")
        XCTAssertGreaterThanOrEqual(v6.count - v7.count, 2 * halves - 9 * blocks - 4 * 9)
        // Values off the two-byte grid (one Float ulp up) come back exactly, as Float32.
        packed.history = packed.history.map { Double(Float($0).nextUp) }
        packed.context.values = packed.context.values.map { Double(Float($0).nextUp) }
        XCTAssertEqual(try SnapshotCodec.decode(SnapshotCodec.encode(snapshot(packed))).series[0].anomaly, packed)
    }

    func rows(_ obs: [Observation]) -> [RawRow] { obs.map { RawRow(series: $0.series, time: $0.time, value: RawValue($0.value)) } }

    /// A state holds each series' window: a restart asks the source only for the rows after it
    /// (none after a clean stop) and then forecasts as the engine that never stopped.
    func testResumeTakesTheWindowsFromTheStateAndReadsOnlyTheRowsAfterThem() throws {
        let original = try StreamSession(config: config(), training: .inline)
        _ = original.process(rows(data(150)))
        let states = original.engine.snapshot().map { StoredState(label: "m", bytes: SnapshotCodec.encode($0)) }
        XCTAssertEqual(try SnapshotCodec.decode(states[0].bytes()).series.map { $0.window?.values.count },
                       [original.historyNeeded, original.historyNeeded])
        // Committed after the checkpoint, before a crash: 5 rows of each series.
        let later = data(5, from: 150)
        _ = original.process(rows(later))
        let pending = ["a", "b"].map { StreamSession.PendingForecast(series: $0, forecast: original.engine.pendingForecast(series: $0)!) }
        let watermarks = ["a": 154 * 60.0, "b": 154 * 60.0]

        func restart(_ marks: [String: Double], answer: [Observation]) throws -> (StreamSession, [StreamSession.HistoryRequest]) {
            let s = try StreamSession(config: config(), training: .inline)
            var asked: [StreamSession.HistoryRequest] = []
            let report = try s.resume(states: states, pageSize: 1, history: { page in
                XCTAssertEqual(page.count, 1, "one page of one series at a time")
                asked += page
                return self.rows(answer.filter { o in page.contains { $0.series == o.series && o.time > ($0.after ?? -.infinity) } })
            }, pending: pending, watermarks: marks)
            XCTAssertEqual(report.warnings, [])
            XCTAssertEqual(report.historyRows, asked.isEmpty ? 0 : later.count)
            return (s, asked)
        }
        let (resumed, asked) = try restart(watermarks, answer: data(155))
        XCTAssertEqual(asked, ["a", "b"].map { .init(series: $0, after: 149 * 60) }, "only the rows after each window")
        // The state is the checkpoint's (older than the rows after it, as after any crash): the
        // same engine as a state without windows and the newest rows of the source make.
        var old = try SnapshotCodec.decode(states[0].bytes())
        old.series = old.series.map { var x = $0; x.window = nil; return x }
        let fromRows = try StreamSession(config: config(), training: .inline)
        _ = try fromRows.resume(states: [StoredState(label: "m", bytes: SnapshotCodec.encode(old))],
                            history: rows(Array(data(155).suffix(2 * fromRows.historyNeeded))), pending: pending, watermarks: watermarks)
        let next = rows(data(20, from: 155))
        let a = fromRows.process(next), b = resumed.process(next)
        XCTAssertEqual(a.forecasts, b.forecasts)
        XCTAssertEqual(a.completed.map(\.previousActual), b.completed.map(\.previousActual))
        XCTAssertEqual(a.completed.map(\.anomalyScore), b.completed.map(\.anomalyScore))

        // After a clean stop the windows end at the watermarks: the source is not asked at all.
        let clean = try StreamSession(config: config(), training: .inline)
        var calls = 0
        let report = try clean.resume(states: states, history: { _ in calls += 1; return [] }, pending: [],
                                  watermarks: ["a": 149 * 60.0, "b": 149 * 60.0])
        XCTAssertEqual(calls, 0)
        XCTAssertEqual(report.batch.forecasts.map(\.series).sorted(), ["a", "b"], "forecast from the stored windows alone")
        // and goes on as the engine that wrote the checkpoint.
        let stopped = try StreamSession(config: config(), training: .inline)
        _ = stopped.process(rows(data(150)))
        let more = rows(data(20, from: 150))
        XCTAssertEqual(stopped.process(more).forecasts, clean.process(more).forecasts)
    }

    /// More rows after a stored window than a restart reads (the newest `historyNeeded`): rows
    /// between the two would be missing, so the window is started again from the rows read,
    /// as from a state without windows.
    func testRowsPastAGapReplaceTheStoredWindow() throws {
        let original = try StreamSession(config: config(), training: .inline)
        _ = original.process(rows(data(150)))
        let group = original.engine.snapshot()[0]
        let n = original.historyNeeded
        let newest = Array(data(150 + n).suffix(2 * n))
        func windows(_ states: [StoredState]) throws -> [[Double]] {
            let s = try StreamSession(config: config(), training: .inline)
            _ = try s.resume(states: states, history: { _ in self.rows(newest) }, pending: [],
                         watermarks: ["a": Double(150 + n - 1) * 60, "b": Double(150 + n - 1) * 60])
            return s.engine.snapshot()[0].series.map { $0.window?.values ?? [] }
        }
        var withoutWindows = group
        withoutWindows.series = group.series.map { var x = $0; x.window = nil; return x }
        let replaced = try windows([StoredState(label: "m", bytes: SnapshotCodec.encode(group))])
        XCTAssertEqual(replaced, try windows([StoredState(label: "m", bytes: SnapshotCodec.encode(withoutWindows))]))
        XCTAssertEqual(replaced.map(\.count), [n, n])
        XCTAssertEqual(replaced[0].first, newest.first { $0.series == "a" }?.value)
    }

    /// A state from settings that kept fewer values (a smaller `history`): its windows are too
    /// short for this engine, so the restart reads each series' whole window from the source.
    func testAWindowShorterThanTheSettingsKeepIsReadFromTheSource() throws {
        var shorter = config()
        shorter.history = config().history / 2
        let original = try StreamSession(config: shorter, training: .inline)
        _ = original.process(rows(data(150)))
        let states = original.engine.snapshot().map { StoredState(label: "m", bytes: SnapshotCodec.encode($0)) }
        let resumed = try StreamSession(config: config(), training: .inline)
        var asked: [StreamSession.HistoryRequest] = []
        let n = resumed.historyNeeded
        _ = try resumed.resume(states: states, history: { page in
            asked += page
            return self.rows(Array(self.data(150).suffix(2 * n)))
        }, pending: [], watermarks: ["a": 149 * 60.0, "b": 149 * 60.0])
        XCTAssertEqual(asked, [.init(series: "a", after: nil), .init(series: "b", after: nil)])
        XCTAssertEqual(resumed.engine.snapshot()[0].series.map { $0.window?.values.count }, [n, n])
    }

    /// A state written before windows were stored (version 7) restores, with the windows read
    /// from the source as before.
    func testStateWithoutWindowsTakesTheWindowsFromTheSource() throws {
        let original = try StreamSession(config: config(), training: .inline)
        _ = original.process(rows(data(150)))
        let old = SnapshotCodec.encode(original.engine.snapshot()[0], version: 7)
        XCTAssertNil(try SnapshotCodec.decode(old).series[0].window)
        let resumed = try StreamSession(config: config(), training: .inline)
        var asked: [StreamSession.HistoryRequest] = []
        let pending = ["a", "b"].map { StreamSession.PendingForecast(series: $0, forecast: original.engine.pendingForecast(series: $0)!) }
        _ = try resumed.resume(states: [StoredState(label: "m", bytes: old)], history: { page in
            asked += page
            return self.rows(Array(self.data(150).suffix(2 * resumed.historyNeeded)))
        }, pending: pending, watermarks: ["a": 149 * 60.0, "b": 149 * 60.0])
        XCTAssertEqual(asked, [.init(series: "a", after: nil), .init(series: "b", after: nil)])
        XCTAssertEqual((0..<2).map { resumed.engine.seriesForSnapshot($0).anomaly.needsStep }, [false, false],
                       "the checks are built in the restart, once the rows gave the step")
        let next = rows(data(20, from: 150))
        XCTAssertEqual(original.process(next).forecasts, resumed.process(next).forecasts)
    }

    /// No state is stored before the first model, so a restart (or a shard taken over) during
    /// warm-up has only the history: it must train from that at once, not wait a warm-up more.
    func testResumeDuringWarmUpTrainsFromTheHistoryAtOnce() throws {
        let rows = data(70).map { RawRow(series: $0.series, time: $0.time, value: RawValue($0.value)) }
        // Inline (replay): the model is trained inside resume and every series gets a forecast.
        let inline = try StreamSession(config: config(), training: .inline)
        let report = try inline.resume(states: [], history: rows, pending: [])
        XCTAssertEqual(report.models.count, 0, "nothing was stored")
        XCTAssertEqual(inline.modelVersions[""], 1)
        XCTAssertEqual(Set(report.batch.forecasts.map(\.series)), ["a", "b"])
        XCTAssertEqual(report.batch.retrains.count, 1)

        // Deferred (the daemon): the job is handed out without a new value arriving.
        let deferred = try StreamSession(config: config(), training: .deferred)
        _ = try deferred.resume(states: [], history: rows, pending: [])
        XCTAssertEqual(deferred.takeTrainingJobs().count, 1)

        // Fewer points than the warm-up: nothing to train yet.
        let short = try StreamSession(config: config(), training: .deferred)
        _ = try short.resume(states: [], history: Array(rows.prefix(2 * 50)), pending: [])
        XCTAssertTrue(short.takeTrainingJobs().isEmpty)
    }

    /// A horizon model's per-step intervals go on after a restart instead of starting from the
    /// wide stand-in: the same step windows and levels, so the same path bounds from the first
    /// path made after it.
    func testRestoredHorizonModelKeepsItsPerStepIntervals() throws {
        var c = config()
        c.horizon = 4
        let original = try StreamingEngine(config: c)
        _ = original.process(data(190))
        let snap = original.snapshot()
        XCTAssertTrue(snap[0].series.allSatisfy { $0.stepResiduals.count == 3 && $0.stepResiduals.allSatisfy { $0.count >= 20 } })
        // Stored as float32, like every residual of the state.
        let decoded = try snap.map(SnapshotCodec.encode).map(SnapshotCodec.decode)
        let restored = try StreamingEngine(config: c)
        try restored.restore(decoded)
        restored.prime(data(190).suffix(2 * 130))
        for (r, o) in zip(restored.snapshot()[0].series, snap[0].series) {
            XCTAssertEqual(r.stepResiduals.count, o.stepResiduals.count)
            for (x, y) in zip(r.stepResiduals.joined(), o.stepResiduals.joined()) { XCTAssertEqual(x, y, accuracy: 1e-5 * max(1, abs(y))) }
            for (x, y) in zip(r.stepAlpha, o.stepAlpha) { XCTAssertEqual(x, y, accuracy: 1e-6) }
        }
        // The next paths: the same intervals up to the one error of the open paths (those are not
        // kept), far from the stand-in a fresh series would get.
        let next = data(1, from: 190)
        let a = original.process(next), b = restored.process(next)
        let fresh = try StreamingEngine(config: c)
        try fresh.restore(decoded.map { g in
            var g = g
            g.series = g.series.map { var s = $0; s.stepResiduals = []; s.stepAlpha = []; return s }
            return g
        })
        fresh.prime(data(190).suffix(2 * 130))
        let f = fresh.process(next)
        for ((x, y), z) in zip(zip(a, b), f) {
            let pa = try XCTUnwrap(x.next?.path), pb = try XCTUnwrap(y.next?.path), pf = try XCTUnwrap(z.next?.path)
            for h in 1..<4 {
                let wa = pa[h].upper - pa[h].lower, wb = pb[h].upper - pb[h].lower, wf = pf[h].upper - pf[h].lower
                XCTAssertEqual(wb, wa, accuracy: 0.05 * wa, "step \(h + 1)")
                XCTAssertLessThan(abs(wb - wa), abs(wf - wa) / 2, "without the kept errors the interval is the stand-in")
            }
        }
    }

    func testCorruptOrTruncatedStateThrows() throws {
        let engine = try StreamingEngine(config: config())
        _ = engine.process(data(100))
        let bytes = try XCTUnwrap(engine.snapshot().first.map(SnapshotCodec.encode))
        XCTAssertNoThrow(try SnapshotCodec.decode(bytes))
        XCTAssertThrowsError(try SnapshotCodec.decode(Array(bytes.prefix(bytes.count / 2))))
        var flipped = bytes
        flipped[bytes.count / 2] ^= 0x40
        XCTAssertThrowsError(try SnapshotCodec.decode(flipped))
        XCTAssertThrowsError(try SnapshotCodec.decode(Array("not a snapshot at all".utf8)))
    }

    func testStateSavedByTheVersionBeforeTheShortShiftCheckStillRestores() throws {
        // A version-3 state is a version-4 one without the windows and the short check's
        // fields at the end of each series (for an empty short check: windows 0, two empty
        // lists and "never flagged").
        var anomaly = AnomalyScorer(config: AnomalyConfig()).state
        anomaly.valueMin = 1
        anomaly.valueMax = 9
        anomaly.valueCount = 40
        anomaly.shift = .init(values: [1, 2, 3], history: [0.5], red: true, sinceFlag: 7)
        let snap = GroupSnapshot(key: "g", version: 2, trainings: 3, points: 40, lastTrainPoints: 40, checkpoint: nil,
                                 series: [SeriesSnapshot(key: "s", scalerMean: 0, scalerStd: 1, residuals: [0.25],
                                                         anomaly: anomaly)],
                                 lastRetrain: nil)
        let v4 = SnapshotCodec.encode(snap, version: 6)
        // Version 4's short-shift fields, version 5's (empty) step residuals and levels and
        // version 6's (empty) contextual check.
        let shortFields = 8 + 8 + 8 + 8 + 8 + 8 + 8 + 6 * 8
        var v3 = Array(v4[..<(v4.count - 4 - shortFields)])
        let versionAt = SnapshotCodec.magic.count
        XCTAssertEqual(v3[versionAt], 6)
        v3[versionAt] = 3
        let crc = CRC32.checksum(v3)
        for k in 0..<4 { v3.append(UInt8(truncatingIfNeeded: crc >> (8 * UInt32(k)))) }
        let decoded = try SnapshotCodec.decode(v3)
        XCTAssertEqual(decoded.series[0].anomaly, anomaly)
        XCTAssertEqual(decoded.series[0].anomaly.shortShift, LevelShiftDetector.State())
        XCTAssertEqual(try SnapshotCodec.decode(v4).series[0].anomaly, anomaly)
        XCTAssertEqual(try SnapshotCodec.decode(SnapshotCodec.encode(snap)).series[0].anomaly, anomaly, "version 7")
    }

    func testCheckpointOfAnotherShapeIsRefused() throws {
        let engine = try StreamingEngine(config: config())
        _ = engine.process(data(100))
        var other = config()
        other.hiddenSizes = [16]
        let target = try StreamingEngine(config: other)
        XCTAssertThrowsError(try target.restore(engine.snapshot())) { error in
            XCTAssertTrue("\(error)".contains("checkpoint has [8]"), "\(error)")
        }
    }
}
