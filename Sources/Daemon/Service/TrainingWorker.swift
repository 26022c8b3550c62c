import Forecast
import Foundation

/// Runs a source's training jobs on a thread of its own, so that ingest never waits for a
/// retrain: the ingest loop hands jobs in and picks finished outcomes up at its next cycle.
final class TrainingWorker: @unchecked Sendable {
    private let lock = NSCondition()
    private var queue: [TrainingJob] = []
    private var done: [TrainingOutcome] = []
    private var stopped = false
    private var thread: Thread?
    private let onFinished: @Sendable () -> Void

    /// `onFinished` is called on the training thread after each outcome is ready.
    init(name: String, onFinished: @escaping @Sendable () -> Void = {}) {
        self.onFinished = onFinished
        let t = Thread { [unowned self] in self.loop() }
        t.name = "train \(name)"
        t.stackSize = 8 << 20
        thread = t
        t.start()
    }

    func submit(_ jobs: [TrainingJob]) {
        guard !jobs.isEmpty else { return }
        lock.lock()
        queue += jobs
        lock.signal()
        lock.unlock()
    }

    func takeFinished() -> [TrainingOutcome] {
        lock.lock()
        defer { lock.unlock() }
        let out = done
        done = []
        return out
    }

    /// Whether an outcome is waiting (without taking it).
    var hasFinished: Bool {
        lock.lock()
        defer { lock.unlock() }
        return !done.isEmpty
    }


    /// Stops after the job in progress (pending jobs are dropped: they are recreated when due).
    func stop() {
        lock.lock()
        stopped = true
        queue.removeAll()
        lock.broadcast()
        lock.unlock()
    }


    /// The nice value of the training thread. A retrain is seconds of one core at full load; at
    /// the ingest threads' priority it takes half of the core a forecast is split onto. Below
    /// them (weight 335 against 1024) it gets what ingest leaves and a quarter of a contended
    /// core. Measured at 1,000 series at full rate: 13,400–13,900 observations/s during retrains
    /// against 12,000–12,600 at nice 0, the same overall, retrains 6.2 s instead of 4.8.
    static let niceness: Int32 = 5

    private func loop() {
        // On Linux the nice value belongs to a thread, and `who` 0 is the calling one. Should it
        // fail, the retrain competes with ingest as an equal, as it did before.
        _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, Self.niceness)
        while true {
            lock.lock()
            while queue.isEmpty && !stopped { lock.wait() }
            if stopped && queue.isEmpty { lock.unlock(); return }
            let job = queue.removeFirst()
            lock.unlock()
            let outcome = job.run()
            lock.lock()
            done.append(outcome)
            lock.broadcast()
            lock.unlock()
            onFinished()
        }
    }
}
