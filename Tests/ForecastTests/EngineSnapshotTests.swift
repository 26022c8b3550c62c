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
        XCTAssertGreaterThanOrEqual(v6.count - bytes.count, 2 * halves - 9 * blocks - 4 * 9)
        // Values off the two-byte grid (one Float ulp up) come back exactly, as Float32.
        packed.history = packed.history.map { Double(Float($0).nextUp) }
        packed.context.values = packed.context.values.map { Double(Float($0).nextUp) }
        XCTAssertEqual(try SnapshotCodec.decode(SnapshotCodec.encode(snapshot(packed))).series[0].anomaly, packed)
    }

    /// No state is stored before the first model, so a restart (or a shard taken over) during
    /// warm-up has only the history: it must train from that at once, not wait a warm-up more.
    func testResumeDuringWarmUpTrainsFromTheHistoryAtOnce() throws {
        let rows = data(70).map { RawRow(series: $0.series, time: $0.time, value: RawValue($0.value)) }
        // Inline (replay): the model is trained inside resume and every series gets a forecast.
        let inline = try StreamSession(config: config(), training: .inline)
        let report = inline.resume(states: [], history: rows, pending: [])
        XCTAssertEqual(report.models.count, 0, "nothing was stored")
        XCTAssertEqual(inline.modelVersions[""], 1)
        XCTAssertEqual(Set(report.batch.forecasts.map(\.series)), ["a", "b"])
        XCTAssertEqual(report.batch.retrains.count, 1)

        // Deferred (the daemon): the job is handed out without a new value arriving.
        let deferred = try StreamSession(config: config(), training: .deferred)
        _ = deferred.resume(states: [], history: rows, pending: [])
        XCTAssertEqual(deferred.takeTrainingJobs().count, 1)

        // Fewer points than the warm-up: nothing to train yet.
        let short = try StreamSession(config: config(), training: .deferred)
        _ = short.resume(states: [], history: Array(rows.prefix(2 * 50)), pending: [])
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
