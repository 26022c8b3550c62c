import CKernels
import XCTest

@testable import Forecast

/// fk_gemm_rows takes groups of 8 rows through AVX-512 where the CPU has it, groups of 4
/// through AVX2 and the rest through fk_gemv_t. Every path accumulates each element over k in
/// order, so every row must equal fk_gemv_t on that row to the bit, whatever this CPU has.
final class KernelTests: XCTestCase {
    func testGemmRowsMatchesGemvOnEveryPath() {
        var rng = SeededGenerator(seed: 11)
        for (M, K, N) in [(13, 37, 200), (16, 64, 256), (16, 256, 64), (8, 1, 70), (3, 5, 9)] {
            let W = (0..<(N * K)).map { _ in Float(rng.nextGaussian()) }
            let x = (0..<(M * K)).map { _ in Float(rng.nextGaussian()) }
            let y0 = (0..<(M * N)).map { _ in Float(rng.nextGaussian()) }
            var packed = [Float](repeating: 0, count: N * K)
            W.withUnsafeBufferPointer { w in packed.withUnsafeMutableBufferPointer { fk_pack_panels(N, K, w.baseAddress!, $0.baseAddress!) } }
            var rows = y0, one = y0
            packed.withUnsafeBufferPointer { p in
                x.withUnsafeBufferPointer { xp in
                    rows.withUnsafeMutableBufferPointer { fk_gemm_rows(M, K, N, p.baseAddress!, xp.baseAddress!, K, $0.baseAddress!, N) }
                    one.withUnsafeMutableBufferPointer { yp in
                        for r in 0..<M { fk_gemv_t(K, N, p.baseAddress!, xp.baseAddress! + r * K, yp.baseAddress! + r * N) }
                    }
                }
            }
            XCTAssertEqual(rows, one, "M \(M) K \(K) N \(N)")
            // And both are the product itself.
            for r in 0..<M {
                for n in 0..<N {
                    var s = Double(y0[r * N + n])
                    for k in 0..<K { s += Double(x[r * K + k]) * Double(W[n * K + k]) }
                    XCTAssertEqual(Double(rows[r * N + n]), s, accuracy: 1e-4 * max(1, abs(s)), "M \(M) K \(K) N \(N) at \(r),\(n)")
                }
            }
        }
    }

    /// The checkpoint's Float16 lists by F16C: the same codes, and the same judgement of
    /// which lists are exactly Float16 multiples of the unit, as Swift's own conversions.
    func testHalvesPackAndUnpackAsSwiftConvertsThem() {
        var rng = SeededGenerator(seed: 12)
        for e in [-30, -14, -1, 0, 7, 40] {
            let unit = Double(sign: .plus, exponent: e, significand: 1)
            var grid = (0..<300).map { _ in Double(Float16(Float(rng.nextGaussian()) * 3000)) * unit }
            grid += [0, -0.0, Double(Float16.leastNonzeroMagnitude) * unit, Double(Float16.greatestFiniteMagnitude) * unit]
            var lists = [grid, grid.map { $0.nextUp }, grid + [.nan], grid + [.infinity], grid.map { $0 + unit / 3 }]
            lists.append(grid.map { Double(Float($0).nextUp) })
            for xs in lists {
                let swiftCodes = xs.map { Float16($0 / unit) }
                let swiftExact = zip(swiftCodes, xs).allSatisfy { Double($0) * unit == $1 }
                var codes = [UInt16](repeating: 0, count: xs.count)
                let exact = fk_halves_pack(xs, xs.count, unit, &codes) == 1
                XCTAssertEqual(exact, swiftExact, "2^\(e)")
                guard exact else { continue }
                XCTAssertEqual(codes, swiftCodes.map(\.bitPattern), "2^\(e)")
                var back = [Double](repeating: 0, count: xs.count)
                fk_halves_unpack(codes, codes.count, unit, &back)
                XCTAssertEqual(back.map(\.bitPattern), xs.map(\.bitPattern), "2^\(e): every value back, -0 too")
            }
        }
    }

    /// The contextual check's empirical tail count: the Swift formula value by value, for
    /// every length (the vector body and the scalar tail), NaN, infinities and −0 included.
    func testHalvesCountFarCountsAsSwiftComparesThem() {
        var rng = SeededGenerator(seed: 13)
        for e in [-20, 0, 9] {
            let unit = Double(sign: .plus, exponent: e, significand: 1)
            var codes = (0..<203).map { _ in Float16(Float(rng.nextGaussian()) * 2000) }
            codes += [0, -0.0, .nan, .infinity, -.infinity, Float16.greatestFiniteMagnitude]
            let median = Double(codes[5]) * unit
            for n in [0, 1, 7, 8, 9, 16, 100, codes.count] {
                let part = Array(codes.prefix(n))
                for floor in [0, 3 * unit, 500 * unit] {
                    for distance in [0.0, 1 * unit, 400 * unit, 1999.5 * unit, 1e30] {
                        let d = Float(distance)
                        let want = part.filter { h in Float(max(abs(Double(h) * unit - median) - floor, 0)) >= d }.count
                        let got = part.map(\.bitPattern).withUnsafeBufferPointer { b in
                            n == 0 ? 0 : fk_halves_count_far(b.baseAddress!, n, unit, median, floor, d)
                        }
                        XCTAssertEqual(got, want, "2^\(e), \(n) codes, floor \(floor), distance \(distance)")
                    }
                }
            }
        }
    }
}
