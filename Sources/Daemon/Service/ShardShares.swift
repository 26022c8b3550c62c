import Foundation

/// How many shards of each source this daemon should hold: its fair share, the shards divided by
/// the live daemons configured for the source, rounded up. A daemon below its share may take a
/// free shard; one above it gives shards up until it is not, so a daemon that joins receives
/// shards and one that dies leaves its shards to the others. The advisory locks decide who
/// actually holds a shard; the shares only keep the daemons from fighting over them.
/// Pure bookkeeping (no I/O), shared by the daemon's shard workers and its registration.
struct ShardShares: Equatable {
    struct Entry: Equatable {
        var shards: Int
        var held = 0
        /// Live daemons for the source, this one included (never below 1).
        var daemons = 1
        var share: Int { (shards + daemons - 1) / daemons }
    }

    private(set) var entries: [String: Entry] = [:]

    init(shards: [String: Int]) {
        for (source, n) in shards { entries[source] = Entry(shards: n) }
    }

    /// Takes a place for one more shard of `source`, if the share allows.
    mutating func reserve(_ source: String) -> Bool {
        guard var e = entries[source], e.held < e.share else { return false }
        e.held += 1
        entries[source] = e
        return true
    }

    /// A reserved or held shard is gone (its lock was not won, or it was given up).
    mutating func release(_ source: String) {
        guard var e = entries[source], e.held > 0 else { return }
        e.held -= 1
        entries[source] = e
    }

    /// Whether one held shard of `source` should be given up, and if so books it as gone: only
    /// one caller is told to give up per shard above the share.
    mutating func giveUpOne(_ source: String) -> Bool {
        guard let e = entries[source], e.held > e.share else { return false }
        release(source)
        return true
    }

    /// The registry's count of live daemons per source.
    mutating func setDaemons(_ counts: [String: Int]) {
        for (source, var e) in entries {
            e.daemons = max(1, counts[source] ?? 1)
            entries[source] = e
        }
    }
}

/// `ShardShares` behind a lock, for the threads of the shard workers and the registration.
final class ShardBook: @unchecked Sendable {
    private let lock = NSLock()
    private var shares: ShardShares

    init(shards: [String: Int]) { shares = ShardShares(shards: shards) }

    private func locked<T>(_ body: (inout ShardShares) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&shares)
    }

    func reserve(_ source: String) -> Bool { locked { $0.reserve(source) } }
    func release(_ source: String) { locked { $0.release(source) } }
    func giveUpOne(_ source: String) -> Bool { locked { $0.giveUpOne(source) } }
    func setDaemons(_ counts: [String: Int]) { locked { $0.setDaemons(counts) } }
    func entry(_ source: String) -> ShardShares.Entry? { locked { $0.entries[source] } }
}
