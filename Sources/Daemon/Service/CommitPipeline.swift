import Forecast
import Foundation
import Ingest

/// Commits a cycle's batch (and a checkpoint, when one is due) on a connection of its own while
/// the worker reads and processes the next one, so that the database's share of a cycle (COPY encoding, the transaction, the server's
/// work) runs beside the engine's instead of after it. One batch is in flight at a time: the
/// worker waits for it (`drain`) before it hands over the next, so batches commit in the order
/// they were made, and the next read skips the rows of the batch in flight.
///
/// Each commit carries the lease's `Fence`: the shard's lock belongs to the worker's own
/// connection, so this one proves the lease in the transaction instead.
final class CommitPipeline: @unchecked Sendable {
    struct Job {
        var batch: StreamBatch
        var consumed: [Int64]
        /// Model versions stored in the batch's transaction, before it (a checkpoint).
        var saves: [ForecastStore.ModelSave] = []
    }

    private let store: ForecastStore
    private let fence: ForecastStore.Fence
    private let condition = NSCondition()
    private var job: Job?
    private var failure: (job: Job, error: Error)?
    private var closed = false
    private var finished = false

    /// The backend the commits run in: its transaction is not one the next read waits for.
    let backendPID: Int

    init(store: ForecastStore, fence: ForecastStore.Fence, name: String) throws {
        self.store = store
        self.fence = fence
        backendPID = try store.backendPID()
        let thread = Thread { [self] in loop() }
        thread.name = "commit \(name)"
        thread.start()
    }

    /// The queue rows of the batch in flight, or of the one that failed and was not taken yet:
    /// the next read must not return them (the failed one is committed again, from `unsaved`).
    var inFlight: [Int64] {
        condition.lock(); defer { condition.unlock() }
        return (job ?? failure?.job)?.consumed ?? []
    }

    /// Whether a commit is running (its transaction may hold row locks and a transaction id).
    var isBusy: Bool {
        condition.lock(); defer { condition.unlock() }
        return job != nil
    }

    /// The commit that failed, if the last one finished with an error; does not wait.
    func takeFailure() -> (job: Job, error: Error)? {
        condition.lock(); defer { condition.unlock() }
        guard job == nil else { return nil }
        defer { failure = nil }
        return failure
    }

    /// Starts committing `job`. The previous one must have been drained.
    func submit(_ job: Job) {
        condition.lock()
        precondition(self.job == nil && failure == nil, "a commit is still in flight")
        self.job = job
        condition.broadcast()
        condition.unlock()
    }

    /// Waits until no commit is in flight; returns the one that failed, with its error.
    func drain() -> (job: Job, error: Error)? {
        condition.lock(); defer { condition.unlock() }
        while job != nil { condition.wait() }
        defer { failure = nil }
        return failure
    }

    /// Drains, ends the thread and closes the connection. Returns the commit that failed.
    func close() -> (job: Job, error: Error)? {
        let failed = drain()
        condition.lock()
        closed = true
        condition.broadcast()
        while !finished { condition.wait() }
        condition.unlock()
        store.connection.close()
        return failed
    }

    private func loop() {
        condition.lock()
        while true {
            while job == nil && !closed { condition.wait() }
            guard let next = job else { break }
            condition.unlock()
            var error: Error?
            do { try store.commit(next.batch, consumed: next.consumed, fence: fence, saving: next.saves) } catch let e { error = e }
            condition.lock()
            if let error { failure = (next, error) }
            job = nil
            condition.broadcast()
        }
        finished = true
        condition.broadcast()
        condition.unlock()
    }
}
