import Foundation
import XCTest

/// Flattens a nested JSON list (row-major) into Doubles.
func flatten(_ any: Any) -> [Double] {
    if let a = any as? [Any] { return a.flatMap(flatten) }
    if let n = any as? NSNumber { return [n.doubleValue] }
    return []
}

/// Combined tolerance: |a - b| <= rel * max(|b|, scale), where `scale` is the largest
/// magnitude in the reference tensor. Elements near zero are judged against the tensor's
/// own scale (float32 rounding there is relative to the big entries it was computed from),
/// large ones against themselves.
func assertClose(_ actual: [Float], _ expected: [Double], rel: Double = 1e-4, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(what): count", file: file, line: line)
    guard actual.count == expected.count else { return }
    let scale = expected.map(abs).max() ?? 0
    var worst = 0.0, worstIndex = -1
    for i in expected.indices {
        let tol = rel * max(abs(expected[i]), scale)
        let err = abs(Double(actual[i]) - expected[i])
        if !(err <= tol) && (worstIndex < 0 || err / max(tol, 1e-300) > worst) {
            worst = err / max(tol, 1e-300); worstIndex = i
        }
    }
    if worstIndex >= 0 {
        XCTFail("\(what): element \(worstIndex) = \(actual[worstIndex]), expected \(expected[worstIndex]) (\(worst)x tolerance)",
                file: file, line: line)
    }
}

func assertClose(_ actual: Float, _ expected: Double, rel: Double = 1e-4, _ what: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    assertClose([actual], [expected], rel: rel, what, file: file, line: line)
}

/// [T][B][W] time-major -> [B][T][W] batch-first (fixture layout).
func batchFirst(_ p: UnsafePointer<Float>, T: Int, B: Int, W: Int) -> [Float] {
    var out = [Float](repeating: 0, count: T * B * W)
    for t in 0..<T { for b in 0..<B { for w in 0..<W { out[(b * T + t) * W + w] = p[(t * B + b) * W + w] } } }
    return out
}
