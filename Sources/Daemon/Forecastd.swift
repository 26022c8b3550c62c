import ArgumentParser
import Ingest

@main
struct Forecastd: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forecastd",
        abstract: "Streaming LSTM forecasts and anomaly flags, next to PostgreSQL.",
        discussion: """
            forecastd reads time series from PostgreSQL tables, keeps a stacked LSTM per series \
            trained on a sliding window, and writes next-step predictions with intervals and \
            anomaly flags back into the forecast schema, where they can be queried with SQL.
            """,
        version: ForecastdVersion.string,
        subcommands: [RunCommand.self, CheckConfigCommand.self, Migrate.self, ReplayCommand.self, ModelsCommand.self, Bench.self]
    )
}

enum ForecastdVersion {
    static let string = "0.1.0"
    /// The schema version this binary needs applied: its newest compiled-in migration.
    static var schemaVersion: Int { Migration.schemaVersion }
}
