/// The last `capacity` elements of a stream, oldest first.
///
/// A daemon keeps several of these per series, for every series it follows, so their memory is
/// what bounds how many series fit: storage grows only as elements arrive (a series that has
/// seen 100 points holds 100, not `capacity`), and when the ring fills it is cut to exactly
/// `capacity`, so the spare half that array growth leaves behind is not kept for the life of
/// the series.
struct Ring<Element: Sendable>: Sendable {
    let capacity: Int
    private var storage: [Element] = []
    private var head = 0

    init(capacity: Int) {
        precondition(capacity >= 1, "a ring holds at least one element")
        self.capacity = capacity
    }

    /// A ring holding the last `capacity` of `elements` (oldest first), sized to what it holds.
    init(capacity: Int, restoring elements: [Element]) {
        self.init(capacity: capacity)
        // An array sized to what it holds is taken as it is (a checkpoint's decoder makes them
        // so): no copy, and no freed one left between the series' other arrays.
        if elements.count <= capacity && elements.capacity <= elements.count + 8 {
            storage = elements
            return
        }
        let kept = elements.suffix(capacity)
        storage = [Element](unsafeUninitializedCapacity: kept.count) { buffer, initialized in
            _ = buffer.initialize(from: kept)
            initialized = kept.count
        }
    }

    var count: Int { storage.count }
    var isEmpty: Bool { storage.isEmpty }
    var isFull: Bool { storage.count == capacity }

    /// The i-th element, oldest first.
    subscript(i: Int) -> Element {
        get { storage.count < capacity ? storage[i] : storage[(head + i) % capacity] }
        set {
            if storage.count < capacity { storage[i] = newValue } else { storage[(head + i) % capacity] = newValue }
        }
    }

    /// The storage index the next `append` writes: the oldest element's, once the ring is full.
    var nextSlot: Int { storage.count < capacity ? storage.count : head }

    /// The element at storage index `slot` (storage order, not oldest first).
    subscript(stored slot: Int) -> Element { storage[slot] }

    var first: Element? { isEmpty ? nil : self[0] }
    var last: Element? { isEmpty ? nil : self[count - 1] }

    /// Every element, oldest first.
    var elements: [Element] {
        storage.count < capacity ? storage : Array(storage[head...] + storage[..<head])
    }

    /// Adds the newest element; returns the oldest one when it had to make room.
    @discardableResult
    mutating func append(_ x: Element) -> Element? {
        if storage.count < capacity {
            storage.append(x)
            if storage.count == capacity && storage.capacity > capacity { shrinkToFit() }
            return nil
        }
        let old = storage[head]
        storage[head] = x
        head += 1
        if head == capacity { head = 0 }
        return old
    }

    /// Applies `f` to every element in place (order unchanged).
    mutating func update(_ f: (inout Element) -> Void) {
        for i in storage.indices { f(&storage[i]) }
    }

    /// Every element in storage order (not oldest first): for sums and counts that do not care
    /// about order, without copying.
    func forEachStored(_ body: (Element) -> Void) {
        for x in storage { body(x) }
    }

    /// Elements `range` (oldest first) in order, without an index computation for each.
    func forEach(in range: Range<Int>, _ body: (Element) -> Void) {
        guard storage.count == capacity else {
            for i in range { body(storage[i]) }
            return
        }
        storage.withUnsafeBufferPointer { b in
            var at = head + range.lowerBound
            if at >= capacity { at -= capacity }
            var left = range.count
            while left > 0 {
                let run = min(left, capacity - at)
                for k in at..<(at + run) { body(b[k]) }
                left -= run
                at = 0
            }
        }
    }

    /// The elements in storage order, as one buffer (for kernels that do not care about order).
    func withStoredBuffer<R>(_ body: (UnsafeBufferPointer<Element>) throws -> R) rethrows -> R {
        try storage.withUnsafeBufferPointer(body)
    }

    /// Bytes of element storage held (for the memory accounting of `StreamingEngine`).
    var bytesHeld: Int { storage.capacity * MemoryLayout<Element>.stride }

    private mutating func shrinkToFit() {
        let old = storage
        storage = [Element](unsafeUninitializedCapacity: capacity) { buffer, initialized in
            _ = buffer.initialize(from: old)
            initialized = old.count
        }
    }
}
