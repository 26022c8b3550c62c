import XCTest
@testable import Forecast

final class BitRingTests: XCTestCase {
    /// The same flags as a `Ring<Bool>` under appends and marks, at sizes around a word.
    func testHoldsWhatARingOfBoolsHolds() {
        var rng = SeededGenerator(seed: 11)
        for capacity in [1, 63, 64, 65, 1002] {
            var bits = BitRing(capacity: capacity)
            var bools = Ring<Bool>(capacity: capacity)
            for step in 0..<(3 * capacity + 70) {
                let flag = rng.next() % 3 == 0
                bits.append(flag)
                bools.append(flag)
                if step % 7 == 0 {             // mark the newest, as a flagged point does
                    bits[bits.count - 1] = true
                    bools[bools.count - 1] = true
                }
                XCTAssertEqual(bits.count, bools.count)
                XCTAssertEqual((0..<bits.count).map { bits[$0] }, bools.elements, "capacity \(capacity), step \(step)")
            }
            // One bit a flag (and what the allocator rounds an array up to: a word).
            XCTAssertLessThanOrEqual(bits.bytesHeld, (capacity + 63) / 64 * 8 + 8)
        }
    }
}
