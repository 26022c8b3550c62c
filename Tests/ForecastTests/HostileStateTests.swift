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
