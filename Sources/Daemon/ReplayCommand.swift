import ArgumentParser
import Dispatch
import Forecast
import Foundation
import Ingest
import Replay

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Backtest: run history through the streaming engine and measure it.",
        discussion: """
            The same stream session as the daemon, fed from a configured source table, a CSV \
            file, a folder of CSV files or any PostgreSQL table, with training done inline so \
            that a run is reproducible: the same input and seed give a byte-identical output.

            With --config the run uses exactly the daemon's settings from that file (and, \
            without --csv, reads the source table it names, from its database); every setting \
            below overrides a single one. Without --config the defaults are the daemon's.

            Examples:
              forecastd replay --config /etc/forecastd/forecastd.toml --report r.json --plot p.svg
              forecastd replay --config /etc/forecastd/forecastd.toml --source public.prices --seq-length 96
              forecastd replay --csv ETTh1.csv --time-column date --value-column OT --report r.json --plot p.svg
              forecastd replay --csv ETTh1.csv --time-column date --value-column OT --rp1 --output rp1.csv
              forecastd replay --csv-dir data/nab --output-dir out --time-column timestamp --value-column value
              forecastd replay --database-url postgresql:///db --table public.prices --series-column symbol \\
                  --time-column ts --value-column price --from 2024-01-01 --write-table

            Rows that cannot be used are still written to --output (unscored) and counted in the \
            report's bad_rows under the names forecast.status uses: null_value, \
            non_numeric_value and non_finite_value rows are gaps; bad_time, wrong_field_count, \
            malformed_field, duplicate_time and out_of_order_time rows are skipped. The first \
            few line numbers of a CSV's problems are printed.

            Settings (flag, then its [table] key in the configuration file):
            """ + Settings.flagHelp
    )

    @Option(help: ArgumentHelp("Use the settings of this daemon configuration (and, without --csv, its source table and database).", valueName: "file"))
    var config: String?
    @Option(help: ArgumentHelp("With --config: the [[source]] to replay (its table name), when it has several.", valueName: "table"))
    var source: String?
    @Option(help: ArgumentHelp("Replay this CSV file.", valueName: "file")) var csv: String?
    @Option(help: ArgumentHelp("Replay every CSV file under this folder (see --output-dir).", valueName: "dir")) var csvDir: String?
    @Option(help: ArgumentHelp("With --csv-dir: write each output CSV at the same relative path here.", valueName: "dir")) var outputDir: String?
    @Option(help: "Column (CSV header or table column) holding the timestamps.") var timeColumn: String?
    @Option(help: "Column holding the values.") var valueColumn: String?
    @Option(help: "Column naming the series (omit for a single series).") var seriesColumn: String?

    @OptionGroup var database: DatabaseOptions
    @Option(help: "Replay this table (schema.table) from --database-url.") var table: String?
    @Option(help: "With a table: only this series.") var series: String?
    @Option(help: "With a table: only rows at or after this time (e.g. 2024-01-01).") var from: String?
    @Option(help: "With a table: only rows at or before this time.") var to: String?

    @Option(help: ArgumentHelp("Write one row per input row: series,timestamp,actual,predicted,lower,upper,anomaly_score,is_anomaly,reason.", valueName: "file.csv"))
    var output: String?
    @Flag(help: "Store the run in forecast.backtest_runs and forecast.backtest_predictions (needs a database URL).")
    var writeTable = false
    @Option(help: ArgumentHelp("Write accuracy metrics and timings as JSON.", valueName: "file.json")) var report: String?
    @Option(help: ArgumentHelp("Draw actual vs predicted, the interval band and anomalies as SVG.", valueName: "file.svg")) var plot: String?
    @Option(help: "Series to plot (default: the first).") var plotSeries: String?
    @Option(help: ArgumentHelp("With --horizon H > 1: write every issued path step: series,issued_at,timestamp,step,predicted,lower,upper,actual.", valueName: "file.csv"))
    var outputPaths: String?
    @Option(help: ArgumentHelp("With --horizon H > 1 and --plot: draw the fan of the path issued at (or last before) this time over the actuals, instead of the whole series (default: the last path).", valueName: "time"))
    var plotPathAt: String?
    @Option(help: "With --csv-dir: files replayed at once (default: the number of cores).") var jobs: Int?
    @Flag(help: "No progress output.") var quiet = false

    @Flag(help: "Start from RP-1, the reference walk-forward protocol (shared/anchors/walk_forward.py): hidden 64, 2 layers, seq-length 48, warmup 2000, retrain-every 500, history 4000, initial-epochs 10, epochs 2, z-score scaling, no holdout, 2 training threads.")
    var rp1 = false

    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("Settings as --flag value (listed below).", valueName: "settings"))
    var settings: [String] = []

    func validate() throws {
        let inputs = [csv != nil, csvDir != nil, table != nil].filter { $0 }.count
        guard inputs == 1 || (inputs == 0 && config != nil) else {
            throw ValidationError("give exactly one input: --config FILE (its source table), --csv FILE, --csv-dir DIR or --table NAME")
        }
        // A configured source names its columns; any other input needs them named.
        if table != nil || config == nil {
            guard timeColumn != nil, valueColumn != nil else { throw ValidationError("--time-column and --value-column are required") }
        }
        if source != nil && config == nil { throw ValidationError("--source goes with --config") }
        if csvDir != nil && outputDir == nil { throw ValidationError("--csv-dir needs --output-dir") }
        if csvDir != nil && (outputPaths != nil || plotPathAt != nil) {
            throw ValidationError("--output-paths and --plot-path-at go with a single input (--csv, --table or --config)")
        }
        if plotPathAt != nil && TimestampParser.parse(plotPathAt!) == nil {
            throw ValidationError("--plot-path-at: cannot read \"\(plotPathAt!)\" as a time")
        }
        if csvDir == nil && outputDir != nil { throw ValidationError("--output-dir goes with --csv-dir") }
        if (csv != nil || csvDir != nil) && (series != nil || from != nil || to != nil) {
            throw ValidationError("--series, --from and --to go with a table")
        }
    }

    /// Where --write-table stores the run: --database-url, else the configuration's database.
    private var backtestURL: String {
        if let url = database.databaseURL { return url }
        if let path = config, let c = try? DaemonConfig.load(path: path) { return c.databaseURL }
        return database.resolvedURL
    }

    /// The CSV columns: as given, else the configured source's.
    private func csvColumns(_ configured: SourceConfig?) -> CSVColumns {
        CSVColumns(time: timeColumn ?? configured?.timeColumn ?? "", value: valueColumn ?? configured?.valueColumn ?? "",
                   series: seriesColumn ?? (timeColumn == nil ? configured?.seriesColumn : nil))
    }

    func run() throws {
        try reportingErrors {
            let cores = ProcessInfo.processInfo.activeProcessorCount
            let (daemon, configured) = try loadConfig()
            if let dir = csvDir {
                try replayFolder(dir, config: try engineConfig(daemon, source: configured), columns: csvColumns(configured),
                                 cores: cores)
                return
            }
            let config = try engineConfig(daemon, source: configured)
            let (rows, label) = try readInput(daemon: daemon, source: configured)
            if config.horizon == 1 && (outputPaths != nil || plotPathAt != nil) {
                throw ValidationError("--output-paths and --plot-path-at need --horizon greater than 1")
            }
            let outcome = try replay(rows, label: label, config: config, progressLabel: nil)
            // A table's bad rows, as the stream session named them (a CSV's were listed with
            // their line numbers when it was read).
            if csv == nil && !outcome.report.badRows.isEmpty {
                printError("forecastd: warning: \(label): rows not used: " + outcome.report.badRows.sorted { $0.key < $1.key }
                    .map { "\($0.key) \($0.value)" }.joined(separator: ", "))
            }
            try writeOutputs(rows: rows, outcome: outcome, config: config, label: label,
                             output: output, report: report, plot: plot)
            printSummary(outcome.report, label: label)
        }
    }

    // MARK: settings

    /// The daemon configuration the run starts from (the file's, or the daemon's defaults), and
    /// the configured source it replays.
    private func loadConfig() throws -> (DaemonConfig, SourceConfig?) {
        guard let path = config else { return (DaemonConfig.defaults, nil) }
        let c = try DaemonConfig.load(path: path)
        if let source {
            guard let s = c.sources.first(where: { $0.table.display == source || $0.table.name == source }) else {
                throw CLIError("\(path): no [[source]] with table \(source) (configured: \(c.sources.map(\.table.display).joined(separator: ", ")))")
            }
            return (c, s)
        }
        guard c.sources.count == 1 || csv != nil || csvDir != nil else {
            throw CLIError("\(path) has \(c.sources.count) sources; choose one with --source (\(c.sources.map(\.table.display).joined(separator: ", ")))")
        }
        return (c, c.sources.first)
    }

    /// The engine settings of the run: the configuration's (for the source), RP-1's with --rp1,
    /// then each flag in the order given.
    private func engineConfig(_ daemon: DaemonConfig, source: SourceConfig?) throws -> EngineConfig {
        var c = daemon
        if let source { c.engine = daemon.engine(for: source) }
        if rp1 {
            c.engine = EngineConfig.rp1
            c.engine.threads = min(2, ProcessInfo.processInfo.activeProcessorCount)
        }
        do {
            try Settings.apply(flags: settings, to: &c)
        } catch {
            throw ValidationError(error.message)
        }
        do {
            try c.engine.validate()
        } catch {
            throw ValidationError(Settings.flagMessage("\(error)"))
        }
        return c.engine
    }

    /// The report's settings: every engine setting by its configuration key.
    private func settingsJSON(_ engine: EngineConfig) -> JSONValue {
        var c = DaemonConfig.defaults
        c.engine = engine
        return Settings.json(c)
    }

    // MARK: input

    private func readInput(daemon: DaemonConfig, source configured: SourceConfig?) throws -> ([ReplayRow], String) {
        if let csv {
            let (rows, issues) = try ReplayInput.csv(path: csv, columns: csvColumns(configured))
            if let warning = issues.warning(path: csv) { printError("forecastd: warning: \(warning)") }
            return (rows, csv)
        }
        let sourceTable: SourceTable
        let url: String
        if let table {
            sourceTable = SourceTable(table: try SQLName(parsing: table), seriesColumn: seriesColumn, timeColumn: timeColumn!,
                                      valueColumn: valueColumn!)
            url = database.databaseURL ?? (config != nil ? daemon.databaseURL : database.resolvedURL)
        } else {
            let s = configured!
            sourceTable = s.sourceTable
            url = database.databaseURL ?? daemon.databaseURL
        }
        func time(_ flag: String, _ text: String?) throws -> Double? {
            guard let text else { return nil }
            guard let t = TimestampParser.parse(text) else { throw ValidationError("--\(flag): cannot read \"\(text)\" as a time") }
            return t
        }
        let rows = try ReplayInput.table(sourceTable, url: url, series: series, from: try time("from", from), to: try time("to", to))
        return (rows, sourceTable.table.display)
    }

    // MARK: running

    private func replay(_ rows: [ReplayRow], label: String, config: EngineConfig, progressLabel: String?) throws -> ReplayRunner.Outcome {
        let bar = quiet ? nil : ProgressBar(total: rows.count, unit: "points", label: progressLabel)
        defer { bar?.finish() }
        let keepPaths = config.horizon > 1 && (outputPaths != nil || plot != nil)
        return try ReplayRunner(config: config).run(rows, keepPaths: keepPaths) { bar?.update(completed: $0) }
    }

    private func writeOutputs(rows: [ReplayRow], outcome: ReplayRunner.Outcome, config: EngineConfig, label: String,
                              output: String?, report: String?, plot: String?) throws {
        if let output {
            try write(ReplayOutput.csv(rows: rows, results: outcome.results), to: output)
        }
        if let outputPaths {
            try write(ReplayOutput.pathsCSV(outcome.paths), to: outputPaths)
        }
        var reportJSON = outcome.report.fields
        reportJSON["source"] = .string(label)
        reportJSON["settings"] = settingsJSON(config)
        reportJSON["retrain_log"] = .array(outcome.retrains.map { r in
            .object(["version": .int(r.version), "at_point": .int(r.atPoint), "windows": .int(r.windows),
                     "epochs": .int(r.epochs), "accepted": .bool(r.accepted), "reason": r.reason.map { .string($0) } ?? .number(nil),
                     "train_loss": .number(r.trainLoss), "holdout_loss": .number(r.holdoutLoss),
                     "previous_holdout_loss": .number(r.currentHoldoutLoss), "seconds": .number(r.seconds)])
        })
        if writeTable {
            let id = try BacktestTable.write(url: backtestURL, source: label, settings: settingsJSON(config),
                                             report: .object(outcome.report.fields), rows: rows, results: outcome.results)
            reportJSON["run_id"] = .int(id)
            printError("forecastd: stored as forecast.backtest_runs run_id \(id)")
        }
        if let report {
            try write(JSONValue.object(reportJSON).render() + "\n", to: report)
        }
        if let plot {
            try write(renderPlot(rows: rows, results: outcome.results, paths: outcome.paths, label: label), to: plot)
        }
    }

    private func renderPlot(rows: [ReplayRow], results: [ReplayResult], paths: [HorizonAccuracy.Row], label: String) -> String {
        let name = plotSeries ?? rows.first(where: { $0.row.rejected == nil && $0.row.time != nil })?.series ?? ""
        // With paths: the fan of one issued path (at --plot-path-at, else the last), over the
        // actuals of three horizons before it and of the horizon it covers.
        let own = paths.filter { $0.series == name }
        var fan: PlotFan?
        var window: ClosedRange<Double>?
        if !own.isEmpty {
            let wanted = plotPathAt.flatMap(TimestampParser.parse) ?? .infinity
            let issued = own.map(\.issuedAt).filter { $0 <= wanted }.max() ?? own.map(\.issuedAt).min()!
            let steps = own.filter { $0.issuedAt == issued }.sorted { $0.step < $1.step }
            if let last = steps.last {
                fan = PlotFan(issuedAt: issued, times: steps.map(\.time), predicted: steps.map(\.predicted),
                              lower: steps.map(\.lower), upper: steps.map(\.upper))
                window = (issued - 3 * (last.time - issued))...last.time
            }
        }
        var times: [Double] = [], actual: [Double?] = [], predicted: [Double?] = [], lower: [Double?] = [],
            upper: [Double?] = [], flags: [Bool] = []
        for (r, res) in zip(rows, results) where r.series == name && r.time.isFinite {
            if let window, !window.contains(r.time) { continue }
            times.append(r.time)
            actual.append(r.value)
            predicted.append(fan == nil ? res.predicted : nil)
            lower.append(fan == nil ? res.lower : nil)
            upper.append(fan == nil ? res.upper : nil)
            flags.append(res.isAnomaly)
        }
        var title = rows.contains { $0.series != name } ? "\(label) — \(name)" : label
        if let fan { title += " — path issued \(TimestampParser.format(fan.issuedAt))" }
        var data = PlotData(times: times, actual: actual, predicted: fan == nil ? predicted : nil,
                            lower: fan == nil ? lower : nil, upper: fan == nil ? upper : nil, isAnomaly: flags)
        data.fan = fan
        return SVGPlot(title: title, valueLabel: valueColumn).render(data)
    }

    private func write(_ text: String, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        do {
            try Data(text.utf8).write(to: url)
        } catch {
            throw CLIError("cannot write \(path): \(error.localizedDescription)")
        }
    }

    private func printSummary(_ r: ReplayReport, label: String) {
        func f(_ v: Double?, _ digits: Int = 4) -> String { v.map { String(format: "%.\(digits)f", $0) } ?? "n/a" }
        print("\(label): \(r.points) rows, \(r.predictedPoints) predicted  MAE \(f(r.mae))  RMSE \(f(r.rmse))  MASE \(f(r.mase))  sMAPE \(f(r.smape, 2))%  coverage \(f(r.intervalCoverage, 3))  anomalies \(r.anomalies)  \(f(r.seconds, 1)) s (train \(f(r.trainSeconds, 1)) s)")
    }

    // MARK: folders

    private func replayFolder(_ dir: String, config: EngineConfig, columns: CSVColumns, cores: Int) throws {
        let files = try csvFiles(under: dir)
        guard !files.isEmpty else { throw CLIError("\(dir): no .csv files found") }
        let workers = max(1, min(jobs ?? cores, files.count))
        let summary = FolderSummary(count: files.count)
        let bar = quiet ? nil : ProgressBar(total: files.count, unit: "files")
        let me = self
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            var i = w
            while i < files.count {
                let rel = files[i]
                let path = (dir as NSString).appendingPathComponent(rel)
                do {
                    let (rows, issues) = try ReplayInput.csv(path: path, columns: columns)
                    if let warning = issues.warning(path: path) { printError("forecastd: warning: \(warning)") }
                    let outcome = try ReplayRunner(config: config).run(rows)
                    let out = (me.outputDir! as NSString).appendingPathComponent(rel)
                    try me.write(ReplayOutput.csv(rows: rows, results: outcome.results), to: out)
                    summary.set(i, .success(rel, outcome.report))
                } catch {
                    summary.set(i, .failure(rel, "\(error)"))
                }
                bar?.advance()
                i += workers
            }
        }
        bar?.finish()
        var failed = 0
        var perFile: [String: JSONValue] = [:]
        var total = 0.0
        for entry in summary.entries {
            switch entry {
            case .success(let rel, let r):
                printSummary(r, label: rel)
                perFile[rel] = .object(r.fields)
                total += r.seconds
            case .failure(let rel, let message):
                printError("forecastd: \(rel): \(message)")
                failed += 1
            case nil:
                break
            }
        }
        if let report {
            try write(JSONValue.object(["files": .object(perFile), "settings": settingsJSON(config),
                                        "seconds": .number(total), "failed": .int(failed)]).render() + "\n", to: report)
        }
        if failed > 0 { throw CLIError("\(failed) of \(files.count) files failed") }
    }

    private func csvFiles(under dir: String) throws -> [String] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
            throw CLIError("\(dir): not a folder")
        }
        guard let e = FileManager.default.enumerator(atPath: dir) else { throw CLIError("\(dir): cannot list") }
        var out: [String] = []
        while let rel = e.nextObject() as? String {
            if rel.lowercased().hasSuffix(".csv") { out.append(rel) }
        }
        return out.sorted()
    }
}

/// Results of a folder replay, filled from several threads.
private final class FolderSummary: @unchecked Sendable {
    enum Entry { case success(String, ReplayReport), failure(String, String) }
    private let lock = NSLock()
    private(set) var entries: [Entry?]
    init(count: Int) { entries = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ e: Entry) {
        lock.lock()
        entries[i] = e
        lock.unlock()
    }
}
