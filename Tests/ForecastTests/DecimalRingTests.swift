import XCTest
@testable import Forecast

/// A series' raw values in four bytes each while they are decimals (`DecimalRing`): every value
/// must come back bit for bit, as a ring of `Double`s gives it, whatever arrives.
final class DecimalRingTests: XCTestCase {
    private func both(_ xs: [Double], capacity: Int) -> (DecimalRing, Ring<Double>) {
        var d = DecimalRing(capacity: capacity), r = Ring<Double>(capacity: capacity)
        for x in xs { d.append(x); r.append(x) }
        return (d, r)
    }

    private func assertSame(_ d: DecimalRing, _ r: Ring<Double>, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(d.count, r.count, what, file: file, line: line)
        XCTAssertEqual(d.elements.map(\.bitPattern), r.elements.map(\.bitPattern), what, file: file, line: line)
        XCTAssertEqual((0..<d.count).map { d[$0].bitPattern }, (0..<r.count).map { r[$0].bitPattern }, what, file: file, line: line)
        XCTAssertEqual(d.last?.bitPattern, r.last?.bitPattern, what, file: file, line: line)
    }

    /// Decimals as text gives them, of every size and count of digits, the ring wrapping:
    /// exact, in four bytes each.
    func testDecimalsAreHeldInFourBytesAndComeBackBitForBit() {
        var rng = SeededGenerator(seed: 21)
        for digits in 0...6 {
            let xs = (0..<700).map { _ -> Double in
                let m = Int(rng.nextUnitFloat() * 2_000_000) - 1_000_000
                return Double("\(Double(m) / pow(10, Double(digits)))")!
            }
            let (d, r) = both(xs, capacity: 500)
            assertSame(d, r, "\(digits) decimals")
            XCTAssertEqual(d.bytesHeld, 500 * 4, accuracy: 16, "\(digits) decimals (malloc rounds up)")
        }
        // Decimals that grow: the codes are re-expressed, the values stay.
        let growing = [3, 21.5, 1013.25, 0.0042, -7.125, 2, 0.00001]
        let (d, r) = both(growing, capacity: 6)
        assertSame(d, r, "growing")
        XCTAssertEqual(d.bytesHeld, 6 * 4, accuracy: 16)
        // Nine decimals of 123,456.789 do not fit four bytes: Doubles, exact.
        let (wide, wideR) = both([1e-9, 123_456.789], capacity: 6)
        assertSame(wide, wideR, "wide")
        XCTAssertEqual(wide.bytesHeld, 2 * 8, accuracy: 16)
    }

    /// A value that is no short decimal turns the ring to `Double`s, the values before it intact.
    func testOtherValuesTurnTheRingToDoubles() {
        for odd in [0.1 + 0.2, 1.0 / 3, -0.0, .nan, .infinity, 1e20, 2_147_483_648, 5e-10, .pi] {
            let xs = [1.5, 2.25, 100, odd, 4.5]
            let (d, r) = both(xs, capacity: 4)
            assertSame(d, r, "\(odd)")
            XCTAssertEqual(d.bytesHeld, 4 * 8, accuracy: 16, "\(odd)")
        }
        // Digits that would overflow once re-expressed: Doubles too.
        let (d, r) = both([2_000_000_000, 1, 0.5], capacity: 5)
        assertSame(d, r, "overflow on rescaling")
        XCTAssertEqual(d.bytesHeld, 5 * 8, accuracy: 16)
    }

    /// A restored ring holds what appending the same values makes, in the same form.
    func testARestoredRingIsTheRingItsValuesMake() {
        var rng = SeededGenerator(seed: 22)
        let decimals = (0..<300).map { _ in (Double(Int(rng.nextUnitFloat() * 100_000)) / 100) }
        for xs in [decimals, decimals + [0.1 + 0.2], [], [7], decimals.map { $0 * 1e7 }, decimals + [123.456789]] {
            for capacity in [1, 50, 300, 400] {
                var appended = DecimalRing(capacity: capacity)
                for x in xs { appended.append(x) }
                let restored = DecimalRing(capacity: capacity, restoring: xs)
                XCTAssertEqual(restored.elements.map(\.bitPattern), appended.elements.map(\.bitPattern), "\(xs.count) values, capacity \(capacity)")
                // In the same form: the same decimals (or Doubles), and no more memory than the
                // ring that grew (bytes within what the allocator rounds a buffer up to, which
                // depends on what the heap had free).
                XCTAssertEqual(restored.decimals, appended.decimals, "\(xs.count) values, capacity \(capacity)")
                XCTAssertLessThanOrEqual(restored.bytesHeld, appended.bytesHeld + 32, "\(xs.count) values, capacity \(capacity)")
                var a = appended, b = restored
                a.append(0.75); b.append(0.75)
                XCTAssertEqual(a.elements.map(\.bitPattern), b.elements.map(\.bitPattern))
            }
        }
    }
}
