import XCTest
@testable import Forecast

final class CRC32Tests: XCTestCase {
    /// The check value of CRC-32/ISO-HDLC (zlib's), and eight bytes a step agreeing with one
    /// byte a step at every length and alignment (states written before still verify).
    func testSlicedChecksumIsTheStandardOne() {
        XCTAssertEqual(CRC32.checksum(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(CRC32.checksum([UInt8]()), 0)
        var rng = SeededGenerator(seed: 11)
        let bytes = (0..<5000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for start in 0..<9 {
            for end in [start, start + 1, start + 7, start + 8, start + 9, start + 63, 5000] {
                XCTAssertEqual(CRC32.checksum(bytes[start..<end]), CRC32.bytewise(bytes[start..<end]), "\(start)..<\(end)")
            }
        }
        // A collection without contiguous storage goes byte by byte, to the same value.
        XCTAssertEqual(CRC32.checksum(bytes.lazy.map { $0 }), CRC32.checksum(bytes))
    }

    /// Bytes checked in parts, cut anywhere, give the checksum of all of them at once.
    func testRunningChecksumOverPartsIsTheChecksumOfTheWhole() {
        var rng = SeededGenerator(seed: 12)
        let bytes = (0..<3000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        for cuts in [[0], [1], [7, 8, 9], [100, 101, 2999], [0, 0, 3000]] {
            var running = CRC32.Running()
            var from = 0
            for c in cuts + [bytes.count] {
                bytes[from..<c].withUnsafeBufferPointer { running.update($0) }
                from = c
            }
            XCTAssertEqual(running.value, CRC32.checksum(bytes), "\(cuts)")
        }
        XCTAssertEqual(CRC32.Running().value, 0)
    }
}
