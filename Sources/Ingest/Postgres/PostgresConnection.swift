import CLibPQ
import Foundation

/// One libpq connection. Not thread-safe: each task or thread that talks to the database owns
/// its own connection, which keeps libpq's blocking calls off shared state.
public final class PostgresConnection {
    private var conn: OpaquePointer?
    public let target: ConnectionTarget

    /// Connects, or throws one line naming where it tried to connect and libpq's reason.
    public init(url: String, applicationName: String = "forecastd") throws {
        target = try ConnectionTarget(parsing: url)
        // application_name is passed beside the user's string so it shows in pg_stat_activity.
        let keys = ["dbname", "application_name", "connect_timeout"]
        let values = [url, applicationName, "10"]
        conn = keys.withCStrings { k in
            values.withCStrings { v in PQconnectdbParams(k, v, 1) }
        }
        guard let conn, PQstatus(conn) == CONNECTION_OK else {
            let reason = conn.map { String(cString: PQerrorMessage($0)) } ?? "out of memory"
            if let conn { PQfinish(conn) }
            self.conn = nil
            let clean = ConnectionTarget.redact(reason.trimmed.oneLine, secret: target.password, in: url)
            throw PostgresError(.connectionFailed, "cannot connect to PostgreSQL at \(target): \(clean)")
        }
        // Notices (for example "relation already exists, skipping") are not errors; keep them
        // off stderr so the daemon's log stays meaningful.
        PQsetNoticeProcessor(conn, { _, _ in }, nil)
    }

    deinit { close() }

    public func close() {
        if let conn { PQfinish(conn) }
        conn = nil
    }

    public var isOpen: Bool {
        guard let conn else { return false }
        return PQstatus(conn) == CONNECTION_OK
    }

    /// The server's file descriptor, for waiting on notifications.
    public var socket: Int32 { conn.map { PQsocket($0) } ?? -1 }

    private func handle() throws -> OpaquePointer {
        guard let conn, PQstatus(conn) == CONNECTION_OK else {
            throw PostgresError(.connectionLost, "connection to PostgreSQL at \(target) is closed")
        }
        return conn
    }

    /// Runs one statement, with parameters sent separately from the SQL text (never interpolated).
    /// Parameters are text; nil is SQL NULL.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [String?] = []) throws -> QueryResult {
        let conn = try handle()
        let result: OpaquePointer?
        if parameters.isEmpty {
            result = PQexec(conn, sql)
        } else {
            result = parameters.withOptionalCStrings { params in
                PQexecParams(conn, sql, Int32(parameters.count), nil, params, nil, nil, 0)
            }
        }
        return try check(result, conn: conn, sql: sql)
    }

    /// A statement parameter: text (nil is SQL NULL) or raw bytes for a `bytea`, sent in libpq's
    /// binary format, so a checkpoint's megabytes go as they are instead of as base64 text that
    /// the server decodes again.
    public enum Parameter {
        case text(String?)
        case bytes(ArraySlice<UInt8>?)
    }

    /// `execute` with parameters that may be bytes.
    @discardableResult
    public func execute(_ sql: String, parameters: [Parameter]) throws -> QueryResult {
        let conn = try handle()
        return try check(Self.exec(conn, sql, parameters, resultFormat: 0), conn: conn, sql: sql)
    }

    /// Runs a query with its results in libpq's binary format, row by row: a `bytea` arrives as
    /// its bytes (`ResultRow.bytes`), not as hex text twice its size that is decoded again, and
    /// a `text` as its UTF-8 (`ResultRow.text`). Other types come in PostgreSQL's binary form:
    /// cast them to text in the query.
    public func forEachBinaryRow(_ sql: String, parameters: [Parameter], _ body: (ResultRow) throws -> Void) throws {
        let conn = try handle()
        guard let result = Self.exec(conn, sql, parameters, resultFormat: 1) else { throw lostOrFailed(conn, fallback: "no result from server") }
        defer { PQclear(result) }
        guard PQresultStatus(result) == PGRES_TUPLES_OK else { throw failure(result, conn: conn) }
        for r in 0..<PQntuples(result) { try body(ResultRow(result: result, row: r)) }
    }

    private static func exec(_ conn: OpaquePointer, _ sql: String, _ parameters: [Parameter], resultFormat: Int32) -> OpaquePointer? {
        let n = parameters.count
        // Every value copied into one buffer of its own, freed after the call: libpq needs all
        // the pointers at once.
        var buffers: [UnsafeMutablePointer<CChar>?] = []
        var lengths: [Int32] = []
        var formats: [Int32] = []
        buffers.reserveCapacity(n)
        defer { for b in buffers { b?.deallocate() } }
        for p in parameters {
            switch p {
            case .text(nil), .bytes(nil):
                buffers.append(nil); lengths.append(0); formats.append(0)
            case .text(let s?):
                let utf8 = Array(s.utf8CString)
                let b = UnsafeMutablePointer<CChar>.allocate(capacity: utf8.count)
                b.initialize(from: utf8, count: utf8.count)
                buffers.append(b); lengths.append(0); formats.append(0)
            case .bytes(let bytes?):
                let b = UnsafeMutablePointer<CChar>.allocate(capacity: max(bytes.count, 1))
                bytes.withUnsafeBytes { raw in
                    if let base = raw.baseAddress { UnsafeMutableRawPointer(b).copyMemory(from: base, byteCount: raw.count) }
                }
                buffers.append(b); lengths.append(Int32(bytes.count)); formats.append(1)
            }
        }
        let values = buffers.map { UnsafePointer($0) }
        return values.withUnsafeBufferPointer { v in
            lengths.withUnsafeBufferPointer { l in
                formats.withUnsafeBufferPointer { f in
                    PQexecParams(conn, sql, Int32(n), nil, v.baseAddress, l.baseAddress, f.baseAddress, resultFormat)
                }
            }
        }
    }

    /// Runs a script of several statements (a migration file). No parameters allowed.
    public func executeScript(_ sql: String) throws {
        let conn = try handle()
        _ = try check(PQexec(conn, sql), conn: conn, sql: sql)
        // PQexec returns only the last result; the rest were consumed by libpq.
    }

    /// Runs one statement like `execute` and hands each row of the result to `body` as libpq
    /// holds it, without first copying every field into a Swift string: for results of hundreds
    /// of thousands of rows (a restart's history), where those copies took most of the time.
    public func forEachRow(_ sql: String, _ parameters: [String?] = [], _ body: (ResultRow) throws -> Void) throws {
        let conn = try handle()
        let result: OpaquePointer?
        if parameters.isEmpty {
            result = PQexec(conn, sql)
        } else {
            result = parameters.withOptionalCStrings { params in
                PQexecParams(conn, sql, Int32(parameters.count), nil, params, nil, nil, 0)
            }
        }
        guard let result else { throw lostOrFailed(conn, fallback: "no result from server") }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        guard status == PGRES_TUPLES_OK || status == PGRES_COMMAND_OK else { throw failure(result, conn: conn) }
        for r in 0..<PQntuples(result) { try body(ResultRow(result: result, row: r)) }
    }

    private func check(_ result: OpaquePointer?, conn: OpaquePointer, sql: String) throws -> QueryResult {
        guard let result else {
            throw lostOrFailed(conn, fallback: "no result from server")
        }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY, PGRES_COPY_IN:
            return QueryResult(result)
        default:
            defer { PQclear(result) }
            throw failure(result, conn: conn)
        }
    }

    /// The error a failed result reports (the caller clears the result).
    private func failure(_ result: OpaquePointer, conn: OpaquePointer) -> PostgresError {
        let message = String(cString: PQresultErrorMessage(result)).trimmed.oneLine
        let state = PQresultErrorField(result, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
        if PQstatus(conn) != CONNECTION_OK {
            return PostgresError(.connectionLost, "lost connection to PostgreSQL at \(target): \(message)", sqlState: state)
        }
        return PostgresError(.query, message, sqlState: state)
    }

    private func lostOrFailed(_ conn: OpaquePointer, fallback: String) -> PostgresError {
        let msg = String(cString: PQerrorMessage(conn)).trimmed.oneLine
        let kind: PostgresError.Kind = PQstatus(conn) == CONNECTION_OK ? .query : .connectionLost
        return PostgresError(kind, "PostgreSQL at \(target): \(msg.isEmpty ? fallback : msg)")
    }

    /// Runs `body` inside BEGIN/COMMIT; rolls back if it throws.
    public func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN")
        do {
            let value = try body()
            try execute("COMMIT")
            return value
        } catch {
            if isOpen { _ = try? execute("ROLLBACK") }
            throw error
        }
    }

    // MARK: COPY

    /// Streams rows in with COPY ... FROM STDIN (text format). `rows` are already-encoded lines
    /// without the trailing newline; use `CopyText.encode` to escape fields.
    public func copyIn(_ copyStatement: String, rows: some Sequence<String>) throws {
        let conn = try handle()
        let start = PQexec(conn, copyStatement)
        guard let start else { throw lostOrFailed(conn, fallback: "COPY did not start") }
        guard PQresultStatus(start) == PGRES_COPY_IN else {
            _ = try check(start, conn: conn, sql: copyStatement)
            throw PostgresError(.copy, "statement is not COPY FROM STDIN: \(copyStatement)")
        }
        PQclear(start)
        var buffer = [UInt8]()
        buffer.reserveCapacity(1 << 16)
        func flush() throws {
            guard !buffer.isEmpty else { return }
            let rc = buffer.withUnsafeBufferPointer { p in
                p.withMemoryRebound(to: CChar.self) { PQputCopyData(conn, $0.baseAddress, Int32($0.count)) }
            }
            buffer.removeAll(keepingCapacity: true)
            if rc != 1 { throw lostOrFailed(conn, fallback: "COPY data was not accepted") }
        }
        for row in rows {
            buffer.append(contentsOf: row.utf8)
            buffer.append(0x0A)
            if buffer.count >= 1 << 16 { try flush() }
        }
        try flush()
        guard PQputCopyEnd(conn, nil) == 1 else { throw lostOrFailed(conn, fallback: "COPY could not finish") }
        var failure: PostgresError?
        while let r = PQgetResult(conn) {
            if PQresultStatus(r) != PGRES_COMMAND_OK, failure == nil {
                let message = String(cString: PQresultErrorMessage(r)).trimmed.oneLine
                let state = PQresultErrorField(r, Int32(UInt8(ascii: "C"))).map { String(cString: $0) }
                failure = PostgresError(.copy, message, sqlState: state)
            }
            PQclear(r)
        }
        if let failure { throw failure }
    }

    // MARK: LISTEN / NOTIFY

    public struct Notification: Sendable, Equatable {
        public var channel: String
        public var payload: String
        public var processID: Int32
    }

    public func listen(_ channel: String) throws {
        try execute("LISTEN \(Self.quoteIdentifier(channel))")
    }

    public func notify(_ channel: String, payload: String) throws {
        try execute("SELECT pg_notify($1, $2)", [channel, payload])
    }

    /// Waits up to `timeout` seconds for notifications and returns those that arrived (possibly
    /// none). Throws when the connection is lost, so callers can reconnect.
    /// Also returns (with nothing) as soon as `wakeFD` becomes readable, so another thread can
    /// end the wait without a timeout.
    public func waitForNotifications(timeout: Double, wakeFD: Int32? = nil) throws -> [Notification] {
        let conn = try handle()
        var out = drainNotifications(conn)
        if !out.isEmpty { return out }
        var fds = [pollfd(fd: PQsocket(conn), events: Int16(POLLIN), revents: 0)]
        if let wakeFD { fds.append(pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)) }
        let ms = Int32(max(0, min(timeout, 3600)) * 1000)
        let ready = poll(&fds, nfds_t(fds.count), ms)
        if ready < 0 && errno != EINTR {
            throw PostgresError(.connectionLost, "waiting for notifications from \(target) failed: \(String(cString: strerror(errno)))")
        }
        if ready > 0 && fds[0].revents != 0 {
            if PQconsumeInput(conn) == 0 { throw lostOrFailed(conn, fallback: "connection lost") }
            out = drainNotifications(conn)
        }
        return out
    }

    private func drainNotifications(_ conn: OpaquePointer) -> [Notification] {
        var out: [Notification] = []
        _ = PQconsumeInput(conn)
        while let n = PQnotifies(conn) {
            out.append(Notification(channel: String(cString: n.pointee.relname),
                                    payload: String(cString: n.pointee.extra),
                                    processID: n.pointee.be_pid))
            PQfreemem(n)
        }
        return out
    }

    /// Quotes an identifier the way PostgreSQL's quote_ident does, for names that come from
    /// configuration (tables, columns). Dotted names are quoted part by part by `quoteQualified`.
    public static func quoteIdentifier(_ name: String) -> String {
        "\"" + name.replacingAll("\"", with: "\"\"") + "\""
    }

    /// A text[] literal of `items` (for a `$n::text[]` parameter): each element double-quoted,
    /// with backslashes and quotes escaped, so any string round-trips.
    public static func textArray(_ items: [String]) -> String {
        "{" + items.map { "\"" + $0.replacingAll("\\", with: "\\\\").replacingAll("\"", with: "\\\"") + "\"" }
            .joined(separator: ",") + "}"
    }
}

extension String {
    var oneLine: String {
        split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    }
}

extension Array where Element == String {
    func withCStrings<R>(_ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        let cstrings = map { strdup($0) } + [nil]
        defer { cstrings.forEach { free($0) } }
        return cstrings.map { UnsafePointer($0) }.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}

extension Array where Element == String? {
    func withOptionalCStrings<R>(_ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        let cstrings = map { $0.map { strdup($0) } ?? nil }
        defer { cstrings.forEach { free($0) } }
        return cstrings.map { UnsafePointer($0) }.withUnsafeBufferPointer { body($0.baseAddress!) }
    }
}
