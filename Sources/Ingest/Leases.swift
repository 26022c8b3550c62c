import Foundation

/// Who processes a shard. The session-level advisory lock on the store's connection decides
/// (PostgreSQL releases it when the session ends, so a killed daemon's shards are free at once);
/// forecast.leases records who holds it, when it last showed life, and how often it changed
/// hands.
extension ForecastStore {
    /// The shard's advisory-lock key. A whole source keeps the key of the daemons before shards.
    public var lockKey: Int64 {
        let name = "forecastd writer " + sourceKey + (shard.count == 1 ? "" : " shard \(shard)")
        return Int64(bitPattern: name.fnv1a)
    }

    /// Takes the shard's lock if no one holds it.
    public func tryLock() throws -> Bool {
        try connection.execute("SELECT pg_try_advisory_lock($1::bigint)", [String(lockKey)]).scalar == "t"
    }

    public func unlock() throws {
        try connection.execute("SELECT pg_advisory_unlock($1::bigint)", [String(lockKey)])
    }

    /// The session that holds the shard's lock, as forecast.leases and pg_stat_activity see it.
    public struct LockHolder: Sendable {
        public var backendPID: Int
        public var client: String
        public var worker: String?
        /// Seconds since the holder's last heartbeat, when its lease row names that session.
        public var silentFor: Double?
        /// Whether the holder's session is running a statement (busy, not hung).
        public var active: Bool
    }

    public func lockHolder() throws -> LockHolder? {
        let u = UInt64(bitPattern: lockKey)
        guard let row = try connection.execute("""
            SELECT a.pid, COALESCE(host(a.client_addr), 'local socket'), l2.worker,
                   extract(epoch FROM now() - l2.heartbeat_at)::float8, a.state = 'active'
            FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
            LEFT JOIN forecast.leases l2 ON l2.source = $3 AND l2.shards = $4 AND l2.shard = $5 AND l2.backend_pid = a.pid
            WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid AND l.objsubid = 1
            """, [String(u >> 32), String(u & 0xffff_ffff), sourceKey, String(shard.count), String(shard.index)]).rows.first
        else { return nil }
        return LockHolder(backendPID: Int(row[0] ?? "") ?? 0, client: row[1] ?? "?", worker: row[2],
                          silentFor: row[3].flatMap(Double.init), active: row[4] == "t")
    }

    /// Ends another session (one whose lease ran out). Needs the same role, or pg_signal_backend.
    public func terminate(backendPID: Int) throws -> Bool {
        try connection.execute("SELECT pg_terminate_backend($1::int)", [String(backendPID)]).scalar == "t"
    }

    /// Records that `worker` holds the shard from now; returns the lease's generation (how many
    /// times it was taken). One more than the generation this worker last saw means no one
    /// else held it in between.
    public func recordLease(worker: String) throws -> Int64 {
        Int64(try connection.execute("""
            INSERT INTO forecast.leases AS l (source, shards, shard, worker, backend_pid, generation, acquired_at, heartbeat_at)
            VALUES ($1, $2, $3, $4, pg_backend_pid(), 1, now(), now())
            ON CONFLICT (source, shards, shard) DO UPDATE SET worker = EXCLUDED.worker, backend_pid = EXCLUDED.backend_pid,
                generation = l.generation + 1, acquired_at = now(), heartbeat_at = now()
            RETURNING generation
            """, [sourceKey, String(shard.count), String(shard.index), worker]).scalar ?? "0") ?? 0
    }

    public func heartbeat() throws {
        try connection.execute("""
            UPDATE forecast.leases SET heartbeat_at = now()
            WHERE source = $1 AND shards = $2 AND shard = $3 AND backend_pid = pg_backend_pid()
            """, [sourceKey, String(shard.count), String(shard.index)])
    }

    /// The lease a commit on a second connection is made under: the generation the lock holder
    /// recorded and the holder's backend. The lock belongs to the holder's session, not to the
    /// committing one, so the commit checks the lease row instead and keeps it locked
    /// (FOR SHARE) until it ends: a daemon taking the shard over records its lease with an
    /// UPDATE of that row, which waits for the commit, and reads the queue only after it, so
    /// it never sees rows the commit consumed; a commit that comes after a takeover finds
    /// another generation and writes nothing.
    public struct Fence: Sendable, Equatable {
        public var generation: Int64
        public var backendPID: Int
        public init(generation: Int64, backendPID: Int) {
            self.generation = generation
            self.backendPID = backendPID
        }
    }

    /// The fence for commits made on behalf of this store's session (after `recordLease`).
    public func fence(generation: Int64) throws -> Fence {
        Fence(generation: generation, backendPID: try backendPID())
    }

    /// The server process of this store's connection.
    public func backendPID() throws -> Int {
        Int(try connection.execute("SELECT pg_backend_pid()").scalar ?? "") ?? 0
    }

    func check(_ fence: Fence) throws {
        let held = try connection.execute("""
            SELECT 1 FROM forecast.leases
            WHERE source = $1 AND shards = $2 AND shard = $3 AND generation = $4::bigint AND backend_pid = $5::int
            FOR SHARE
            """, [sourceKey, String(shard.count), String(shard.index), String(fence.generation), String(fence.backendPID)])
        guard !held.rows.isEmpty else {
            throw PostgresError(.connectionLost, "the lease of \(sourceKey)\(shard.count == 1 ? "" : " shard \(shard)") (generation \(fence.generation)) is no longer this daemon's: another daemon took the shard over; the batch in flight was not written")
        }
    }

    /// Gives the shard up: the lease row says no one holds it, and the lock goes.
    public func releaseLease() throws {
        try connection.execute("""
            UPDATE forecast.leases SET worker = NULL, backend_pid = NULL
            WHERE source = $1 AND shards = $2 AND shard = $3 AND backend_pid = pg_backend_pid()
            """, [sourceKey, String(shard.count), String(shard.index)])
        try unlock()
    }
}

/// A daemon's entry in forecast.worker_registry, on a connection of its own: registered at
/// start, refreshed by `heartbeat()`, removed at a graceful stop. `liveWorkers()` counts, per
/// source, the daemons that are alive (a heartbeat within their lease timeout and a session
/// still open), which is what each daemon's fair share of shards is computed from.
public final class WorkerRegistration: @unchecked Sendable {
    public let worker: String
    public let sources: [String]
    public let leaseTimeout: Double
    private var connection: PostgresConnection?
    private let url: String

    public init(url: String, worker: String, sources: [String], leaseTimeout: Double) {
        self.url = url
        self.worker = worker
        self.sources = sources
        self.leaseTimeout = leaseTimeout
    }

    private func connected() throws -> PostgresConnection {
        if let c = connection { return c }
        let c = try PostgresConnection(url: url)
        let host = ProcessInfo.processInfo.hostName
        let array = PostgresConnection.textArray(sources)
        try c.execute("""
            INSERT INTO forecast.worker_registry (worker, host, pid, backend_pid, sources, lease_timeout)
            VALUES ($1, $2, $3, pg_backend_pid(), $4::text[], $5)
            ON CONFLICT (worker) DO UPDATE SET backend_pid = pg_backend_pid(), heartbeat_at = now(),
                sources = EXCLUDED.sources, lease_timeout = EXCLUDED.lease_timeout
            """, [worker, host, String(ProcessInfo.processInfo.processIdentifier), array, String(leaseTimeout)])
        // Entries of daemons dead for a day are of no use to anyone.
        try c.execute("DELETE FROM forecast.worker_registry WHERE heartbeat_at < now() - interval '1 day'")
        connection = c
        return c
    }

    /// Refreshes the heartbeat and returns the live daemons per source (this one included).
    public func heartbeat() throws -> [String: Int] {
        do {
            let c = try connected()
            try c.execute("UPDATE forecast.worker_registry SET heartbeat_at = now() WHERE worker = $1", [worker])
            var out: [String: Int] = [:]
            for row in try c.execute("""
                SELECT s, count(*) FROM forecast.worker_registry w, unnest(w.sources) s
                WHERE w.heartbeat_at > now() - make_interval(secs => w.lease_timeout)
                  AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.pid = w.backend_pid)
                GROUP BY s
                """).rows {
                out[row[0]!] = Int(row[1] ?? "0") ?? 0
            }
            return out
        } catch {
            connection?.close()
            connection = nil
            throw error
        }
    }

    public func deregister() {
        if let c = connection {
            _ = try? c.execute("DELETE FROM forecast.worker_registry WHERE worker = $1", [worker])
            c.close()
        }
        connection = nil
    }
}
