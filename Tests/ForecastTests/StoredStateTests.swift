import Foundation
import XCTest
@testable import Forecast

/// A restart reads a stored state a part at a time (`StoredState`): decoding it in parts must
/// give what decoding it whole gives, wherever the parts are cut, and a damaged, short or
/// unreadable state must be told apart.
extension EngineSnapshotTests {
    private var helpers: EngineSnapshotTests { self }

    private func encodedState() throws -> (engine: StreamingEngine, bytes: [UInt8]) {
        let engine = try StreamingEngine(config: helpers.config(), mode: .inline)
        _ = engine.process(helpers.data(150))
        return (engine, try XCTUnwrap(engine.snapshot().map(SnapshotCodec.encode).first))
    }

    /// `bytes` cut into parts of `size`; `pulled` counts the parts handed out.
    private func inParts(_ bytes: [UInt8], size: Int, pulled: UnsafeMutablePointer<Int>? = nil,
                         failAt: Int? = nil) -> StoredState {
        StoredState(label: "test state", count: bytes.count) {
            var offset = 0, k = 0
            return {
                guard offset < bytes.count else { return nil }
                if let failAt, k == failAt { throw ForecastError.invalidSetting("connection lost") }
                defer { offset += size; k += 1; pulled?.pointee += 1 }
                return Array(bytes[offset..<min(offset + size, bytes.count)])
            }
        }
    }

    func testAStateDecodedInPartsIsTheStateDecodedWhole() throws {
        let (_, bytes) = try encodedState()
        let whole = try SnapshotCodec.decode(bytes)
        XCTAssertEqual(whole.series.map(\.key), ["a", "b"])
        // Cut inside fields, at every byte, and inside the trailing checksum.
        for size in [1, 3, 8, 100, 4096, bytes.count - 2, bytes.count - 4, bytes.count] {
            var series: [SeriesSnapshot] = []
            var g = try SnapshotCodec.decode(inParts(bytes, size: size)) { series.append($0) }
            g.series = series
            XCTAssertEqual(g, whole, "parts of \(size) bytes")
        }
        // Read twice from the same stored state: each read starts at the first part.
        let state = inParts(bytes, size: 64)
        XCTAssertEqual(try state.bytes(), bytes)
        XCTAssertEqual(try state.bytes(), bytes)
    }

    func testADamagedStateIsReportedAsCorruptedWhereverTheDamageIs() throws {
        let (_, bytes) = try encodedState()
        // In a value, in a length, in the checksum itself.
        for at in [bytes.count / 2, 12, bytes.count - 2] {
            var damaged = bytes
            damaged[at] ^= 0x40
            XCTAssertThrowsError(try SnapshotCodec.decode(inParts(damaged, size: 100)) { _ in }, "byte \(at)") { error in
                XCTAssertTrue("\(error)".contains("checksum mismatch"), "\(error)")
            }
        }
        // Fewer bytes than the state says it has: short, never a crash.
        let short = StoredState(label: "short", count: bytes.count) {
            var given: [UInt8]? = Array(bytes.prefix(bytes.count / 2))
            return { defer { given = nil }; return given }
        }
        XCTAssertThrowsError(try SnapshotCodec.decode(short) { _ in }) { error in
            XCTAssertTrue("\(error)".contains("truncated") || "\(error)".contains("checksum"), "\(error)")
        }
    }

    /// A part the source fails to give stops the restart (it is tried again); a damaged state
    /// is reported and retrained, and the restart goes on.
    func testASourceThatFailsStopsTheRestartAndADamagedStateIsRetrained() throws {
        let (_, bytes) = try encodedState()
        let failing = try StreamSession(config: helpers.config(), training: .inline)
        XCTAssertThrowsError(try failing.resume(states: [inParts(bytes, size: 256, failAt: 2)], history: [], pending: [])) { error in
            XCTAssertTrue(error is StoredState.ReadFailed, "\(error)")
            XCTAssertTrue("\(error)".contains("test state") && "\(error)".contains("connection lost"), "\(error)")
        }
        var damaged = bytes
        damaged[bytes.count / 2] ^= 1
        let session = try StreamSession(config: helpers.config(), training: .inline)
        let report = try session.resume(states: [inParts(damaged, size: 256)], history: [], pending: [])
        XCTAssertEqual(report.models.count, 0)
        XCTAssertEqual(report.warnings.count, 1)
        XCTAssertTrue(report.warnings[0].contains("test state has an unusable engine state") && report.warnings[0].contains("checksum"), report.warnings[0])
    }

    /// A model that does not fit the configuration is known from the state's first bytes: the
    /// series after them are not read (at 100,000 series, gigabytes).
    func testAModelThatDoesNotFitIsKnownBeforeTheSeriesAreRead() throws {
        let (_, bytes) = try encodedState()
        var other = helpers.config()
        other.hiddenSizes = [other.hiddenSizes[0] + 1]
        var pulled = 0
        let session = try StreamSession(config: other, training: .inline)
        let report = try session.resume(states: [inParts(bytes, size: 64, pulled: &pulled)], history: [], pending: [])
        XCTAssertEqual(report.models.count, 0)
        XCTAssertTrue(report.warnings.first?.contains("do not fit") == true, "\(report.warnings)")
        let checkpoint = try XCTUnwrap(SnapshotCodec.decode(bytes).checkpoint).count
        XCTAssertLessThanOrEqual(pulled, (checkpoint + 200) / 64 + 1, "the header and checkpoint only")
        XCTAssertLessThan(pulled * 64, bytes.count / 2)
    }
}
