import ArgumentParser
import Forecast
import Foundation
import Ingest

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "List a source's stored model versions, or roll back to one.",
        subcommands: [List.self, Rollback.self]
    )

    struct Target: ParsableArguments {
        @Option(help: ArgumentHelp("The daemon configuration (its database and sources).", valueName: "file"))
        var config = "/etc/forecastd/forecastd.toml"
        @Option(help: ArgumentHelp("The [[source]] table (needed when the configuration has several).", valueName: "table"))
        var source: String?
        @OptionGroup var database: DatabaseOptions

        func open() throws -> (ForecastStore, DaemonConfig) {
            let c = try DaemonConfig.load(path: config)
            let chosen: SourceConfig
            if let source {
                guard let s = c.sources.first(where: { $0.table.display == source || $0.table.name == source }) else {
                    throw CLIError("\(config): no [[source]] with table \(source) (configured: \(c.sources.map(\.table.display).joined(separator: ", ")))")
                }
                chosen = s
            } else {
                guard c.sources.count == 1 else {
                    throw CLIError("\(config) has \(c.sources.count) sources; choose one with --source (\(c.sources.map(\.table.display).joined(separator: ", ")))")
                }
                chosen = c.sources[0]
            }
            let conn = try PostgresConnection(url: database.databaseURL ?? c.databaseURL)
            // The models are forecastd's own: the source table need not be readable here.
            let resolved = ResolvedSource(source: chosen.sourceTable, seriesExpression: "", timeExpression: "", valueExpression: "",
                                          rawTimeExpression: "", timeKind: .timestamptz)
            return (try ForecastStore(connection: conn, source: resolved), c)
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every stored version, newest first, with its training figures.")
        @OptionGroup var target: Target

        func run() throws {
            try reportingErrors {
                let (store, _) = try target.open()
                let models = try store.listModels()
                guard !models.isEmpty else {
                    print("\(store.sourceKey): no stored models yet")
                    return
                }
                func f(_ v: Double?) -> String { v.map { String(format: "%.4g", $0) } ?? "-" }
                print("model    version  created_at            at_point  windows  train_loss  holdout_loss  note")
                var newest: Set<String> = []
                for m in models {
                    let note = [newest.insert(m.modelKey).inserted ? "current" : nil, m.restoredFrom.map { "restored from v\($0)" },
                                m.hasCheckpoint ? nil : "no weights"].compactMap { $0 }.joined(separator: ", ")
                    print([m.modelKey.padding(toLength: 8, withPad: " ", startingAt: 0), String(m.version).leftPad(7),
                           m.createdAt.padding(toLength: 20, withPad: " ", startingAt: 0), (m.trainedAtPoint.map(String.init) ?? "-").leftPad(9),
                           (m.windows.map(String.init) ?? "-").leftPad(8), f(m.trainLoss).leftPad(11), f(m.holdoutLoss).leftPad(13), note]
                        .joined(separator: "  "))
                }
            }
        }
    }

    struct Rollback: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Make a stored version current again.",
            discussion: """
                The version is stored again under a new number above every stored one (versions are \
                never reused) with `restored_from` naming it; a running daemon loads it at its next \
                idle cycle, a stopped one at its start. Its later retrains go on from it.
                """)
        @OptionGroup var target: Target
        @Option(help: "The stored version to go back to.") var version: Int
        @Option(help: ArgumentHelp("The model: * for a source's shared model (the default), *2/4 for the second of four shards' ([ingest] shards = 4), or a series with scope = \"series\".", valueName: "key"))
        var model = "*"

        func run() throws {
            try reportingErrors {
                let (store, _) = try target.open()
                let new = try store.rollback(modelKey: model, to: version) { bytes, number in
                    var snap = try SnapshotCodec.decode(bytes)
                    snap.version = number
                    return SnapshotCodec.encode(snap)
                }
                print("\(store.sourceKey): model \(model) v\(version) is current again as v\(new)")
            }
        }
    }
}

private extension String {
    func leftPad(_ n: Int) -> String { count >= n ? self : String(repeating: " ", count: n - count) + self }
}
