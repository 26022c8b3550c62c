import Foundation

/// `(0..<count).map(body)` with the indices split across `threads` (`concurrentPerform`), in
/// order. `body` is called from several threads at once: it may only read shared state.
func parallelMap<T>(_ count: Int, threads: Int, _ body: (Int) -> T) -> [T] {
    let workers = max(1, min(threads, count))
    guard workers > 1 else { return (0..<count).map(body) }
    return withoutActuallyEscaping(body) { body in
        let f = UncheckedCall(body)
        return [T](unsafeUninitializedCapacity: count) { buffer, initialized in
            let out = UncheckedBuffer(buffer)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                for i in stride(from: w, to: count, by: workers) { (out.buffer.baseAddress! + i).initialize(to: f.call(i)) }
            }
            initialized = count
        }
    }
}

/// A buffer whose elements threads write at indices of their own.
private struct UncheckedBuffer<T>: @unchecked Sendable {
    let buffer: UnsafeMutableBufferPointer<T>
    init(_ buffer: UnsafeMutableBufferPointer<T>) { self.buffer = buffer }
}

private struct UncheckedCall<T>: @unchecked Sendable {
    let call: (Int) -> T
    init(_ call: @escaping (Int) -> T) { self.call = call }
}
