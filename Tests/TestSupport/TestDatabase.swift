import Foundation
import Ingest
import XCTest

/// The throwaway PostgreSQL that `scripts/pg-tmp run -- swift test` starts. Each test gets a database
/// of its own, so tests can run in any order and leave nothing behind.
public enum TestDatabase {
    /// The cluster URL, or a test failure: a missing database is never a silent skip.
    public static func clusterURL(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        guard let url = ProcessInfo.processInfo.environment["FORECASTD_TEST_DATABASE_URL"], !url.isEmpty else {
            throw DaemonHarness.Failure(description: "FORECASTD_TEST_DATABASE_URL is not set: run the tests with scripts/test (or scripts/pg-tmp run -- swift test); a missing database is a failure, not a skip")
        }
        return url
    }

    /// The cluster's directory (for stopping and starting the server in tests).
    public static var clusterDirectory: String? {
        ProcessInfo.processInfo.environment["FORECASTD_TEST_PGDIR"]
    }

    /// Creates an empty database named after the test and returns its URL.
    public static func fresh(_ name: String = #function, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let cluster = try clusterURL(file: file, line: line)
        let clean = name.lowercased().map { $0.isLetter || $0.isNumber ? $0 : "_" }
        let db = "t_" + String(clean.prefix(40)) + "_" + String(UInt32.random(in: 0...UInt32.max), radix: 36)
        let admin = try PostgresConnection(url: cluster)
        try admin.execute("CREATE DATABASE \(PostgresConnection.quoteIdentifier(db))")
        admin.close()
        return url(cluster, database: db)
    }

    /// The same cluster URL pointed at another database.
    public static func url(_ cluster: String, database: String) -> String {
        // pg-tmp's URLs look like postgresql:///postgres?host=DIR&user=postgres
        guard let q = cluster.firstIndex(of: "?"), let slash = cluster.range(of: ":///") else {
            return cluster + " dbname=\(database)"
        }
        return String(cluster[..<slash.upperBound]) + database + String(cluster[q...])
    }

    /// The repository root (for sql/, scripts/, deploy/ and the built binary).
    public static var repositoryRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
    }

    public static var sqlDirectory: String { repositoryRoot.appendingPathComponent("sql").path }

    /// Applies the repository's migrations to `url`.
    @discardableResult
    public static func migrate(_ url: String) throws -> Migrator.Report {
        let conn = try PostgresConnection(url: url)
        defer { conn.close() }
        return try Migrator(connection: conn).migrate(Migration.embedded)
    }
}
