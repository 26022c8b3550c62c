/// A group's engine state as it was when taken, encoded a part at a time: the write side of
/// `StoredState`. The engine's series are values (their buffers copy-on-write), so the writer
/// holds them as they were while the engine goes on: a series that changes meanwhile costs a
/// copy of the buffers it changes, one that does not costs nothing, and each is let go once
/// encoded. A checkpoint so holds one part of the encoded state at a time, not the whole of it
/// beside the engine (at 100,000 series that was 3.5 GB on top of 4.2 GB, every five minutes),
/// and it can be written from another thread while the engine takes the next rows.
public struct StateWriter: Sendable {
    /// The group's fields (no series), as they were when taken.
    public let header: GroupSnapshot
    private var series: [SeriesState?]
    private var encoder: SnapshotCodec.PartEncoder
    private var given = 0
    private var done = false

    init(header: GroupSnapshot, series: [SeriesState], threads: Int) {
        self.header = header
        self.series = series
        encoder = SnapshotCodec.PartEncoder(header, seriesCount: series.count, threads: threads)
    }

    /// Parts given so far.
    public var partsGiven: Int { given }
    public var isFinished: Bool { done }

    /// The next part, of about `limit` bytes (one series more at most), or nil after the last.
    /// The first part is the header alone unless the whole state fits in `limit`: a store
    /// writes the first part last, with the count of parts, so what it holds until then is
    /// small. The parts joined are `SnapshotCodec.encode`'s bytes for the group as it was taken.
    public mutating func nextPart(limit: Int) -> [UInt8]? {
        guard !done else { return nil }
        let whole = limit >= Int.max / 2
        while !encoder.isComplete && encoder.pending < max(1, limit) {
            let from = encoder.seriesAdded
            // As many series as the part has room for, by the size of those so far (a part
            // overshoots by a series or so), in batches that threads can share; all of them
            // when the state goes in one part.
            let left = series.count - from
            var n = whole ? left : 1
            if !whole && from > 0 {
                let average = max(1, (encoder.made - encoder.headerBytes) / from)
                n = min(left, 256, max(1, (limit - encoder.pending) / average))
            }
            do {
                let held = series
                encoder.add(count: n, reserving: whole ? n : 0) { StreamingEngine.snapshot(of: held[from + $0]!) }
            }
            // Encoded, so let go: the engine's copy is the only one left.
            for i in from..<(from + n) { series[i] = nil }
        }
        given += 1
        if encoder.isComplete {
            done = true
            return encoder.finish()
        }
        return given == 1 ? encoder.take(upTo: encoder.headerBytes) : encoder.take()
    }
}

extension StreamingEngine {
    /// Each model group's state as it is now, to be encoded later a part at a time, here or on
    /// another thread (`StateWriter`); groups without a model yet have nothing to restore.
    /// `threads`: series encoded side by side (1 beside a running engine).
    public func stateWriters(threads: Int = 1) -> [StateWriter] {
        groupsForSnapshot.filter { $0.model != nil }.map { g in
            StateWriter(header: header(g), series: g.series.map(seriesForSnapshot), threads: threads)
        }
    }
}
