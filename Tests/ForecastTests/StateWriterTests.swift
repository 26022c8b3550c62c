import Foundation
import XCTest
@testable import Forecast

/// A checkpoint encodes a group's state a part at a time (`StateWriter`), while the engine goes
/// on: the parts joined must be the state encoded whole, as it was when the writer was taken.
final class StateWriterTests: XCTestCase {
    private func engine(series: Int = 40, points: Int = 150) throws -> StreamingEngine {
        var c = EngineConfig.smallForTests
        c.retrainEvery = 100
        c.scope = .shared
        let engine = try StreamingEngine(config: c, mode: .inline)
        _ = engine.process(data(series: series, points: points))
        return engine
    }

    private func data(series: Int, points: Int, from start: Int = 0) -> [Observation] {
        var out: [Observation] = []
        for i in start..<(start + points) {
            let x = Double(i)
            for s in 0..<series {
                out.append(Observation(series: "s\(s)", time: x * 60, value: Double(s) + sin(x / 4 + Double(s)) + 0.05 * cos(x * 1.3)))
            }
        }
        return out
    }

    private func drain(_ w: inout StateWriter, limit: Int) -> [[UInt8]] {
        var parts: [[UInt8]] = []
        while let p = w.nextPart(limit: limit) { parts.append(p) }
        return parts
    }

    func testThePartsJoinedAreTheStateEncodedWhole() throws {
        let engine = try engine()
        let whole = engine.encodedSnapshots()
        XCTAssertEqual(whole.count, 1)
        let bytes = whole[0].bytes
        XCTAssertEqual(try SnapshotCodec.decode(bytes).series.count, 40)
        for limit in [1, 100, 5_000, bytes.count / 3, bytes.count - 5, bytes.count - 4, bytes.count, Int.max] {
            for threads in [1, 2] {
                var w = try XCTUnwrap(engine.stateWriters(threads: threads).first)
                let parts = drain(&w, limit: limit)
                XCTAssertTrue(w.isFinished)
                XCTAssertNil(w.nextPart(limit: limit), "nothing after the last part")
                XCTAssertEqual(parts.flatMap { $0 }, bytes, "parts of \(limit) bytes, \(threads) thread(s)")
                XCTAssertEqual(w.partsGiven, parts.count)
                if limit >= bytes.count {
                    XCTAssertEqual(parts.count, 1, "a state that fits is one part")
                }
                if parts.count == 1 {
                    // Within a series (4 kB here) of the limit: the last series may overshoot.
                    XCTAssertGreaterThan(limit, bytes.count - 4_000)
                } else {
                    // The first part is the header alone (a store holds it until the last),
                    // the others at least `limit` but for the last.
                    let header = SnapshotCodec.PartEncoder(w.header, seriesCount: 40).headerBytes
                    XCTAssertEqual(parts[0].count, header, "limit \(limit)")
                    XCTAssertGreaterThan(parts.count, 2)
                    for p in parts.dropFirst().dropLast() { XCTAssertGreaterThanOrEqual(p.count, limit) }
                }
            }
        }
    }

    func testAWriterKeepsTheStateAsItWasTakenWhileTheEngineGoesOn() throws {
        let engine = try engine()
        let before = engine.encodedSnapshots()[0].bytes
        let versionBefore = engine.modelVersions[""]
        var w = try XCTUnwrap(engine.stateWriters().first)
        var parts = [try XCTUnwrap(w.nextPart(limit: 2_000)), try XCTUnwrap(w.nextPart(limit: 2_000))]
        // Every series moves on, a new one arrives and the model is retrained meanwhile.
        _ = engine.process(data(series: 41, points: 120, from: 150))
        XCTAssertNotEqual(engine.modelVersions[""], versionBefore, "the engine retrained")
        let after = engine.encodedSnapshots()[0].bytes
        XCTAssertNotEqual(after, before)
        parts += drain(&w, limit: 2_000)
        XCTAssertEqual(parts.flatMap { $0 }, before, "the state as it was taken")
        XCTAssertEqual(try SnapshotCodec.decode(parts.flatMap { $0 }).series.count, 40)
        // The engine itself is untouched by the writer.
        XCTAssertEqual(engine.encodedSnapshots()[0].bytes, after)
    }

    func testGroupsWithoutAModelHaveNoWriter() throws {
        let engine = try StreamingEngine(config: EngineConfig.smallForTests, mode: .deferred)
        _ = engine.process(data(series: 3, points: 5))
        XCTAssertTrue(engine.stateWriters().isEmpty)
    }
}
