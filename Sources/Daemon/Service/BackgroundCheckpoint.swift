import Forecast
import Foundation
import Ingest

/// Writes engine states (`StateWriter`s, taken from the session at one moment) a chunk at a
/// time on a thread and connection of its own, while the worker goes on taking rows: a
/// checkpoint neither stops the cycle for its encoding (8 s at 100,000 series) nor holds the
/// encoded state (3.5 GB) beside the engine. The version rows point at the new chunks only
/// once all are written, in a transaction checked against the lease (`fence`).
final class BackgroundCheckpoint: @unchecked Sendable {
    struct Outcome {
        var bytes = 0
        var chunks = 0
        var models = 0
        var seconds = 0.0
        var error: Error?
    }

    let started = Date()
    private let condition = NSCondition()
    private var outcome: Outcome?

    /// `connect` opens the connection it writes on (closed when done); `write` writes one
    /// model's state; `finished` is called on the checkpoint's thread once it is done.
    init(writers: [StateWriter], name: String, connect: @escaping @Sendable () throws -> ForecastStore,
         fence: ForecastStore.Fence, write: @escaping @Sendable (inout StateWriter, ForecastStore, ForecastStore.Fence?) throws -> (bytes: Int, chunks: Int),
         finished: @escaping @Sendable () -> Void) {
        // Handed over in a box the thread empties: a closure that captured the writers would
        // keep every series they took until the thread ends, instead of each until it is encoded.
        let box = UncheckedBox(writers)
        let thread = Thread { [self] in
            var result = Outcome()
            do {
                let store = try connect()
                defer { store.connection.close() }
                var writers = box.value
                box.value = []
                for i in writers.indices {
                    let w = try write(&writers[i], store, fence)
                    result.bytes += w.bytes
                    result.chunks += w.chunks
                    result.models += 1
                }
            } catch {
                result.error = error
            }
            result.seconds = Date().timeIntervalSince(started)
            condition.lock()
            outcome = result
            condition.broadcast()
            condition.unlock()
            finished()
        }
        thread.name = "checkpoint \(name)"
        thread.start()
    }

    /// The connection a checkpoint is written on. Its chunks commit one by one without waiting
    /// for the WAL flush (`synchronous_commit = off`): at 100,000 series that wait was a
    /// quarter of the write. Nothing is lost by it: PostgreSQL writes the WAL in order, so the
    /// commit that points the version at the chunks is durable with every commit after it
    /// (the next batch's), and a server crash before that leaves the previous checkpoint,
    /// whose chunks are deleted only by a later commit.
    static func connect(url: String, source: ResolvedSource, shard: ForecastStore.Shard) throws -> ForecastStore {
        let connection = try PostgresConnection(url: url)
        try connection.execute("SET synchronous_commit = off")
        return try ForecastStore(connection: connection, source: source, shard: shard)
    }

    /// The outcome once the checkpoint is written (or failed); nil while it is being written.
    var finished: Outcome? {
        condition.lock(); defer { condition.unlock() }
        return outcome
    }

    /// Waits for the checkpoint to be written (or to fail).
    func wait() -> Outcome {
        condition.lock(); defer { condition.unlock() }
        while outcome == nil { condition.wait() }
        return outcome!
    }
}

private final class UncheckedBox<T>: @unchecked Sendable {
    var value: T
    init(_ value: T) { self.value = value }
}
