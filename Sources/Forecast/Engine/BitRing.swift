/// The last `capacity` flags of a stream, oldest first, one bit each: which of a series' kept
/// values were judged anomalous (a `Ring<Bool>` spends a byte on each).
struct BitRing: Sendable {
    let capacity: Int
    private var words: [UInt64] = []
    private var head = 0        // position of the oldest flag once full
    private(set) var count = 0

    init(capacity: Int) {
        precondition(capacity >= 1, "a ring holds at least one element")
        self.capacity = capacity
    }

    var isEmpty: Bool { count == 0 }

    /// The i-th flag, oldest first.
    subscript(i: Int) -> Bool {
        get {
            let p = position(i)
            return words[p >> 6] & (1 << UInt64(p & 63)) != 0
        }
        set {
            let p = position(i)
            if newValue { words[p >> 6] |= 1 << UInt64(p & 63) } else { words[p >> 6] &= ~(1 << UInt64(p & 63)) }
        }
    }

    mutating func append(_ flag: Bool) {
        if count < capacity {
            if count & 63 == 0 {
                words.append(0)
                // Full size reached: drop the spare capacity that array growth left.
                if words.count == (capacity + 63) / 64 && words.capacity > words.count {
                    let old = words
                    words = [UInt64](unsafeUninitializedCapacity: old.count) { buffer, initialized in
                        _ = buffer.initialize(from: old)
                        initialized = old.count
                    }
                }
            }
            count += 1
            self[count - 1] = flag
        } else {
            self[0] = flag          // the oldest slot becomes the newest
            head += 1
            if head == capacity { head = 0 }
        }
    }

    var bytesHeld: Int { words.capacity * MemoryLayout<UInt64>.stride }

    private func position(_ i: Int) -> Int {
        count < capacity ? i : (head + i) % capacity
    }
}
