/// A PostgreSQL failure, phrased for an operator: where it tried to go and what libpq said.
/// Messages never contain the password of the connection string.
public struct PostgresError: Error, CustomStringConvertible, Sendable {
    public enum Kind: Sendable {
        case badConnectionString
        case connectionFailed
        case connectionLost
        case query
        case copy
        case migration
    }

    public var kind: Kind
    public var message: String
    /// SQLSTATE when the server sent one (for example "42P01" undefined_table).
    public var sqlState: String?

    public init(_ kind: Kind, _ message: String, sqlState: String? = nil) {
        self.kind = kind
        self.message = message
        self.sqlState = sqlState
    }

    public var description: String { message }

    /// True when retrying on a new connection may succeed (the server went away or restarts).
    public var isConnectionProblem: Bool {
        switch kind {
        case .connectionFailed, .connectionLost: return true
        default:
            // Class 08 = connection exception; 57P0x = admin shutdown / crash / cannot connect now.
            guard let s = sqlState else { return false }
            return s.hasPrefix("08") || s.hasPrefix("57P")
        }
    }
}
