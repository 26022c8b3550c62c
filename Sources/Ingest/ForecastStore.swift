import Forecast
import Foundation

/// forecastd's reads and writes of its own schema for one source. All the writes of a cycle go
/// through `commit(_:)`, one transaction, which is what makes them exactly-once: after a crash
/// either the predictions and the advanced watermark are both there, or neither is.
public final class ForecastStore {
    public let connection: PostgresConnection
    public let sourceKey: String
    public let resolved: ResolvedSource
    /// The part of the source this store reads: the series whose `forecast.shard_of` is its index.
    public let shard: Shard

    /// One of `count` parts of a source, by a hash of the series id (`forecast.shard_of`).
    public struct Shard: Sendable, Hashable, CustomStringConvertible {
        public var index: Int
        public var count: Int
        public init(index: Int, count: Int) {
            self.index = index
            self.count = count
        }
        public static let whole = Shard(index: 0, count: 1)
        /// "2/4" for the second of four.
        public var description: String { "\(index + 1)/\(count)" }
        /// The name of the shard's shared model in forecast.models: "*" for a whole source.
        public var sharedModelKey: String { count == 1 ? "*" : "*" + description }
    }

    public init(connection: PostgresConnection, source: ResolvedSource, shard: Shard = .whole) throws {
        self.connection = connection
        self.resolved = source
        self.shard = shard
        sourceKey = source.source.table.display
        // extract(epoch ...) of a timestamp without time zone and comparisons with to_timestamp()
        // agree only when the session zone is UTC.
        try connection.execute("SET TimeZone = 'UTC'")
        // Series ids come back and go out as UTF-8 whatever the database's encoding.
        try connection.execute("SET client_encoding = 'UTF8'")
    }

    // MARK: state

    public struct SeriesProgress: Sendable, Equatable {
        public var watermark: Double?
        public var observations: Int

        public init(watermark: Double?, observations: Int) {
            self.watermark = watermark
            self.observations = observations
        }
    }

    /// `AND <column> is in this shard`, or nothing for a whole source.
    func inShard(_ column: String) -> String {
        shard.count == 1 ? "" : " AND forecast.shard_of(\(column), \(shard.count)) = \(shard.index)"
    }

    /// Model keys of this shard: its shared model and the models of its series.
    var modelsInShard: String {
        shard.count == 1 ? "" : " AND (model_key = \(Self.literal(shard.sharedModelKey)) OR (model_key !~ '^[*]([0-9]+/[0-9]+)?$'\(inShard("model_key"))))"
    }

    public func progress() throws -> [String: SeriesProgress] {
        let r = try connection.execute(
            "SELECT series, watermark, observations FROM forecast.series_state WHERE source = $1" + inShard("series"), [sourceKey])
        var out: [String: SeriesProgress] = [:]
        for row in r.rows {
            out[row[0]!] = SeriesProgress(watermark: row[1].flatMap(Double.init), observations: Int(row[2] ?? "0") ?? 0)
        }
        return out
    }

    /// A row taken from the ingest queue, with its id (deleted when the batch commits).
    public struct QueuedRow: Sendable {
        public var id: Int64
        public var row: RawRow
    }

    /// Up to `limit` queued rows of this source, oldest first, that no running transaction can
    /// still precede: rows whose transaction is below the oldest one still running (everything
    /// older has committed or aborted), or that have waited `commitWait` seconds (so one
    /// transaction left open for hours stalls the source for that long at most; rows it then
    /// commits behind its series count as late). Cost: the new rows, through ingest_queue_next.
    /// `skipping`: queue rows of a batch whose commit is still in flight (deleted by it).
    /// `committer`: the backend of that commit. Its transaction is left out of the horizon: it
    /// writes no source rows, and counting it would hold back every row queued after it began
    /// until it ends, so rows arriving during a commit would wait for it to be read.
    public func nextRows(limit: Int, commitWait: Double, skipping: [Int64] = [], committer: Int? = nil) throws -> [QueuedRow] {
        let skip = skipping.isEmpty ? "" : "\n  AND id <> ALL($4::bigint[])"
        var params: [String?] = [sourceKey, String(limit), String(commitWait)]
        if !skipping.isEmpty { params.append("{" + skipping.map(String.init).joined(separator: ",") + "}") }
        var horizon = "pg_snapshot_xmin(pg_current_snapshot())"
        if let committer {
            params.append(String(committer))
            // A transaction id the committer gets after pg_stat_activity is read stays in: that
            // only waits longer, never reads a row that a running transaction could precede.
            horizon = """
                COALESCE((SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) x
                          WHERE x::xid IS DISTINCT FROM (SELECT backend_xid FROM pg_stat_activity WHERE pid = $\(params.count)::int)),
                         pg_snapshot_xmax(pg_current_snapshot()))
                """
        }
        let r = try connection.execute("""
            SELECT id, series, t, v FROM forecast.ingest_queue
            WHERE source = $1
              AND (xid < \(horizon) OR queued_at < now() - make_interval(secs => $3::float8))\(inShard("series"))\(skip)
            ORDER BY t, series, id
            LIMIT $2::bigint
            """, params)
        return r.rows.map { QueuedRow(id: Int64($0[0]!) ?? 0, row: RawRow(sourceRow: Array($0[1...]))) }
    }

    /// The rows a restarted daemon feeds back into its windows, for the series asked: of each,
    /// the last `perSeries` rows at or before its watermark and after the request's `after`
    /// (the end of the window its checkpoint restored; nil: no lower bound), oldest first. With
    /// an index on the source's (series, time) each series is one short walk of that index, so
    /// a restart reads what its checkpoint lacks however long the table is. Without one, the
    /// table is read once and ranked, which is the best a table without an index allows: ask
    /// for every series at once then (`hasSeriesTimeIndex`).
    public func history(perSeries: Int, for requests: [StreamSession.HistoryRequest]) throws -> [RawRow] {
        guard !requests.isEmpty else { return [] }
        let keys = PostgresConnection.textArray(requests.map(\.series))
        // No lower bound is -Infinity (not NULL): the bound stays a condition the index walk stops at.
        let after = "{" + requests.map { $0.after.map { "\($0)" } ?? "-Infinity" }.joined(separator: ",") + "}"
        var page: [RawRow] = []
        page.reserveCapacity(requests.count * min(perSeries, 64))
        // Read as libpq holds them, in the order the plan gives (with the index each series'
        // rows together, newest first) rather than sorted by the server: a restart without
        // windows reads hundreds of thousands of rows a page, and their sort and a string per
        // field were most of it.
        var series = ""
        try connection.forEachRow(historyQuery(usingIndex: try hasSeriesTimeIndex()),
                                  [sourceKey, String(perSeries), keys, after]) { row in
            if !row.equals(0, series) { series = row.string(0) ?? "" }
            page.append(RawRow(series: series, time: row.double(1), valueText: row.string(2)))
        }
        Self.putInTimeOrder(&page)
        // The flagged points of these series, from the partial index of anomalies, instead of
        // a lookup in forecast.predictions for every row. Matched to the microsecond, as
        // to_timestamp stores them.
        let flagged = Set(try connection.execute("""
            SELECT series, round(extract(epoch FROM ts) * 1e6)::bigint FROM forecast.predictions
            WHERE source = $1 AND series = ANY($2::text[]) AND is_anomaly
            """, [sourceKey, keys]).rows.map { "\($0[0] ?? "")|\($0[1] ?? "")" })
        if !flagged.isEmpty {
            for i in page.indices {
                if let t = page[i].time, flagged.contains("\(page[i].series)|\(Int64((t * 1e6).rounded()))") { page[i].flagged = true }
            }
        }
        return page
    }

    /// Puts each series' rows in time order, oldest first, as the engine takes them. The rows of
    /// a series come together from the index walk, newest first: each run is reversed (or
    /// sorted, if it is in no order); should a series' rows not all be in one run, the page is
    /// sorted by series and time.
    static func putInTimeOrder(_ rows: inout [RawRow]) {
        var seen = Set<String>()
        var start = 0
        while start < rows.count {
            var end = start + 1
            while end < rows.count && rows[end].series == rows[start].series { end += 1 }
            guard seen.insert(rows[start].series).inserted else {
                rows.sort { ($0.series, $0.time ?? -.infinity) < ($1.series, $1.time ?? -.infinity) }
                return
            }
            let times = rows[start..<end].map { $0.time ?? -.infinity }
            if zip(times, times.dropFirst()).allSatisfy({ $0 >= $1 }) {
                rows[start..<end].reverse()
            } else if !zip(times, times.dropFirst()).allSatisfy({ $0 <= $1 }) {
                rows[start..<end].sort { ($0.time ?? -.infinity) < ($1.time ?? -.infinity) }
            }
            start = end
        }
    }

    /// The history query: $1 the source key, $2 the rows per series, $3 the series (text[]) and
    /// $4 (float8[], aligned with $3) the time each series' rows must come after (-Infinity: any).
    func historyQuery(usingIndex: Bool) -> String {
        let src = resolved
        let asked = "unnest($3::text[], $4::float8[]) AS k(series, after)"
        if usingIndex, let upper = src.rawTimeAtMost("st.watermark"), let lower = src.rawTimeAfter("k.after") {
            return """
                SELECT h.series, h.t, h.v FROM \(asked)
                JOIN forecast.series_state st ON st.source = $1 AND st.series = k.series
                CROSS JOIN LATERAL (
                    SELECT \(src.seriesExpression) AS series, \(src.timeExpression) AS t, \(src.valueExpression) AS v
                    FROM \(src.source.table.quoted)
                    WHERE \(src.seriesExpression) = st.series AND \(upper) AND \(src.timeExpression) <= st.watermark
                      AND \(lower) AND \(src.timeExpression) > k.after
                    ORDER BY \(src.rawTimeExpression) DESC
                    LIMIT $2::bigint) h
                WHERE st.watermark IS NOT NULL\(inShard("st.series"))
                """
        }
        return """
            SELECT r.series, r.t, r.v FROM (
                SELECT src.series, src.t, src.v,
                       row_number() OVER (PARTITION BY src.series ORDER BY src.t DESC) AS n
                FROM (SELECT \(src.seriesExpression) AS series, \(src.timeExpression) AS t,
                             \(src.valueExpression) AS v
                      FROM \(src.source.table.quoted)) src
                JOIN \(asked) ON k.series = src.series
                JOIN forecast.series_state st ON st.source = $1 AND st.series = src.series
                WHERE src.t <= st.watermark AND src.t > k.after\(inShard("st.series"))
            ) r
            WHERE r.n <= $2::bigint
            """
    }

    /// Whether the source table has a valid btree index whose first columns are the series
    /// column (text or varchar, so that comparing its text is comparing the column) and the
    /// time column (a timestamp or date), or the time column alone for a table of one series.
    public func hasSeriesTimeIndex() throws -> Bool {
        let s = resolved.source
        guard resolved.rawTimeAtMost("x") != nil else { return false }
        let timeKey = s.seriesColumn == nil ? "i.indkey[0]" : "i.indkey[1]"
        let seriesCondition = s.seriesColumn == nil ? "" : """
            AND i.indkey[0] = (SELECT attnum FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2
                               AND atttypid IN ('text'::regtype, 'varchar'::regtype))
            """
        return try connection.execute("""
            SELECT EXISTS (
                SELECT 1 FROM pg_index i
                JOIN pg_class c ON c.oid = i.indexrelid
                JOIN pg_am am ON am.oid = c.relam
                WHERE i.indrelid = $1::regclass AND i.indisvalid AND am.amname = 'btree'
                  \(seriesCondition)
                  AND \(timeKey) = (SELECT attnum FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $3))
            """, [s.table.quoted, s.seriesColumn ?? "", s.timeColumn]).scalar == "t"
    }

    /// The published forecasts still waiting for their actual.
    public func pending() throws -> [StreamSession.PendingForecast] {
        let r = try connection.execute("""
            SELECT series, extract(epoch FROM ts)::float8, predicted, lower, upper, model_version
            FROM forecast.predictions WHERE source = $1 AND actual IS NULL\(inShard("series")) ORDER BY series
            """, [sourceKey])
        return r.rows.map {
            let predicted = Double($0[2]!) ?? .nan
            return StreamSession.PendingForecast(series: $0[0]!, forecast: Forecast(
                time: Double($0[1]!) ?? 0, value: predicted, lower: $0[3].flatMap(Double.init) ?? predicted,
                upper: $0[4].flatMap(Double.init) ?? predicted, modelVersion: $0[5].flatMap { Int($0) } ?? 0))
        }
    }

    // MARK: the cycle's transaction

    /// Writes what a batch of the stream produced in one transaction: each touched series'
    /// pending row is replaced by its completed rows and its new forecast, and the watermarks
    /// and bad-row counts advance. Late rows counted by the trigger are collected in the same
    /// transaction. Returns late-row counts per series. Where the batch's rows map to SQL is
    /// here and nowhere else.
    /// `consumed` are the queue rows the batch was made from: deleted in the same transaction,
    /// which is what makes every row observed exactly once. If they are gone already (a retry
    /// after the COMMIT's acknowledgement was lost), the batch was stored and nothing is written.
    /// `fence`: the lease this commit is made under, when it runs on a connection other than the
    /// one holding the shard's lock (see `Fence`).
    /// `saving`: model versions stored in the same transaction, before the batch (a checkpoint
    /// that the batch's rows must not be published without, and that must not outlive them).
    public func commit(_ batch: StreamBatch, consumed: [Int64] = [], fence: Fence? = nil, saving models: [ModelSave] = []) throws {
        try ensurePartitions("predictions", times: batch.completed.map(\.time) + batch.forecasts.map(\.forecast.time))
        if !batch.paths.isEmpty { try ensurePartitions("paths", times: batch.paths.compactMap(\.forecast.issuedAt)) }
        try connection.transaction {
            if let fence { try check(fence) }
            for m in models { try write(m) }
            if !consumed.isEmpty {
                let ids = "{" + consumed.map(String.init).joined(separator: ",") + "}"
                let deleted = try connection.execute(
                    "WITH d AS (DELETE FROM forecast.ingest_queue WHERE id = ANY($1::bigint[]) RETURNING 1) SELECT count(*) FROM d",
                    [ids]).scalar.flatMap { Int($0) } ?? 0
                if deleted == 0 { return }
            }
            try connection.execute("""
                CREATE TEMP TABLE IF NOT EXISTS forecastd_stage (
                    series text, t float8, predicted float8, lower float8, upper float8, model_version bigint,
                    actual float8, previous_actual float8, anomaly_score float8, is_anomaly boolean, reason text) ON COMMIT DELETE ROWS
                """)
            func n(_ v: Double?) -> String? { v.map { String($0) } }
            var rows: [String] = []
            rows.reserveCapacity(batch.completed.count + batch.forecasts.count)
            for c in batch.completed {
                let f = c.forecast
                rows.append(CopyText.encode([c.series, String(c.time), String(f.value), String(f.lower), String(f.upper),
                                             String(f.modelVersion), String(c.actual), n(c.previousActual),
                                             String(c.anomalyScore), c.isAnomaly ? "t" : "f", c.reason?.rawValue]))
            }
            for p in batch.forecasts {
                let f = p.forecast
                rows.append(CopyText.encode([p.series, String(f.time), String(f.value), String(f.lower), String(f.upper),
                                             String(f.modelVersion), nil, nil, nil, nil, nil]))
            }
            if !rows.isEmpty {
                try connection.copyIn("COPY forecastd_stage FROM STDIN", rows: rows)
                try connection.execute("""
                    DELETE FROM forecast.predictions p
                    USING (SELECT DISTINCT series FROM forecastd_stage) s
                    WHERE p.source = $1 AND p.series = s.series AND p.actual IS NULL
                    """, [sourceKey])
                // ON CONFLICT DO NOTHING: a row the daemon already wrote is never written twice.
                try connection.execute("""
                    INSERT INTO forecast.predictions
                        (source, series, ts, predicted, lower, upper, model_version, actual, previous_actual,
                         anomaly_score, is_anomaly, reason, observed_at)
                    SELECT $1, series, to_timestamp(t), predicted, lower, upper, model_version, actual, previous_actual,
                           anomaly_score, is_anomaly, reason, CASE WHEN actual IS NULL THEN NULL ELSE now() END
                    FROM forecastd_stage
                    ON CONFLICT (source, series, ts) DO NOTHING
                    """, [sourceKey])
            }
            if !batch.paths.isEmpty { try writePaths(batch.paths) }
            if !batch.sourceBadRows.isEmpty { try addSourceBadRows(batch.sourceBadRows) }
            let updates = batch.series
            if !updates.isEmpty {
                let stateRows = updates.map { u in
                    CopyText.encode([u.series, n(u.watermark), String(u.rows - u.badRows.values.reduce(0, +)), n(u.lastValue), n(u.lastTime),
                                     u.modelVersion.map { String($0) }, Self.countsJSON(u.badRows), shard.sharedModelKey])
                }
                try connection.execute("""
                    CREATE TEMP TABLE IF NOT EXISTS forecastd_state_stage (
                        series text, watermark float8, observations bigint, last_value float8, last_time float8,
                        model_version bigint, bad jsonb, model_key text) ON COMMIT DELETE ROWS
                    """)
                try connection.copyIn("COPY forecastd_state_stage FROM STDIN", rows: stateRows)
                try connection.execute("""
                    INSERT INTO forecast.series_state AS st
                        (source, series, watermark, observations, last_value, last_observed_at, model_version, bad_rows, model_key, updated_at)
                    SELECT $1, series, watermark, observations, last_value, to_timestamp(last_time), model_version, bad, model_key, now()
                    FROM forecastd_state_stage
                    ON CONFLICT (source, series) DO UPDATE SET
                        watermark = GREATEST(st.watermark, EXCLUDED.watermark),
                        -- Counted once: a retried batch stops at the queue delete above.
                        observations = st.observations + EXCLUDED.observations,
                        last_value = COALESCE(EXCLUDED.last_value, st.last_value),
                        last_observed_at = COALESCE(EXCLUDED.last_observed_at, st.last_observed_at),
                        model_version = COALESCE(EXCLUDED.model_version, st.model_version),
                        bad_rows = forecast.add_counts(st.bad_rows, EXCLUDED.bad_rows),
                        model_key = EXCLUDED.model_key,
                        updated_at = now()
                    """, [sourceKey])
            }
        }
    }

    /// Issued paths, one row each (arrays by step). ON CONFLICT DO NOTHING, like predictions.
    private func writePaths(_ paths: [StreamBatch.NewForecast]) throws {
        func array(_ xs: [PathPoint], _ value: (PathPoint) -> Double) -> String {
            var out = "{"
            out.reserveCapacity(xs.count * 20 + 2)
            for (i, x) in xs.enumerated() {
                if i > 0 { out += "," }
                out += Float(value(x)).description
            }
            return out + "}"
        }
        var rows: [String] = []
        rows.reserveCapacity(paths.count)
        for p in paths {
            let f = p.forecast
            guard let issued = f.issuedAt, let first = f.path.first, first.time > issued else { continue }
            rows.append(CopyText.encode([p.series, String(issued), String(first.time - issued), String(f.modelVersion),
                                         array(f.path, \.value), array(f.path, \.lower), array(f.path, \.upper)]))
        }
        guard !rows.isEmpty else { return }
        try connection.execute("""
            CREATE TEMP TABLE IF NOT EXISTS forecastd_path_stage (
                series text, issued float8, step_seconds float8, model_version bigint,
                predicted float4[], lower float4[], upper float4[]) ON COMMIT DELETE ROWS
            """)
        try connection.copyIn("COPY forecastd_path_stage FROM STDIN", rows: rows)
        try connection.execute("""
            INSERT INTO forecast.paths (source, series, issued_at, step_seconds, model_version, predicted, lower, upper)
            SELECT $1, series, to_timestamp(issued), step_seconds, model_version, predicted, lower, upper
            FROM forecastd_path_stage
            ON CONFLICT (source, series, issued_at) DO NOTHING
            """, [sourceKey])
    }

    // MARK: partitions and retention

    /// The UTC days (days since 1970-01-01) known to have a partition, per partitioned table.
    private var partitionDays: [String: Set<Int>] = [:]

    /// Makes sure `table` ("predictions" or "paths") has a partition for every day of `times`
    /// (epoch seconds) before a cycle writes them: each missing day is one short transaction of
    /// its own, so the cycle's transaction never holds the table's DDL lock.
    func ensurePartitions(_ table: String, times: [Double]) throws {
        var days = Set<Int>()
        for t in times where t.isFinite { days.insert(Int((t / 86_400).rounded(.down))) }
        if partitionDays[table] == nil {
            let r = try connection.execute("""
                SELECT to_date(right(c.relname, 8), 'YYYYMMDD') - date '1970-01-01'
                FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = $1::regclass AND c.relname ~ '_p[0-9]{8}$'
                """, ["forecast." + table])
            partitionDays[table] = Set(r.rows.compactMap { $0[0].flatMap { Int($0) } })
        }
        for day in days.subtracting(partitionDays[table]!).sorted() {
            try connection.execute("SELECT forecast.ensure_day_partition($1, date '1970-01-01' + $2::int)", [table, String(day)])
            partitionDays[table]!.insert(day)
        }
    }

    public struct RetentionReport: Sendable, Equatable {
        public var predictionPartitions = 0
        public var pathPartitions = 0
    }

    /// Drops the day partitions of completed predictions older than `predictionDays` and of
    /// paths older than `pathDays` (0 keeps everything), counted back from the newest
    /// observation of any series: data time, so replaying last year's data keeps it while it
    /// is the newest there is. Pending forecasts are never dropped. Whole partitions go, in one
    /// short transaction each table; the default partition's stray rows in bounded batches.
    @discardableResult
    public func applyRetention(predictionDays: Double, pathDays: Double) throws -> RetentionReport {
        guard let newest = try connection.execute(
            "SELECT extract(epoch FROM max(last_observed_at))::float8 FROM forecast.series_state").scalar.flatMap(Double.init)
        else { return RetentionReport() }
        var report = RetentionReport()
        for (table, days) in [("predictions", predictionDays), ("paths", pathDays)] where days > 0 {
            let n = try connection.execute("SELECT forecast.drop_day_partitions($1, to_timestamp($2))",
                                           [table, String(newest - days * 86_400)]).scalar.flatMap { Int($0) } ?? 0
            if n > 0 { partitionDays[table] = nil }
            if table == "predictions" { report.predictionPartitions = n } else { report.pathPartitions = n }
        }
        return report
    }

    /// Counts rows that belong to no series (or to one that cannot be stored) against the source.
    public func addSourceBadRows(_ counts: [RowIssue: Int]) throws {
        try connection.execute("""
            INSERT INTO forecast.source_state AS s (source, bad_rows) VALUES ($1, $2::jsonb)
            ON CONFLICT (source) DO UPDATE SET bad_rows = forecast.add_counts(s.bad_rows, EXCLUDED.bad_rows), updated_at = now()
            """, [sourceKey, Self.countsJSON(counts)])
    }

    /// Records (or clears, with nil) what is wrong with the source, for forecast.sources.
    public static func setProblem(_ problem: String?, source: String, on connection: PostgresConnection) throws {
        try connection.execute("""
            INSERT INTO forecast.source_state AS s (source, problem, problem_since) VALUES ($1, $2::text, CASE WHEN $2::text IS NULL THEN NULL ELSE now() END)
            ON CONFLICT (source) DO UPDATE SET problem = EXCLUDED.problem,
                problem_since = CASE WHEN EXCLUDED.problem IS NULL THEN NULL
                                     WHEN s.problem IS NOT DISTINCT FROM EXCLUDED.problem THEN s.problem_since ELSE now() END,
                updated_at = now()
            """, [source, problem])
    }

    /// `{"late": 2, "null_value": 1}`, keys sorted, in the shared reason vocabulary.
    static func countsJSON(_ counts: [RowIssue: Int]) -> String {
        "{" + counts.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\"\($0.key.rawValue)\": \($0.value)" }
            .joined(separator: ", ") + "}"
    }

    // MARK: models

    public struct StoredModel: Sendable {
        public var modelKey: String
        public var version: Int
        public var checkpoint: [UInt8]?
        public var engineState: [UInt8]?
    }

    /// The largest piece of engine state stored as one value: far below PostgreSQL's 1 GB limit
    /// for a bytea, and small enough that no single statement carries much.
    public var stateChunkBytes = 8 << 20

    /// One model version to store: its weights, its engine state and what its training
    /// measured (see `saveModel`).
    public struct ModelSave: Sendable {
        public var modelKey: String
        public var version: Int
        public var trainedAtPoint: Int?
        public var windows: Int?
        public var trainLoss: Double?
        public var holdoutLoss: Double?
        public var previousHoldoutLoss: Double?
        public var checkpoint: [UInt8]?
        public var engineState: [UInt8]
        /// The engine state as a writer makes it, a part at a time, instead of `engineState`:
        /// written as it is made, so that a save never holds the whole state. A save committed
        /// again after a failure writes it again from its first part (a copy is drained).
        public var state: StateWriter?
        /// Versions of the model kept: older ones are deleted.
        public var keep: Int
        public var restoredFrom: Int?

        public init(modelKey: String, version: Int, trainedAtPoint: Int? = nil, windows: Int? = nil, trainLoss: Double? = nil,
                    holdoutLoss: Double? = nil, previousHoldoutLoss: Double? = nil, checkpoint: [UInt8]?,
                    engineState: [UInt8] = [], state: StateWriter? = nil, keep: Int, restoredFrom: Int? = nil) {
            self.modelKey = modelKey
            self.version = version
            self.trainedAtPoint = trainedAtPoint
            self.windows = windows
            self.trainLoss = trainLoss
            self.holdoutLoss = holdoutLoss
            self.previousHoldoutLoss = previousHoldoutLoss
            self.checkpoint = checkpoint
            self.engineState = engineState
            self.state = state
            self.keep = keep
            self.restoredFrom = restoredFrom
        }
    }

    /// Saves (or refreshes) a model version and keeps only the newest `keep` versions of it.
    /// The engine state goes in chunks of `stateChunkBytes`: the first in forecast.models, the
    /// rest in forecast.model_state_chunks, all in one transaction. `fence`: as for `commit`.
    public func saveModel(modelKey: String, version: Int, trainedAtPoint: Int?, windows: Int?, trainLoss: Double?,
                          holdoutLoss: Double?, previousHoldoutLoss: Double?, checkpoint: [UInt8]?,
                          engineState: [UInt8], keep: Int, restoredFrom: Int? = nil) throws {
        try save(ModelSave(modelKey: modelKey, version: version, trainedAtPoint: trainedAtPoint, windows: windows,
                           trainLoss: trainLoss, holdoutLoss: holdoutLoss, previousHoldoutLoss: previousHoldoutLoss,
                           checkpoint: checkpoint, engineState: engineState, keep: keep, restoredFrom: restoredFrom))
    }

    /// Returns the bytes of engine state written and the chunks they went in.
    @discardableResult
    public func save(_ model: ModelSave, fence: Fence? = nil) throws -> (bytes: Int, chunks: Int) {
        try connection.transaction {
            if let fence { try check(fence) }
            return try write(model)
        }
    }

    /// The statements of a save, inside the caller's transaction: the version's row first (its
    /// chunks refer to it; a row that exists keeps its state until the last chunk is in), then
    /// the state's chunks under a new generation, then the row points at them. A state made a
    /// part at a time (`ModelSave.state`) is written as it is made.
    @discardableResult
    private func write(_ m: ModelSave) throws -> (bytes: Int, chunks: Int) {
        let key = stateKey(m.modelKey, m.version)
        try connection.execute("""
            INSERT INTO forecast.models AS m (source, model_key, version, trained_at_point, windows, train_loss,
                holdout_loss, previous_holdout_loss, checkpoint, restored_from)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::bytea, $10)
            ON CONFLICT (source, model_key, version) DO UPDATE SET checkpoint = COALESCE(EXCLUDED.checkpoint, m.checkpoint)
            """, parameters: key + [.text(m.trainedAtPoint.map { String($0) }),
                                    .text(m.windows.map { String($0) }), .text(m.trainLoss.map { String($0) }),
                                    .text(m.holdoutLoss.map { String($0) }), .text(m.previousHoldoutLoss.map { String($0) }),
                                    .bytes(m.checkpoint?[...]), .text(m.restoredFrom.map { String($0) })])
        let generation = try beginState(key, current: try stateGeneration(key) ?? 0)
        let written: (head: [UInt8], bytes: Int, chunks: Int)
        if var writer = m.state {
            written = try writeChunks(key, generation: generation) { writer.nextPart(limit: stateChunkBytes) }
        } else {
            var parts = chunks(m.engineState).makeIterator()
            written = try writeChunks(key, generation: generation) { parts.next().map(Array.init) }
        }
        _ = try pointAt(key, written, generation: generation, checkpoint: m.checkpoint)
        try dropChunks(key, keeping: generation)
        try prune(m.modelKey, keep: m.keep)
        return (written.bytes, written.chunks)
    }

    /// Writes the engine state of a stored model version as `writer` makes it, a part at a
    /// time: each chunk goes in as soon as it is made, under a new generation, and the version's
    /// row points at that generation (with the first part, the header) only once the last is
    /// written, in a transaction checked against `fence`. The store so holds one chunk, not the
    /// whole state; until the end a restart reads the version's previous state, and the chunks
    /// of an attempt that never ended are deleted at the start of the next. The version must be
    /// stored already (a new version is saved with the batch of its first predictions).
    /// Returns the bytes and chunks written, nil when the version is not stored.
    @discardableResult
    public func saveState(_ writer: inout StateWriter, modelKey: String, fence: Fence? = nil) throws -> (bytes: Int, chunks: Int)? {
        precondition(writer.partsGiven == 0, "a state is written from its first part")
        let key = stateKey(modelKey, writer.header.version)
        guard let current = try stateGeneration(key) else { return nil }
        let generation = try beginState(key, current: current)
        let written = try writeChunks(key, generation: generation) { writer.nextPart(limit: stateChunkBytes) }
        // The lease is checked (and its row locked) after the update, which may wait for a lock
        // on the version's row: the lease's heartbeat must not wait behind a checkpoint.
        let stored = try connection.transaction { () -> Bool in
            let updated = try pointAt(key, written, generation: generation, checkpoint: writer.header.checkpoint)
            if let fence { try check(fence) }
            return updated
        }
        // The chunks no longer pointed at: after the commit, so that the lease is not held for it
        // (at 100,000 series, 3.5 GB of chunks), and harmless if it never happens (the next
        // checkpoint deletes them first).
        try dropChunks(key, keeping: stored ? generation : current)
        return stored ? (written.bytes, written.chunks) : nil
    }

    private func stateKey(_ modelKey: String, _ version: Int) -> [PostgresConnection.Parameter] {
        [.text(sourceKey), .text(modelKey), .text(String(version))]
    }

    private func stateGeneration(_ key: [PostgresConnection.Parameter]) throws -> Int64? {
        try connection.execute("""
            SELECT state_generation FROM forecast.models WHERE source = $1 AND model_key = $2 AND version = $3
            """, parameters: key).scalar.flatMap { Int64($0) }
    }

    /// Deletes what an attempt that never finished left and picks this attempt's generation:
    /// unique to it (microseconds), so that the chunks of a writer that lost the source
    /// meanwhile (another daemon took it over) are never taken for this one's.
    private func beginState(_ key: [PostgresConnection.Parameter], current: Int64) throws -> Int64 {
        try dropChunks(key, keeping: current)
        return max(current + 1, Int64(Date().timeIntervalSince1970 * 1_000_000))
    }

    private func dropChunks(_ key: [PostgresConnection.Parameter], keeping generation: Int64) throws {
        try connection.execute("""
            DELETE FROM forecast.model_state_chunks WHERE source = $1 AND model_key = $2 AND version = $3 AND generation <> $4
            """, parameters: key + [.text(String(generation))])
    }

    /// Every part `next` gives but the first as a chunk of `generation`; the first is returned
    /// (the head, which the version's row holds).
    private func writeChunks(_ key: [PostgresConnection.Parameter], generation: Int64, _ next: () -> [UInt8]?) throws
        -> (head: [UInt8], bytes: Int, chunks: Int) {
        var head: [UInt8]?
        var count = 0, bytes = 0
        while let part = next() {
            bytes += part.count
            if head == nil { head = part } else {
                try connection.execute("""
                    INSERT INTO forecast.model_state_chunks (source, model_key, version, generation, chunk, bytes)
                    VALUES ($1, $2, $3, $4, $5, $6::bytea)
                    """, parameters: key + [.text(String(generation)), .text(String(count)), .bytes(part[...])])
            }
            count += 1
        }
        return (head ?? [], bytes, count)
    }

    /// Points the version at a generation's chunks; false when the version is not stored.
    private func pointAt(_ key: [PostgresConnection.Parameter], _ written: (head: [UInt8], bytes: Int, chunks: Int),
                         generation: Int64, checkpoint: [UInt8]?) throws -> Bool {
        try connection.execute("""
            UPDATE forecast.models SET engine_state = $4::bytea, engine_state_chunks = $5, state_generation = $6,
                checkpoint = COALESCE($7::bytea, checkpoint)
            WHERE source = $1 AND model_key = $2 AND version = $3
            RETURNING 1
            """, parameters: key + [.bytes(written.head[...]), .text(String(written.chunks)), .text(String(generation)),
                                    .bytes(checkpoint?[...])]).rows.count == 1
    }

    private func prune(_ modelKey: String, keep: Int) throws {
        try connection.execute("""
            DELETE FROM forecast.models WHERE source = $1 AND model_key = $2 AND version NOT IN (
                SELECT version FROM forecast.models WHERE source = $1 AND model_key = $2
                ORDER BY version DESC LIMIT $3::bigint)
            """, [sourceKey, modelKey, String(keep)])
    }

    func chunks(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        guard bytes.count > stateChunkBytes else { return [bytes[...]] }
        return stride(from: 0, to: bytes.count, by: stateChunkBytes).map { bytes[$0..<min($0 + stateChunkBytes, bytes.count)] }
    }

    /// A version's whole engine state: its first chunk followed by the others, in order, read in
    /// binary one chunk at a time into one buffer sized from the stored lengths. A 2.6 GB state
    /// read as base64 text in one result held it four times over (text, decoded, copies).
    func engineState(modelKey: String, version: Int) throws -> [UInt8]? {
        try storedState(modelKey: modelKey, version: version, label: "")?.bytes()
    }

    /// A version's engine state as a restart reads it: a chunk at a time, each read (in binary)
    /// when the decoder reaches it, so the restart holds one chunk, not the whole state beside
    /// the engine it rebuilds. Nil when the version has no state. The chunks are counted first:
    /// one that is missing is an error here, before anything is decoded.
    public func storedState(modelKey: String, version: Int, label: String) throws -> StoredState? {
        let key = stateKey(modelKey, version)
        let r = try connection.execute("""
            SELECT octet_length(m.engine_state), m.engine_state_chunks, c.stored, c.bytes, m.state_generation
            FROM forecast.models m CROSS JOIN LATERAL (
                SELECT count(*), sum(octet_length(bytes)) FROM forecast.model_state_chunks
                WHERE source = m.source AND model_key = m.model_key AND version = m.version
                    AND generation = m.state_generation) c(stored, bytes)
            WHERE m.source = $1 AND m.model_key = $2 AND m.version = $3
            """, parameters: key)
        guard let row = r.rows.first, let firstBytes = row[0].flatMap({ Int($0) }) else { return nil }
        let chunks = max(Int(row[1] ?? "1") ?? 1, 1), stored = Int(row[2] ?? "0") ?? 0
        guard stored == chunks - 1 else {
            throw PostgresError(.query, "model \(modelKey) version \(version) of \(sourceKey): \(stored + 1) of its \(chunks) engine-state chunks are stored")
        }
        let connection = connection, sourceKey = sourceKey, generation = row[4] ?? "0"
        return StoredState(label: label, count: firstBytes + (Int(row[3] ?? "0") ?? 0)) {
            var next = 0
            return {
                guard next < chunks else { return nil }
                defer { next += 1 }
                var out: [UInt8] = []
                var found = false
                if next == 0 {
                    try connection.forEachBinaryRow("SELECT engine_state FROM forecast.models WHERE source = $1 AND model_key = $2 AND version = $3",
                                                    parameters: key) { found = $0.append(0, to: &out) }
                } else {
                    try connection.forEachBinaryRow("""
                        SELECT bytes FROM forecast.model_state_chunks
                        WHERE source = $1 AND model_key = $2 AND version = $3 AND generation = $4 AND chunk = $5
                        """, parameters: key + [.text(generation), .text(String(next))]) { found = $0.append(0, to: &out) }
                }
                guard found else {
                    throw PostgresError(.query, "model \(modelKey) version \(version) of \(sourceKey): chunk \(next) of its \(chunks) engine-state chunks is missing")
                }
                return out
            }
        }
    }

    /// The newest version of each model key that `condition` selects, with its checkpoint and
    /// whole engine state.
    private func storedModels(where condition: String, _ parameters: [PostgresConnection.Parameter]) throws -> [StoredModel] {
        try heads(where: condition, parameters).map { h in
            StoredModel(modelKey: h.key, version: h.version, checkpoint: h.checkpoint,
                        engineState: h.hasState ? try engineState(modelKey: h.key, version: h.version) : nil)
        }
    }

    private func heads(where condition: String, _ parameters: [PostgresConnection.Parameter]) throws
        -> [(key: String, version: Int, checkpoint: [UInt8]?, hasState: Bool)] {
        var heads: [(key: String, version: Int, checkpoint: [UInt8]?, hasState: Bool)] = []
        try connection.forEachBinaryRow("""
            SELECT DISTINCT ON (model_key) model_key, version::text, checkpoint, (engine_state IS NOT NULL)::text
            FROM forecast.models WHERE \(condition) ORDER BY model_key, version DESC
            """, parameters: parameters) { row in
            heads.append((row.text(0) ?? "", Int(row.text(1) ?? "") ?? 0, row.bytes(2), row.text(3) == "true"))
        }
        return heads
    }

    /// The newest version of every model of this source, its engine state to be read as it is
    /// decoded (`storedState`): what a restart resumes from.
    public func latestStates() throws -> [(modelKey: String, version: Int, state: StoredState?)] {
        try heads(where: "source = $1\(modelsInShard)", [.text(sourceKey)]).map { h in
            (h.key, h.version, h.hasState ? try storedState(modelKey: h.key, version: h.version, label: "model \(h.key) version \(h.version)") : nil)
        }
    }

    /// The newest stored version per model key (`*` for the shared model).
    public func newestVersions() throws -> [String: Int] {
        var out: [String: Int] = [:]
        for row in try connection.execute(
            "SELECT model_key, max(version) FROM forecast.models WHERE source = $1\(modelsInShard) GROUP BY model_key", [sourceKey]).rows {
            out[row[0]!] = Int(row[1]!) ?? 0
        }
        return out
    }

    public struct ModelInfo: Sendable {
        public var modelKey: String
        public var version: Int
        public var createdAt: String
        public var trainedAtPoint: Int?
        public var windows: Int?
        public var trainLoss: Double?
        public var holdoutLoss: Double?
        public var restoredFrom: Int?
        public var hasCheckpoint: Bool
    }

    /// Every stored model version of this source, newest first per model.
    public func listModels() throws -> [ModelInfo] {
        try connection.execute("""
            SELECT model_key, version, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), trained_at_point,
                   windows, train_loss, holdout_loss, restored_from, checkpoint IS NOT NULL
            FROM forecast.models WHERE source = $1 ORDER BY model_key, version DESC
            """, [sourceKey]).rows.map { r in
            ModelInfo(modelKey: r[0]!, version: Int(r[1]!) ?? 0, createdAt: r[2] ?? "", trainedAtPoint: r[3].flatMap { Int($0) },
                      windows: r[4].flatMap { Int($0) }, trainLoss: r[5].flatMap(Double.init), holdoutLoss: r[6].flatMap(Double.init),
                      restoredFrom: r[7].flatMap { Int($0) }, hasCheckpoint: r[8] == "t")
        }
    }

    /// Makes stored version `version` of a model current again as a new version above every
    /// stored one (versions are never reused), with its weights and its engine state renumbered
    /// by `renumber`. A running daemon sees the newer version at its next idle cycle and loads
    /// it. Returns the new version.
    public func rollback(modelKey: String, to version: Int, renumber: ([UInt8], Int) throws -> [UInt8]) throws -> Int {
        try connection.transaction {
            try connection.execute("LOCK TABLE forecast.models IN SHARE ROW EXCLUSIVE MODE")
            let withCheckpoint = try connection.execute("""
                SELECT 1 FROM forecast.models WHERE source = $1 AND model_key = $2 AND version = $3 AND checkpoint IS NOT NULL
                """, [sourceKey, modelKey, String(version)]).rows.count == 1
            guard withCheckpoint, let state = try engineState(modelKey: modelKey, version: version) else {
                throw PostgresError(.query, "\(sourceKey) has no stored version \(version) of model \(modelKey) with a checkpoint (see `forecastd models list`)")
            }
            let next = (Int(try connection.execute(
                "SELECT max(version) FROM forecast.models WHERE source = $1 AND model_key = $2", [sourceKey, modelKey]).scalar ?? "0") ?? 0) + 1
            let chunks = chunks(try renumber(state, next))
            try connection.execute("""
                INSERT INTO forecast.models (source, model_key, version, trained_at_point, windows, train_loss, holdout_loss,
                    previous_holdout_loss, checkpoint, engine_state, engine_state_chunks, restored_from)
                SELECT source, model_key, $4, trained_at_point, windows, train_loss, holdout_loss, previous_holdout_loss,
                       checkpoint, $5::bytea, $6, version
                FROM forecast.models WHERE source = $1 AND model_key = $2 AND version = $3
                """, parameters: [.text(sourceKey), .text(modelKey), .text(String(version)), .text(String(next)), .bytes(chunks[0]),
                                 .text(String(chunks.count))])
            for (k, chunk) in chunks.enumerated().dropFirst() {
                try connection.execute("""
                    INSERT INTO forecast.model_state_chunks (source, model_key, version, chunk, bytes)
                    VALUES ($1, $2, $3, $4, $5::bytea)
                    """, parameters: [.text(sourceKey), .text(modelKey), .text(String(next)), .text(String(k)), .bytes(chunk)])
            }
            try connection.execute("SELECT pg_notify('forecastd', $1)", [sourceKey])
            return next
        }
    }

    /// The newest version of every model of this source, with its whole engine state.
    public func latestModels() throws -> [StoredModel] {
        try storedModels(where: "source = $1\(modelsInShard)", [.text(sourceKey)])
    }

    /// The newest version of every shared model of this source stored under another shard
    /// layout ("*" before `[ingest] shards` was raised, "*1/2" and "*2/2" before it went to 4),
    /// with their whole engine states: what a shard without a model of its own starts from.
    public func sharedModelsOfOtherLayouts() throws -> [StoredModel] {
        try storedModels(where: "source = $1 AND model_key ~ '^[*]([0-9]+/[0-9]+)?$' AND model_key <> $2 AND engine_state IS NOT NULL",
                         [.text(sourceKey), .text(shard.sharedModelKey)])
    }

    /// The series of this source that belong to this shard (those forecast.series_state knows).
    public func seriesInShard() throws -> Set<String> {
        Set(try connection.execute("SELECT series FROM forecast.series_state WHERE source = $1" + inShard("series"), [sourceKey])
            .rows.compactMap { $0[0] })
    }

    // MARK: triggers

    /// Installs the statement trigger that queues this source's new rows for the daemon (run by
    /// `forecastd migrate --config`). The first time, the rows the daemon has not read yet are
    /// queued too, under a lock that keeps writers out for that moment, so history loaded before
    /// forecastd was installed is forecast and nothing falls between the copy and the trigger.
    /// Idempotent: a source whose trigger is in place is left as it is.
    public func installTrigger() throws {
        let table = resolved.source.table.quoted
        try connection.transaction {
            if try hasCaptureTrigger() { return }
            // The per-source trigger of earlier versions.
            try connection.execute("DROP TRIGGER IF EXISTS forecastd_notify ON \(table)")
            let old = "forecastd_" + String(UInt32(truncatingIfNeeded: sourceKey.fnv1a), radix: 16)
            try connection.execute("DROP FUNCTION IF EXISTS forecast.\(PostgresConnection.quoteIdentifier(old))()")
            let s = resolved.source
            let args = [sourceKey, s.seriesColumn ?? "", s.timeColumn, resolved.timeKind == .number ? "epoch" : "time", s.valueColumn]
                .map(Self.literal).joined(separator: ", ")
            try connection.execute("""
                CREATE TRIGGER forecastd_capture AFTER INSERT ON \(table)
                REFERENCING NEW TABLE AS forecastd_new_rows
                FOR EACH STATEMENT EXECUTE FUNCTION forecast.capture(\(args))
                """)
            // CREATE TRIGGER holds the table's SHARE ROW EXCLUSIVE lock until commit: writers that
            // began earlier have committed, later ones wait, so this copy and the trigger meet.
            try connection.execute("""
                INSERT INTO forecast.ingest_queue (source, xid, series, t, v)
                SELECT $1, pg_current_xact_id(), src.series, src.t, src.v
                FROM (SELECT \(resolved.seriesExpression) AS series, \(resolved.timeExpression) AS t,
                             \(resolved.valueExpression) AS v FROM \(table)) src
                LEFT JOIN forecast.series_state st ON st.source = $1 AND st.series = src.series
                WHERE st.watermark IS NULL OR NOT (src.t <= st.watermark)
                """, [sourceKey])
        }
    }

    /// Whether this role may VACUUM the ingest queue (its owner, a member of the owner's role, a
    /// superuser or the database's owner), asked once per store.
    private lazy var mayVacuumQueue: Bool = {
        (try? connection.execute("""
            SELECT pg_has_role(c.relowner, 'USAGE')
                OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                OR pg_has_role((SELECT datdba FROM pg_database WHERE datname = current_database()), 'USAGE')
            FROM pg_class c WHERE c.oid = 'forecast.ingest_queue'::regclass
            """).scalar) == "t"
    }()

    /// Vacuums the ingest queue, unless another vacuum (autovacuum, another shard) is at it.
    /// Every row read is deleted from the queue, and until a vacuum removes them the dead rows
    /// are read again by every `nextRows`: 150,000 of them (a catch-up, a minute at a few
    /// thousand rows/s) made each read 8 ms instead of 0.1, and autovacuum comes at most once a
    /// minute. Returns false when this role may not vacuum it (autovacuum then does it alone).
    @discardableResult
    public func vacuumQueue() throws -> Bool {
        guard mayVacuumQueue else { return false }
        try connection.execute("VACUUM (SKIP_LOCKED) forecast.ingest_queue")
        return true
    }

    /// Whether the source table has forecastd's queueing trigger, enabled.
    public func hasCaptureTrigger() throws -> Bool {
        try connection.execute("""
            SELECT count(*) FROM pg_trigger
            WHERE tgrelid = to_regclass($1) AND tgname = 'forecastd_capture' AND tgenabled <> 'D'
              AND tgfoid = 'forecast.capture()'::regprocedure
            """, [resolved.source.table.quoted]).scalar == "1"
    }

    static func literal(_ s: String) -> String { "'" + s.replacingAll("'", with: "''") + "'" }
}

extension String {
    var fnv1a: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in utf8 { h ^= UInt64(b); h = h &* 0x0000_0100_0000_01b3 }
        return h
    }
}

