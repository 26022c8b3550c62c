import XCTest
@testable import Forecast

/// The contextual check's two-byte value store: what it keeps, how close, and that a restored
/// store is the one that was saved.
final class HalfRingTests: XCTestCase {
    func values(_ n: Int, seed: UInt64, level: Double = 0, spikes: Bool = false) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        return (0..<n).map { i in
            var v = level + 10 * sin(Double(i) / 288 * 2 * .pi) + rng.nextGaussian()
            if spikes && i % 997 == 500 { v += 1e6 }
            return Float(v)
        }
    }

    /// The median by selection is the sort's middle element: ties, runs, a few values only,
    /// extremes, every length up to two blocks; and a block with NaN as the sort has it.
    func testTheMiddleBySelectionIsTheSortedMiddle() {
        var rng = SeededGenerator(seed: 5)
        for n in 1...520 {
            let few = (0..<n).map { _ in Float(Int.random(in: -2...2, using: &rng)) }
            let wide = (0..<n).map { i in i % 7 == 0 ? Float.greatestFiniteMagnitude * (i % 2 == 0 ? 1 : -1) : Float(rng.nextGaussian()) }
            let run = (0..<n).map { Float($0 % 11) }
            for b in [few, wide, run, run.reversed()] {
                XCTAssertEqual(HalfRing.middle(b), b.sorted()[n / 2], "n = \(n)")
            }
        }
        let withNaN: [Float] = [3, .nan, 1, 2]
        XCTAssertEqual(HalfRing.middle(withNaN).bitPattern, withNaN.sorted()[2].bitPattern)
    }

    func testKeepsTheLastCapacityValuesInOrder() {
        var ring = HalfRing(capacity: 1000)
        let xs = values(3001, seed: 1)
        for (i, x) in xs.enumerated() {
            ring.append(x)
            XCTAssertEqual(ring.count, min(i + 1, 1000))
        }
        let kept = ring.elements
        XCTAssertEqual(kept.count, 1000)
        for (k, v) in kept.enumerated() {
            let want = xs[xs.count - 1000 + k]
            // Offsets of at most ~14 from the block's median, eleven significant bits.
            XCTAssertEqual(v, want, accuracy: 14 / 2048, "value \(k)")
        }
        // The newest values (the open block) are exact.
        XCTAssertEqual(Array(kept.suffix(3001 % HalfRing.blockSize)), Array(xs.suffix(3001 % HalfRing.blockSize)))
        XCTAssertEqual(ring[999], xs.last)
    }

    func testALevelFarFromZeroAndASpikeCostNoPrecisionToTheRest() {
        var ring = HalfRing(capacity: 4096)
        let xs = values(4096, seed: 2, level: 1e5, spikes: true)
        for x in xs { ring.append(x) }
        var worst: Float = 0, worstSpike: Float = 0
        for k in 0..<xs.count {
            let error = abs(ring[k] - xs[k])
            if k % 997 == 500 { worstSpike = max(worstSpike, error / xs[k]) } else { worst = max(worst, error) }
        }
        // Float itself resolves 1e5 to 0.0078; the offsets from each block's median (about
        // ±14) keep 11 bits: under 0.01 everywhere, spike blocks included.
        XCTAssertLessThan(worst, 0.016)
        XCTAssertLessThan(worstSpike, 1e-3, "a spike keeps its own 11 bits")
    }

    func testARingRestoredFromWhatItStoredHoldsTheSameValues() {
        for (seed, capacity) in [(3, 6408), (4, 300), (5, 256), (6, 1)] as [(UInt64, Int)] {
            var xs = values(7777, seed: seed, level: seed == 4 ? -3e7 : 50, spikes: seed != 5)
            xs[4000] = .infinity
            for k in 5000..<5400 { xs[k] = 42 }   // a flat stretch: blocks with no spread
            var ring = HalfRing(capacity: capacity)
            var again = HalfRing(capacity: capacity)
            for (i, x) in xs.enumerated() {
                ring.append(x)
                if i % 1111 == 0 || i == xs.count - 1 {
                    again = HalfRing(capacity: capacity)
                    for v in ring.stored { again.append(v) }
                    XCTAssertEqual(again.stored, ring.stored, "seed \(seed) at \(i)")
                    XCTAssertEqual(again.elements, ring.elements, "seed \(seed) at \(i)")
                }
            }
            XCTAssertLessThanOrEqual(ring.stored.count, ring.maxHeld)
            XCTAssertTrue(ring.elements.allSatisfy(\.isFinite), "an infinity is kept as the largest Float")
        }
    }

    /// A ring rebuilt from its sealed form (what a checkpoint now stores and restores) is the
    /// ring appending its values makes: the same values, resolution and memory, and it goes on
    /// the same; a form larger than a ring holds is refused.
    func testARingRebuiltFromItsSealedFormIsTheRingItsValuesMake() {
        for (seed, capacity) in [(3, 6408), (4, 300), (5, 256), (6, 1)] as [(UInt64, Int)] {
            let xs = values(9000, seed: seed, level: seed == 4 ? -3e7 : 50, spikes: seed != 5)
            var ring = HalfRing(capacity: capacity)
            for (i, x) in xs.enumerated() {
                ring.append(x)
                guard i % 1234 == 0 || i == xs.count - 1 else { continue }
                let form = ring.sealedForm
                XCTAssertEqual(form.values, ring.stored, "seed \(seed) at \(i)")
                var rebuilt = try! XCTUnwrap(HalfRing(capacity: capacity, restoring: form))
                var appended = HalfRing(capacity: capacity)
                for v in ring.stored { appended.append(v) }
                XCTAssertEqual(rebuilt.stored, appended.stored, "seed \(seed) at \(i)")
                XCTAssertEqual(rebuilt.resolution, appended.resolution, "seed \(seed) at \(i)")
                for x in xs.prefix(700) { rebuilt.append(x); appended.append(x) }
                XCTAssertEqual(rebuilt.elements, appended.elements, "seed \(seed) at \(i), after more values")
                XCTAssertEqual(rebuilt.resolution, appended.resolution)
            }
        }
        var big = HalfRing(capacity: 6408)
        for x in values(9000, seed: 1) { big.append(x) }
        XCTAssertNil(HalfRing(capacity: 300, restoring: big.sealedForm), "more than a smaller ring holds")
    }

    func testTwoBytesAValueAtTheContextChecksSize() {
        var ring = HalfRing(capacity: 6408)
        for x in values(20_000, seed: 7) { ring.append(x) }
        // 26 blocks of 256 codes, the open block and two Floats per block: 14.5 KB, against
        // 25.6 KB for 6,408 Floats.
        XCTAssertLessThanOrEqual(ring.bytesHeld, 26 * 256 * 2 + 256 * 4 + 2 * 26 * 4 + 64)
    }
}
