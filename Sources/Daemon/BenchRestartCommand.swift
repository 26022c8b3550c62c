import ArgumentParser
import Forecast
import Foundation
import Ingest

/// `forecastd bench restart`: a checkpoint and a restart of many series at steady state, through
/// PostgreSQL, with the daemon's own code (`StreamSession`, `ForecastStore`).
///
/// Streaming 100,000 series for three weeks of points takes hours; their state does not need
/// it. `--series` series are streamed to steady state (as `bench state` does) and each one's state
/// is given to `--copies` series under new names: a group snapshot as a daemon with that many
/// series at steady state writes it. What is measured is what a daemon does with it: the restart
/// (decode, restore, the rows after each stored window primed, the pending forecasts made again),
/// the memory it then holds, the checkpoint (encode, write), and reading it back for the next
/// restart. The history query itself is `bench-daemon --restart`'s part (it needs the rows in a
/// table); here the rows after each window (`--tail`, none after a clean stop) are made up.
struct BenchRestart: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart",
        abstract: "Checkpoint and restart of many series at steady state through PostgreSQL.",
        discussion: """
            Needs a database the user may create a table and the forecast schema in (a throwaway \
            one: scripts/pg-tmp run -- bash -c 'forecastd bench restart --database \
            "$FORECASTD_DATABASE_URL"'). Writes the state under the source \
            public.forecastd_bench_restart, replacing what an earlier run wrote there.
            """)

    @Option(help: "PostgreSQL URL (libpq connection string).") var database: String
    @Option(help: "Series streamed to steady state.") var series = 1000
    @Option(help: "Series each streamed one's state is given to (total: series x copies).") var copies = 100
    @Option(help: "Points per streamed series.") var points = 7600
    @Option(name: .customLong("step"), help: "Seconds between a series' points.") var stepSeconds = 300.0
    @Option(help: "Rows of each series committed after the checkpoint (a restart after a crash reads them).") var tail = 0
    @Option(help: "Hidden size of every layer of the (shared) model.") var hidden = 64
    @Option(help: "Stacked layers.") var layers = 2
    @Option(help: "Write each value with this many decimals, as a sensor or a price feed does; default: the full Double.")
    var decimals: Int?
    @Flag(inversion: .prefixedNo, help: "Then start `forecastd run` on what was written and time it to READY and its stop.") var daemon = true
    @Flag(help: "Print one JSON object as the last line.") var json = false

    func run() async throws {
        guard series >= 1, copies >= 1, points >= 1, tail >= 0 else { throw ValidationError("--series, --copies and --points must be at least 1, --tail at least 0") }
        var config = DaemonConfig.defaultEngine
        config.hiddenSizes = Array(repeating: hidden, count: layers)
        config.initialEpochs = 1
        config.maxTrainWindows = 2048
        config.epochs = 0
        let total = series * copies
        func say(_ s: String) { if !json { FileHandle.standardOutput.write(Data((s + "\n").utf8)) } }
        func mb(_ b: Int) -> Double { (Double(b) / 1e6).rounded() }
        var out: [String: Any] = ["mode": "restart", "series": total, "streamed_series": series, "points": points,
                                  "step_seconds": stepSeconds, "tail_rows": tail]

        // 1. The state of `total` series at steady state, as a checkpoint holds it.
        let t0 = now()
        var base = residentBytes()
        var stored: [UInt8]
        var ends: [Double] = []
        do {
            let (engine, _) = try steadyStateEngine(config: config, series: series, points: points, stepSeconds: stepSeconds, decimals: decimals)
            out["streamed_state_bytes_per_series"] = engine.seriesStateBytes / series
            guard let g = engine.snapshot().first, g.checkpoint != nil else { throw CLIError("no model was trained while streaming (raise --points)") }
            ends = g.series.map { $0.window?.lastTime ?? 0 }
            stored = SnapshotCodec.encode(g, seriesCount: total) { i in
                var s = g.series[i % series]
                s.key = "s\(i)"
                return s
            }
        }
        // The baseline holds neither the streamed engine (freed) nor the stored bytes (the
        // restart's own input, so part of its peak).
        base = min(base, FreedMemory.release().after)
        say("\(series) series streamed to steady state and copied to \(total): \(mb(stored.count)) MB of state, \(String(format: "%.0f", now() - t0)) s")

        // 2. A restart from it: decode, restore, the rows after each window, the pending forecasts.
        var session: StreamSession? = try StreamSession(config: config, training: .inline)
        let (restartSeconds, restartPeakBytes, first) = try measured {
            try resume(session!, states: [StoredState(label: "bench", bytes: stored)], total: total, ends: ends)
        }
        out["restart_history_rows"] = first.historyRows
        // The bytes read are freed once the engine holds their state, as in the daemon.
        stored = []
        let (_, held) = FreedMemory.release()
        out["restart_resume_seconds"] = restartSeconds
        out["restart_peak_mb"] = mb(restartPeakBytes - base)
        out["rss_mb"] = mb(held - base)
        out["rss_bytes_per_series"] = (held - base) / total
        out["state_bytes_per_series"] = session!.engine.seriesStateBytes / total
        say("restart: resumed in \(String(format: "%.1f", restartSeconds)) s, peak \(mb(restartPeakBytes - base)) MB; then \(mb(held - base)) MB resident (\((held - base) / total) B per series)")

        // 3. The checkpoint: a new version saved as the daemon saves one (in the transaction of
        // the batch with its first predictions), its state encoded and written a chunk at a time
        // on one thread. (The periodic checkpoint writes the same chunks outside a transaction,
        // beside the cycles: the stop of `forecastd run` below is one.)
        let conn = try PostgresConnection(url: database)
        _ = try Migrator(connection: conn).migrate(Migration.embedded)
        try conn.execute("CREATE TABLE IF NOT EXISTS public.forecastd_bench_restart (series text, ts timestamptz, value float8)")
        let table = SourceTable(table: try SQLName(parsing: "public.forecastd_bench_restart"), seriesColumn: "series", timeColumn: "ts", valueColumn: "value")
        let store = try ForecastStore(connection: conn, source: try table.resolve(on: conn))
        let sourceKey = store.resolved.source.table.display
        try conn.execute("DELETE FROM forecast.models WHERE source = $1", [sourceKey])
        var saves = session!.stateWriters(threads: 1).map { w in
            ForecastStore.ModelSave(modelKey: w.header.key.isEmpty ? "*" : w.header.key, version: w.header.version,
                                    checkpoint: w.header.checkpoint, state: w, keep: 3)
        }
        let (checkpointSeconds, checkpointPeak, _) = try measured { try store.commit(StreamBatch(), saving: saves) }
        saves = []
        // The periodic checkpoint of the same state: into the stored version, a chunk at a
        // time outside a transaction, on the connection the daemon writes it on beside the cycles.
        let periodicStore = try BackgroundCheckpoint.connect(url: database, source: store.resolved, shard: .whole)
        var writers = session!.stateWriters(threads: 1)
        let (periodicSeconds, periodicPeak, _) = try measured {
            for i in writers.indices {
                guard try periodicStore.saveState(&writers[i], modelKey: writers[i].header.key.isEmpty ? "*" : writers[i].header.key) != nil else {
                    throw CLIError("the version the checkpoint refreshes is not stored")
                }
            }
        }
        writers = []
        periodicStore.connection.close()
        out["periodic_checkpoint_seconds"] = periodicSeconds
        out["periodic_checkpoint_peak_mb"] = mb(periodicPeak - held)
        let sizes = try conn.execute("""
            SELECT coalesce(sum(octet_length(engine_state)), 0) + coalesce((SELECT sum(octet_length(bytes)) FROM forecast.model_state_chunks WHERE source = $1), 0),
                   coalesce(sum(engine_state_chunks), 0)
            FROM forecast.models WHERE source = $1
            """, [sourceKey]).rows.first
        let checkpointBytes = Int(sizes?[0] ?? "0") ?? 0, chunks = Int(sizes?[1] ?? "0") ?? 0
        out["checkpoint_mb"] = mb(checkpointBytes)
        out["checkpoint_chunks"] = chunks
        out["checkpoint_seconds"] = checkpointSeconds
        out["checkpoint_peak_mb"] = mb(checkpointPeak - held)
        let storedMB = mb(Int(try conn.execute("""
            SELECT sum(pg_column_size(engine_state)) + coalesce((SELECT sum(pg_column_size(bytes)) FROM forecast.model_state_chunks WHERE source = $1), 0)
            FROM forecast.models WHERE source = $1
            """, [store.resolved.source.table.display]).scalar ?? "0") ?? 0)
        out["stored_mb"] = storedMB
        say("checkpoint: \(mb(checkpointBytes)) MB encoded and written a chunk at a time in \(String(format: "%.1f", checkpointSeconds)) s (\(chunks) chunks, \(storedMB) MB stored), peak \(mb(checkpointPeak - held)) MB above the engine; the periodic checkpoint of it \(String(format: "%.1f", periodicSeconds)) s, peak \(mb(periodicPeak - held)) MB")

        // 4. The next restart reads it back (the engine above is gone by then, as in a restart).
        session = nil
        let idle = FreedMemory.release().after
        // Read as the daemon reads it: each chunk when the decoder reaches it (the time in
        // those reads is `read_seconds`, part of the resume's).
        var readSeconds = 0.0
        let (resumeSeconds, resumePeak, (report, version)) = try measured {
            let heads = try store.latestStates()
            let states = heads.compactMap(\.state).map { s in
                StoredState(label: s.label, count: s.count) {
                    let parts = s.parts()
                    return {
                        let t = now()
                        defer { readSeconds += now() - t }
                        return try parts.next()
                    }
                }
            }
            return (try resume(try StreamSession(config: config, training: .inline), states: states, total: total, ends: ends),
                    heads.first?.version ?? 0)
        }
        guard report.warnings.isEmpty, report.models.count == 1 else { throw CLIError("the stored state did not restore: \(report.warnings)") }
        out["read_seconds"] = readSeconds
        out["resume_seconds"] = resumeSeconds - readSeconds
        out["restart_seconds"] = resumeSeconds
        out["resume_peak_mb"] = mb(resumePeak - idle)
        say("restart from the database: \(String(format: "%.1f", resumeSeconds)) s (of which reading the chunks \(String(format: "%.1f", readSeconds)) s), peak \(mb(resumePeak - idle)) MB")
        if daemon {
            // The stored windows end where the restart above primed them to: `--tail` points on.
            try runDaemon(conn, store: store, ends: ends.map { $0 + Double(tail) * stepSeconds }, total: total,
                          version: version, config: config, out: &out, say: say)
        }
        try emit(out, json: json)
    }

    /// A restart from `states` as the daemon makes it: the watermarks `--tail` points after each
    /// stored window (`ends`: each streamed series' last time), the rows after the windows made
    /// up when the session asks for them (in the daemon's pages), and a pending forecast for
    /// every series, which the restart makes again.
    private func resume(_ session: StreamSession, states: [StoredState], total: Int, ends: [Double]) throws -> StreamSession.ResumeReport {
        let step = stepSeconds, tail = tail, series = series
        var watermarks: [String: Double] = [:]
        var pending: [StreamSession.PendingForecast] = []
        watermarks.reserveCapacity(total)
        pending.reserveCapacity(total)
        for i in 0..<total {
            let w = ends[i % series] + Double(tail) * step
            watermarks["s\(i)"] = w
            pending.append(.init(series: "s\(i)", forecast: Forecast(time: w + step, value: 100, lower: 90, upper: 110, modelVersion: 1)))
        }
        let limit = session.historyNeeded
        let power = decimals.map { pow(10, Double($0)) }
        return try session.resume(states: states, history: { asked in
            var rows: [RawRow] = []
            for r in asked {
                let w = watermarks[r.series]!
                let first = max(r.after ?? -.infinity, w - Double(limit) * step)
                var t = w
                var times: [Double] = []
                while t > first { times.append(t); t -= step }
                for t in times.reversed() {
                    let v = 100 + 10 * sin(2 * .pi * t / 86_400)
                    rows.append(RawRow(series: r.series, time: t, value: .number(power.map { (v * $0).rounded() / $0 } ?? v)))
                }
            }
            return rows
        }, pending: pending, watermarks: watermarks)
    }

    /// 5. The daemon itself on what was written: each series' source rows, progress and pending
    /// forecast as a daemon with these series leaves them, then `forecastd run` (this binary)
    /// timed from its start to its READY line, its memory then, and its stop (SIGTERM: the
    /// final checkpoint of every series, written by the daemon). `ends`: the streamed series'
    /// stored window ends; with `--tail` the daemon's restart reads the rows after them.
    private func runDaemon(_ conn: PostgresConnection, store: ForecastStore, ends: [Double], total: Int, version: Int,
                           config: EngineConfig, out: inout [String: Any], say: (String) -> Void) throws {
        let key = store.sourceKey, table = "public.forecastd_bench_restart"
        let marks = "{" + ends.map { "\($0)" }.joined(separator: ",") + "}"
        let params = [marks, String(series), String(total), String(stepSeconds), String(tail), key, String(version)]
        try conn.execute("DROP TRIGGER IF EXISTS forecastd_capture ON \(table)")
        try conn.execute("TRUNCATE \(table)")
        try conn.execute("DELETE FROM forecast.series_state WHERE source = $1", [key])
        try conn.execute("DELETE FROM forecast.predictions WHERE source = $1", [key])
        // Each series' last row in its window, the `--tail` rows after it, its watermark at the
        // last of them and the forecast for the step after, waiting for its actual.
        try conn.execute("""
            INSERT INTO \(table) (series, ts, value)
            SELECT 's' || i, to_timestamp(($1::float8[])[i % $2::int + 1] + j * $4::float8), 100
            FROM generate_series(0, $3::int - 1) i, generate_series(0, $5::int) j
            """, Array(params.prefix(5)))
        try conn.execute("""
            INSERT INTO forecast.series_state (source, series, watermark, observations, model_version)
            SELECT $6, 's' || i, ($1::float8[])[i % $2::int + 1] + $5::int * $4::float8, \(points), $7::bigint
            FROM generate_series(0, $3::int - 1) i
            """, params)
        try conn.execute("""
            INSERT INTO forecast.predictions (source, series, ts, predicted, lower, upper, model_version)
            SELECT $6, 's' || i, to_timestamp(($1::float8[])[i % $2::int + 1] + ($5::int + 1) * $4::float8), 100, 90, 110, $7::bigint
            FROM generate_series(0, $3::int - 1) i
            """, params)
        try conn.execute("CREATE INDEX IF NOT EXISTS forecastd_bench_restart_series_ts ON \(table) (series, ts)")
        try conn.execute("ANALYZE \(table)")
        try conn.execute("ANALYZE forecast.series_state")
        try conn.execute("ANALYZE forecast.predictions")
        try store.installTrigger()

        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("forecastd-bench-restart-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let toml = dir.appendingPathComponent("forecastd.toml"), logURL = dir.appendingPathComponent("forecastd.log")
        try """
            [database]
            url = "\(database.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))"

            [[source]]
            table = "\(table)"
            series_column = "series"
            time_column = "ts"
            value_column = "value"

            [model]
            hidden = \(hidden)
            layers = \(layers)

            """.write(to: toml, atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        process.arguments = ["run", "--config", toml.path]
        var env = ProcessInfo.processInfo.environment
        env["FORECASTD_DATABASE_URL"] = nil
        process.environment = env
        let log = try FileHandle(forWritingTo: logURL)
        process.standardOutput = log
        process.standardError = log
        let t0 = now()
        try process.run()
        defer { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
        func logText() -> String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }
        func waitFor(_ text: String, seconds: Double) throws {
            while !logText().contains(text) {
                guard process.isRunning else { throw CLIError("forecastd run exited (status \(process.terminationStatus)) before \"\(text)\":\n\(logText().suffix(2000))") }
                guard now() - t0 < seconds else { throw CLIError("no \"\(text)\" within \(Int(seconds)) s:\n\(logText().suffix(2000))") }
                usleep(50_000)
            }
        }
        try waitFor("ready: ", seconds: 900)
        let ready = now() - t0
        let status = (try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8)) ?? ""
        func statusKB(_ field: String) -> Int {
            status.split(separator: "\n").first { $0.hasPrefix(field) }
                .flatMap { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { Int($0) } } ?? 0
        }
        // The peak is the restart's: nothing before READY holds more.
        let rssKB = statusKB("VmRSS:"), peakKB = statusKB("VmHWM:")
        let loaded = logText().split(separator: "\n").first { $0.contains("loaded ") && $0.contains("history rows") }.map(String.init) ?? ""
        out["daemon_ready_seconds"] = ready
        out["daemon_rss_mb"] = (Double(rssKB) / 1000).rounded()
        out["daemon_peak_mb"] = (Double(peakKB) / 1000).rounded()
        out["daemon_loaded"] = loaded
        say("forecastd run: READY in \(String(format: "%.1f", ready)) s, \((Double(rssKB) / 1000).rounded()) MB resident (peak \((Double(peakKB) / 1000).rounded()) MB); \(loaded.split(separator: "]").last.map(String.init) ?? loaded)")
        let t1 = now()
        kill(process.processIdentifier, SIGTERM)
        // The daemon's peak through its stop, the final checkpoint's included: read until it exits.
        var stopPeakKB = peakKB
        while process.isRunning {
            if let text = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
               let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
               let kb = line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap({ Int($0) }) {
                stopPeakKB = max(stopPeakKB, kb)
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        let stopped = now() - t1
        out["daemon_stop_peak_mb"] = (Double(stopPeakKB) / 1000).rounded()
        let stopLine = logText().split(separator: "\n").first { $0.contains("stopped: checkpoint saved") }.map(String.init) ?? ""
        out["daemon_stop_seconds"] = stopped
        out["daemon_stop"] = stopLine
        say("forecastd run: stopped in \(String(format: "%.1f", stopped)) s (status \(process.terminationStatus)); \(stopLine.split(separator: "]").last.map(String.init) ?? stopLine)")
    }

    /// Seconds, the resident high-water mark while `body` ran (reset first: Linux's clear_refs 5) and its result.
    private func measured<T>(_ body: () throws -> T) throws -> (Double, Int, T) {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        let t = now()
        let r = try body()
        return (now() - t, residentBytes(field: "VmHWM:"), r)
    }
}
