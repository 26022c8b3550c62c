import Foundation

/// What a source's ingest loop reports to the watchdog and STATUS, updated from its thread.
final class SourceHealth: @unchecked Sendable {
    private let lock = NSLock()
    private var _databaseOK = false
    private var _lastProgress = Date.distantPast
    private var _observations = 0
    private var _series = 0
    private var _lagSeconds: Double?
    private var _retrains = 0
    private var _problem: String?
    let name: String

    /// What is wrong with the source (missing table, no trigger, another daemon's lock), if anything.
    var problem: String? {
        get { lock.lock(); defer { lock.unlock() }; return _problem }
        set { lock.lock(); _problem = newValue; lock.unlock() }
    }

    init(name: String) { self.name = name }

    struct Snapshot {
        var databaseOK: Bool
        var lastProgress: Date
        var observations: Int
        var series: Int
        var lagSeconds: Double?
        var retrains: Int
    }

    var snapshot: Snapshot {
        lock.lock()
        defer { lock.unlock() }
        return Snapshot(databaseOK: _databaseOK, lastProgress: _lastProgress, observations: _observations,
                        series: _series, lagSeconds: _lagSeconds, retrains: _retrains)
    }

    func databaseDown() {
        lock.lock()
        _databaseOK = false
        lock.unlock()
    }

    /// The shard is processed by another daemon: nothing to watch here.
    func standby() {
        lock.lock()
        _databaseOK = true
        _lastProgress = Date()
        _series = 0
        _lagSeconds = nil
        lock.unlock()
    }

    /// A cycle finished: the database answered and the source is caught up to `lag`.
    func progressed(observations: Int, series: Int, lag: Double?) {
        lock.lock()
        _databaseOK = true
        _lastProgress = Date()
        _observations += observations
        _series = series
        if let lag { _lagSeconds = lag }
        lock.unlock()
    }

    func retrained() {
        lock.lock()
        _retrains += 1
        lock.unlock()
    }
}
