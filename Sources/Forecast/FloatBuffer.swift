import Glibc

/// A growable raw float buffer for workspaces: pointer arithmetic without Array's
/// closure-scoped access, and no copy-on-write surprises in the hot loops.
final class FloatBuffer {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init(_ count: Int = 0) {
        capacity = max(count, 1)
        pointer = .allocate(capacity: capacity)
        memset(pointer, 0, capacity * MemoryLayout<Float>.stride)
    }

    deinit { pointer.deallocate() }

    /// Grow (contents discarded) so at least `count` floats fit.
    func reserve(_ count: Int) {
        guard count > capacity else { return }
        pointer.deallocate()
        capacity = count
        pointer = .allocate(capacity: count)
        memset(pointer, 0, count * MemoryLayout<Float>.stride)
    }

    func zero(_ count: Int) {
        memset(pointer, 0, count * MemoryLayout<Float>.stride)
    }
}

@inline(__always)
func zeroFloats(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
    memset(p, 0, count * MemoryLayout<Float>.stride)
}

@inline(__always)
func copyFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
    memcpy(dst, src, count * MemoryLayout<Float>.stride)
}
