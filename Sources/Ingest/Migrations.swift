import Foundation

/// One numbered SQL file from `sql/`, e.g. `001_forecast_schema.sql`. The binary carries them
/// all (`Migration.embedded`, compiled in by the EmbedMigrations build plugin), so `migrate` needs
/// no files on disk and the schema version this build needs is simply the newest of them.
public struct Migration: Sendable, Equatable {
    public var version: Int
    public var name: String
    /// Where the file lives in the repository (for messages).
    public var path: String
    public var sql: String

    public init(version: Int, name: String, path: String, sql: String) {
        self.version = version
        self.name = name
        self.path = path
        self.sql = sql
    }

    /// FNV-1a of the file's text: enough to notice an applied file that was edited.
    public var checksum: String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in sql.utf8 {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        return String(h, radix: 16)
    }

    /// The schema version this binary needs: its newest migration.
    public static var schemaVersion: Int { embedded.last?.version ?? 0 }

    /// Reads every `NNN_name.sql` in `directory`, ordered by number (for tests that need a
    /// variant of the embedded set). Two files with one number or a `.sql` file without a
    /// number are errors that name the file.
    public static func load(from directory: String) throws -> [Migration] {
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: directory)
        } catch {
            throw PostgresError(.migration, "cannot read migrations directory \(directory): \(error.localizedDescription)")
        }
        var seen: [Int: String] = [:]
        var out: [Migration] = []
        for name in names.sorted() where name.hasSuffix(".sql") {
            let path = (directory as NSString).appendingPathComponent(name)
            let digits = name.prefix { $0.isNumber }
            guard let version = Int(digits), name.dropFirst(digits.count).first == "_" else {
                throw PostgresError(.migration, "\(path): migration files are named NNN_description.sql")
            }
            if let other = seen[version] {
                throw PostgresError(.migration, "\(path): version \(version) is also used by \(other)")
            }
            seen[version] = path
            guard let sql = try? String(contentsOfFile: path, encoding: .utf8) else {
                throw PostgresError(.migration, "\(path): cannot read file (is it UTF-8?)")
            }
            let label = String(name.dropFirst(digits.count + 1).dropLast(4))
            out.append(Migration(version: version, name: label, path: path, sql: sql))
        }
        if out.isEmpty { throw PostgresError(.migration, "no NNN_*.sql migration files in \(directory)") }
        return out.sorted { $0.version < $1.version }
    }
}

/// Applies migrations in order, each in its own transaction, and records them in
/// forecast.schema_migrations. Running it again applies nothing.
public struct Migrator {
    public let connection: PostgresConnection

    public init(connection: PostgresConnection) {
        self.connection = connection
    }

    public struct Report: Sendable {
        public var applied: [Migration] = []
        public var alreadyApplied: Int = 0
    }

    // An arbitrary constant: serialises concurrent `migrate` runs (two daemons starting at once).
    static let lockKey = "7316031415"

    public func migrate(_ migrations: [Migration]) throws -> Report {
        try connection.execute("SELECT pg_advisory_lock(\(Self.lockKey))")
        defer { _ = try? connection.execute("SELECT pg_advisory_unlock(\(Self.lockKey))") }
        try connection.execute("""
            CREATE SCHEMA IF NOT EXISTS forecast;
            CREATE TABLE IF NOT EXISTS forecast.schema_migrations (
                version    integer     PRIMARY KEY,
                name       text        NOT NULL,
                checksum   text        NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """)
        let applied = try appliedVersions()
        var report = Report()
        for m in migrations {
            if let sum = applied[m.version] {
                if sum != m.checksum {
                    throw PostgresError(.migration, "\(m.path) was changed after it was applied (version \(m.version)); add a new numbered file instead")
                }
                report.alreadyApplied += 1
                continue
            }
            do {
                try connection.transaction {
                    try connection.executeScript(m.sql)
                    try connection.execute(
                        "INSERT INTO forecast.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                        [String(m.version), m.name, m.checksum])
                }
            } catch let e as PostgresError {
                throw PostgresError(.migration, "\(m.path): \(e.message)", sqlState: e.sqlState)
            }
            report.applied.append(m)
        }
        return report
    }

    /// version -> checksum of what the database has applied.
    public func appliedVersions() throws -> [Int: String] {
        let exists = try connection.execute("SELECT to_regclass('forecast.schema_migrations') IS NOT NULL").scalar
        guard exists == "t" else { return [:] }
        let r = try connection.execute("SELECT version, checksum FROM forecast.schema_migrations")
        var out: [Int: String] = [:]
        for row in r.rows { if let v = row[0].flatMap({ Int($0) }), let c = row[1] { out[v] = c } }
        return out
    }

    /// The highest applied version, or nil for a database that was never migrated.
    public func currentVersion() throws -> Int? {
        try appliedVersions().keys.max()
    }
}
