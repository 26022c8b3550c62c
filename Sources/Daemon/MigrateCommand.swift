import ArgumentParser
import Foundation
import Ingest

struct Migrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create or upgrade the forecast schema in PostgreSQL.",
        discussion: """
            Applies the numbered SQL migrations compiled into this binary (the repository's sql/NNN_*.sql) that the database has not seen yet, each \
            in its own transaction, and records them in forecast.schema_migrations. Running it \
            again changes nothing. The database URL comes from --database-url, else \
            $FORECASTD_DATABASE_URL, else libpq's PG* environment variables.
            """
    )

    @OptionGroup var database: DatabaseOptions

    @Option(help: ArgumentHelp("Also install the NOTIFY trigger on every [[source]] table of this configuration (its database.url is used unless --database-url is given).", valueName: "file"))
    var config: String?

    func run() throws {
        try reportingErrors {
            let migrations = Migration.embedded
            let cfg = try config.map { try DaemonConfig.load(path: $0) }
            let url = database.databaseURL ?? cfg?.databaseURL ?? database.resolvedURL
            let connection = try PostgresConnection(url: url)
            let report = try Migrator(connection: connection).migrate(migrations)
            for m in report.applied { print("applied \(String(format: "%03d", m.version)) \(m.name)") }
            let version = migrations.last.map { $0.version } ?? 0
            if report.applied.isEmpty {
                print("schema is up to date at version \(version) (\(connection.target))")
            } else {
                print("schema now at version \(version) (\(connection.target))")
            }
            var missing = 0
            for source in cfg?.sources ?? [] {
                let resolved: ResolvedSource
                do {
                    resolved = try source.sourceTable.resolve(on: connection)
                } catch let e as PostgresError where e.sqlState == "42P01" {
                    // A table the application has not created yet: the daemon reports it and
                    // retries; run migrate again once it exists.
                    printError("forecastd: warning: \(e.message): no trigger installed; run `forecastd migrate --config \(config!)` again once it exists")
                    missing += 1
                    continue
                }
                let store = try ForecastStore(connection: connection, source: resolved)
                if try store.hasCaptureTrigger() {
                    print("trigger already on \(source.table.display)")
                } else {
                    try store.installTrigger()
                    print("trigger installed on \(source.table.display) (rows not yet forecast are queued)")
                }
            }
            _ = missing
        }
    }
}

struct DatabaseOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "PostgreSQL connection URL or key=value string, e.g. postgresql:///forecast?host=/run/postgresql.",
        valueName: "url"))
    var databaseURL: String?

    var resolvedURL: String {
        if let databaseURL { return databaseURL }
        if let env = ProcessInfo.processInfo.environment["FORECASTD_DATABASE_URL"], !env.isEmpty { return env }
        return ""  // libpq then uses PGHOST, PGDATABASE, ... and its defaults
    }
}
