import Foundation
import XCTest
@testable import Forecast

/// A stored checkpoint or engine state whose lengths are huge but whose CRC matches (written by
/// someone, or corrupted in a way the CRC does not catch) gives an error that says so: never an
/// overflow trap, a giant allocation or a crash loop of the daemon.
final class HostileStateTests: XCTestCase {
    private func put32(_ v: UInt32, at i: Int, in b: inout [UInt8]) {
        for k in 0..<4 { b[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
    }

    private func put64(_ v: UInt64, at i: Int, in b: inout [UInt8]) {
        for k in 0..<8 { b[i + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
    }

    func testCheckpointWithHugeSizesAndAMatchingCRCThrows() throws {
        let model = try Model(config: ModelConfig(cell: .lstm, inputSize: 1, hiddenSizes: [4], dropout: 0), seed: 1)
        let good = Checkpoint(model: model, adam: Adam()).encoded()
        XCTAssertNoThrow(try Checkpoint(decoding: good))
        for (offset, value) in [(21, UInt32.max), (29, UInt32.max), (29, 1 << 20)] {  // input size, hidden size
            var b = good
            put32(value, at: offset, in: &b)
            put32(CRC32.checksum(b[0..<(b.count - 4)]), at: b.count - 4, in: &b)
            XCTAssertThrowsError(try Checkpoint(decoding: b)) { e in
                XCTAssertTrue("\(e)".contains("sizes"), "\(e)")
            }
        }
    }

    func testEngineStateWithHugeLengthsAndAMatchingCRCThrows() throws {
        let series = SeriesSnapshot(key: "s", scalerMean: 0, scalerStd: 1, residuals: [0.5, 0.25], anomaly: AnomalyScorer.State(recent: [], history: [], sinceFlag: 3))
        let snap = GroupSnapshot(key: "k", version: 1, trainings: 1, points: 10, lastTrainPoints: 10, checkpoint: nil,
                                 series: [series], lastRetrain: nil)
        let good = SnapshotCodec.encode(snap)
        XCTAssertEqual(try SnapshotCodec.decode(good).series.first?.residuals, [0.5, 0.25])
        // The group key's length (right after the magic and the version), then the first
        // series' residual count: Int64.max and a count far larger than the state.
        let residualCount = 8 + 4 + 8 + 1 + 4 * 8 + 8 + 8 + 8 + 1 + 8 + 8 + 8
        for (offset, value) in [(12, UInt64(Int64.max)), (12, UInt64(bitPattern: -5)), (residualCount, UInt64(1) << 40)] {
            var b = good
            put64(value, at: offset, in: &b)
            put32(CRC32.checksum(Array(b[0..<(b.count - 4)])), at: b.count - 4, in: &b)
            XCTAssertThrowsError(try SnapshotCodec.decode(b)) { e in
                XCTAssertTrue("\(e)".contains("engine state"), "\(e)")
            }
        }
    }

    /// The restart after a kill -9: the stored state predates a flag that was committed. With the
    /// flag known from the committed predictions, the incident is not paged again inside the
    /// cooldown; without it, it is (the unflagged spike in the history trips a check at once).
    func testARestartFromAStateOlderThanAFlagKeepsTheCooldown() throws {
        var c = EngineConfig()
        c.hiddenSizes = [8]
        c.seqLength = 12
        c.warmup = 30
        c.retrainEvery = 60
        c.history = 200
        c.initialEpochs = 3
        c.epochs = 1
        c.anomaly.minHistory = 20
        func obs(_ i: Int, spike: Double = 0) -> Observation {
            Observation(series: "s", time: Double(i) * 3600, value: 10 + sin(Double(i) * 2 * .pi / 24) + sin(Double(i * 7919)) * 0.1 + spike)
        }
        let a = try StreamingEngine(config: c, mode: .inline)
        _ = a.process((0..<140).map { obs($0) })
        let stored = a.snapshot().map { try! SnapshotCodec.decode(SnapshotCodec.encode($0)) }
        let first = a.process([obs(140, spike: 40)])
        XCTAssertTrue(first[0].isAnomaly, "the incident is flagged")
        let history = (0...140).map { obs($0, spike: $0 == 140 ? 40 : 0) }
        func pagedAgain(knowingTheFlag: Bool) throws -> Bool {
            let b = try StreamingEngine(config: c, mode: .inline)
            try b.restore(stored)
            b.prime(history, flagged: history.indices.map { knowingTheFlag && $0 == 140 })
            let out = b.process((141..<150).map { obs($0, spike: $0 == 145 ? 90 : 0) })
            return out.contains { $0.isAnomaly }
        }
        XCTAssertTrue(try pagedAgain(knowingTheFlag: false), "without the committed flag the incident pages again")
        XCTAssertFalse(try pagedAgain(knowingTheFlag: true), "with it, the cooldown holds")
    }

    /// After a restart, the points the daemon flagged stay flagged and the cooldown counts from
    /// the last of them, although the stored scorer state is older than the flag.
    func testPrimedFlagsKeepTheCooldownAndStayOutOfTraining() throws {
        var c = EngineConfig()
        c.seqLength = 4
        c.warmup = 10
        c.history = 40
        let engine = try StreamingEngine(config: c, mode: .inline)
        let obs = (0..<30).map { Observation(series: "s", time: Double($0) * 60, value: sin(Double($0))) }
        var flagged = [Bool](repeating: false, count: 30)
        flagged[25] = true
        engine.prime(obs, flagged: flagged)
        let state = try XCTUnwrap(engine.snapshot().first?.series.first)
        XCTAssertEqual(state.anomaly.sinceFlag, 4, "four points since the flag")
        let (_, flags) = engine.seriesForSnapshot(0).modelSpace(last: 40, transform: .level)
        XCTAssertEqual(flags.filter { $0 }.count, 1, "the flagged point stays out of training windows")
    }
}
