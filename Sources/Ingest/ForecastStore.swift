import Forecast
import Foundation

/// forecastd's reads and writes of its own schema for one source. All the writes of a cycle go
/// through `commit(_:)`, one transaction, which is what makes them exactly-once: after a crash
/// either the predictions and the advanced watermark are both there, or neither is.
public final class ForecastStore {
    public let connection: PostgresConnection
    public let sourceKey: String
    public let resolved: ResolvedSource

    public init(connection: PostgresConnection, source: ResolvedSource) throws {
        self.connection = connection
        self.resolved = source
        sourceKey = source.source.table.display
        // extract(epoch ...) of a timestamp without time zone and comparisons with to_timestamp()
        // agree only when the session zone is UTC.
        try connection.execute("SET TimeZone = 'UTC'")
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

    public func progress() throws -> [String: SeriesProgress] {
        let r = try connection.execute(
            "SELECT series, watermark, observations FROM forecast.series_state WHERE source = $1", [sourceKey])
        var out: [String: SeriesProgress] = [:]
        for row in r.rows {
            out[row[0]!] = SeriesProgress(watermark: row[1].flatMap(Double.init), observations: Int(row[2] ?? "0") ?? 0)
        }
        return out
    }

    /// Up to `limit` rows newer than their series' watermark, oldest first. `floor` (the lowest
    /// watermark of all known series) lets PostgreSQL use an index on the time column; rows
    /// older than it are late and are counted by the trigger instead. Rows *at* the floor are
    /// still read: a batch that ends inside one timestamp (more series than `limit`) leaves rows
    /// of that time for series whose watermark is below it, or that are not known yet.
    public func newRows(floor: Double?, limit: Int) throws -> [RawRow] {
        var conditions = ["(st.watermark IS NULL OR src.t > st.watermark)"]
        var params: [String?] = [sourceKey, String(limit)]
        if let floor {
            params.append(String(floor))
            conditions.append(resolved.timeAtOrAfterCondition(parameter: "$3"))
        }
        let r = try connection.execute("""
            SELECT src.series, src.t, src.v
            FROM (SELECT \(resolved.seriesExpression) AS series, \(resolved.timeExpression) AS t,
                         \(resolved.valueExpression) AS v
                  FROM \(resolved.source.table.quoted)
                  WHERE \(conditions.count > 1 ? conditions[1] : "true")) src
            LEFT JOIN forecast.series_state st ON st.source = $1 AND st.series = src.series
            WHERE \(conditions[0]) AND src.t IS NOT NULL
            ORDER BY src.t, src.series
            LIMIT $2::bigint
            """, params)
        return r.rows.map(RawRow.init(sourceRow:))
    }

    /// The last `perSeries` rows at or before each series' watermark, oldest first: what a
    /// restarted daemon feeds back into its windows.
    public func history(perSeries: Int) throws -> [RawRow] {
        let r = try connection.execute("""
            SELECT series, t, v FROM (
                SELECT src.series, src.t, src.v,
                       row_number() OVER (PARTITION BY src.series ORDER BY src.t DESC) AS k
                FROM (SELECT \(resolved.seriesExpression) AS series, \(resolved.timeExpression) AS t,
                             \(resolved.valueExpression) AS v
                      FROM \(resolved.source.table.quoted)) src
                JOIN forecast.series_state st ON st.source = $1 AND st.series = src.series
                WHERE src.t <= st.watermark
            ) h
            WHERE k <= $2::bigint
            ORDER BY t, series
            """, [sourceKey, String(perSeries)])
        return r.rows.map(RawRow.init(sourceRow:))
    }

    /// The published forecasts still waiting for their actual.
    public func pending() throws -> [StreamSession.PendingForecast] {
        let r = try connection.execute("""
            SELECT series, extract(epoch FROM ts)::float8, predicted, lower, upper, model_version
            FROM forecast.predictions WHERE source = $1 AND actual IS NULL ORDER BY series
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
    @discardableResult
    public func commit(_ batch: StreamBatch) throws -> [String: Int] {
        try connection.transaction {
            try connection.execute("""
                CREATE TEMP TABLE IF NOT EXISTS forecastd_stage (
                    series text, t float8, predicted float8, lower float8, upper float8, model_version bigint,
                    actual float8, previous_actual float8, anomaly_score float8, is_anomaly boolean) ON COMMIT DELETE ROWS
                """)
            func n(_ v: Double?) -> String? { v.map { String($0) } }
            var rows: [String] = []
            rows.reserveCapacity(batch.completed.count + batch.forecasts.count)
            for c in batch.completed {
                let f = c.forecast
                rows.append(CopyText.encode([c.series, String(c.time), String(f.value), String(f.lower), String(f.upper),
                                             String(f.modelVersion), String(c.actual), n(c.previousActual),
                                             String(c.anomalyScore), c.isAnomaly ? "t" : "f"]))
            }
            for p in batch.forecasts {
                let f = p.forecast
                rows.append(CopyText.encode([p.series, String(f.time), String(f.value), String(f.lower), String(f.upper),
                                             String(f.modelVersion), nil, nil, nil, nil]))
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
                         anomaly_score, is_anomaly, observed_at)
                    SELECT $1, series, to_timestamp(t), predicted, lower, upper, model_version, actual, previous_actual,
                           anomaly_score, is_anomaly, CASE WHEN actual IS NULL THEN NULL ELSE now() END
                    FROM forecastd_stage
                    ON CONFLICT (source, series, ts) DO NOTHING
                    """, [sourceKey])
            }
            let late = try connection.execute(
                "DELETE FROM forecast.late_rows WHERE source = $1 RETURNING series", [sourceKey])
            var lateCounts: [String: Int] = [:]
            for row in late.rows { lateCounts[row[0]!, default: 0] += 1 }
            var updates = batch.series.filter { $0.watermark != nil }
            for (s, count) in lateCounts {
                if let i = updates.firstIndex(where: { $0.series == s }) {
                    updates[i].badRows[.late, default: 0] += count
                } else {
                    try addBadRows(series: s, [.late: count])
                }
            }
            if !updates.isEmpty {
                let stateRows = updates.map { u in
                    CopyText.encode([u.series, n(u.watermark), String(u.rows), n(u.lastValue), n(u.lastTime),
                                     u.modelVersion.map { String($0) }, Self.countsJSON(u.badRows)])
                }
                try connection.execute("""
                    CREATE TEMP TABLE IF NOT EXISTS forecastd_state_stage (
                        series text, watermark float8, observations bigint, last_value float8, last_time float8,
                        model_version bigint, bad jsonb) ON COMMIT DELETE ROWS
                    """)
                try connection.copyIn("COPY forecastd_state_stage FROM STDIN", rows: stateRows)
                try connection.execute("""
                    INSERT INTO forecast.series_state AS st
                        (source, series, watermark, observations, last_value, last_observed_at, model_version, bad_rows, updated_at)
                    SELECT $1, series, watermark, observations, last_value, to_timestamp(last_time), model_version, bad, now()
                    FROM forecastd_state_stage
                    ON CONFLICT (source, series) DO UPDATE SET
                        watermark = GREATEST(st.watermark, EXCLUDED.watermark),
                        -- A cycle retried after a lost COMMIT acknowledgement must not count twice.
                        observations = st.observations + CASE WHEN st.watermark IS NULL OR EXCLUDED.watermark > st.watermark
                                                              THEN EXCLUDED.observations ELSE 0 END,
                        last_value = COALESCE(EXCLUDED.last_value, st.last_value),
                        last_observed_at = COALESCE(EXCLUDED.last_observed_at, st.last_observed_at),
                        model_version = COALESCE(EXCLUDED.model_version, st.model_version),
                        bad_rows = CASE WHEN st.watermark IS NULL OR EXCLUDED.watermark > st.watermark
                                        THEN forecast.add_counts(st.bad_rows, EXCLUDED.bad_rows) ELSE st.bad_rows END,
                        updated_at = now()
                    """, [sourceKey])
            }
            return lateCounts
        }
    }

    /// `{"late": 2, "null_value": 1}`, keys sorted, in the shared reason vocabulary.
    static func countsJSON(_ counts: [RowIssue: Int]) -> String {
        "{" + counts.sorted { $0.key.rawValue < $1.key.rawValue }.map { "\"\($0.key.rawValue)\": \($0.value)" }
            .joined(separator: ", ") + "}"
    }

    /// Adds to a series' bad-row counters outside a cycle (e.g. when its source cannot be read).
    public func addBadRows(series: String, _ counts: [RowIssue: Int]) throws {
        let json = Self.countsJSON(counts)
        try connection.execute("""
            INSERT INTO forecast.series_state AS st (source, series, bad_rows) VALUES ($1, $2, $3::jsonb)
            ON CONFLICT (source, series) DO UPDATE SET bad_rows = forecast.add_counts(st.bad_rows, EXCLUDED.bad_rows),
                updated_at = now()
            """, [sourceKey, series, json])
    }

    // MARK: models

    public struct StoredModel: Sendable {
        public var modelKey: String
        public var version: Int
        public var checkpoint: [UInt8]?
        public var engineState: [UInt8]?
    }

    /// Saves (or refreshes) a model version and keeps only the newest `keep` versions of it.
    public func saveModel(modelKey: String, version: Int, trainedAtPoint: Int?, windows: Int?, trainLoss: Double?,
                          holdoutLoss: Double?, previousHoldoutLoss: Double?, checkpoint: [UInt8]?,
                          engineState: [UInt8], keep: Int) throws {
        try connection.transaction {
            try connection.execute("""
                INSERT INTO forecast.models AS m (source, model_key, version, trained_at_point, windows, train_loss,
                    holdout_loss, previous_holdout_loss, checkpoint, engine_state)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, decode($9, 'base64'), decode($10, 'base64'))
                ON CONFLICT (source, model_key, version) DO UPDATE SET engine_state = EXCLUDED.engine_state,
                    checkpoint = COALESCE(EXCLUDED.checkpoint, m.checkpoint)
                """, [sourceKey, modelKey, String(version), trainedAtPoint.map { String($0) }, windows.map { String($0) },
                      trainLoss.map { String($0) }, holdoutLoss.map { String($0) }, previousHoldoutLoss.map { String($0) },
                      checkpoint.map { Data($0).base64EncodedString() }, Data(engineState).base64EncodedString()])
            try connection.execute("""
                DELETE FROM forecast.models WHERE source = $1 AND model_key = $2 AND version NOT IN (
                    SELECT version FROM forecast.models WHERE source = $1 AND model_key = $2
                    ORDER BY version DESC LIMIT $3::bigint)
                """, [sourceKey, modelKey, String(keep)])
        }
    }

    /// The newest version of every model of this source.
    public func latestModels() throws -> [StoredModel] {
        let r = try connection.execute("""
            SELECT DISTINCT ON (model_key) model_key, version, encode(checkpoint, 'base64'), encode(engine_state, 'base64')
            FROM forecast.models WHERE source = $1 ORDER BY model_key, version DESC
            """, [sourceKey])
        return r.rows.map { row in
            func bytes(_ s: String?) -> [UInt8]? {
                s.flatMap { Data(base64Encoded: $0.filter { !$0.isWhitespace }) }.map { [UInt8]($0) }
            }
            return StoredModel(modelKey: row[0]!, version: Int(row[1]!) ?? 0, checkpoint: bytes(row[2]), engineState: bytes(row[3]))
        }
    }

    // MARK: triggers

    /// Installs (or replaces) the statement trigger that wakes the daemon and records late rows
    /// for this source. Run by `forecastd migrate --config`.
    public func installTrigger() throws {
        let name = "forecastd_" + String(UInt32(truncatingIfNeeded: sourceKey.fnv1a), radix: 16)
        let fn = "forecast." + PostgresConnection.quoteIdentifier(name)
        let literal = "'" + sourceKey.replacingAll("'", with: "''") + "'"
        try connection.transaction {
            try connection.execute("""
                CREATE OR REPLACE FUNCTION \(fn)() RETURNS trigger LANGUAGE plpgsql AS $fn$
                BEGIN
                    INSERT INTO forecast.late_rows (source, series, t)
                    SELECT \(literal), n.series, n.t
                    FROM (SELECT \(resolved.seriesExpression) AS series, \(resolved.timeExpression) AS t
                          FROM forecastd_new_rows) n
                    JOIN forecast.series_state st ON st.source = \(literal) AND st.series = n.series
                    WHERE n.t <= st.watermark;
                    PERFORM pg_notify('forecastd', \(literal));
                    RETURN NULL;
                END
                $fn$
                """)
            try connection.execute("DROP TRIGGER IF EXISTS forecastd_notify ON \(resolved.source.table.quoted)")
            try connection.execute("""
                CREATE TRIGGER forecastd_notify AFTER INSERT ON \(resolved.source.table.quoted)
                REFERENCING NEW TABLE AS forecastd_new_rows
                FOR EACH STATEMENT EXECUTE FUNCTION \(fn)()
                """)
        }
    }
}

extension String {
    var fnv1a: UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in utf8 { h ^= UInt64(b); h = h &* 0x0000_0100_0000_01b3 }
        return h
    }
}

extension ResolvedSource {
    /// `time column >= epoch` written so that an index on the time column can be used.
    func timeAtOrAfterCondition(parameter: String) -> String {
        switch timeKind {
        case .timestamptz: return "\(rawTimeExpression) >= to_timestamp(\(parameter)::float8)"
        case .timestamp: return "\(rawTimeExpression) >= (to_timestamp(\(parameter)::float8) AT TIME ZONE 'UTC')"
        case .date: return "\(rawTimeExpression) >= (to_timestamp(\(parameter)::float8) AT TIME ZONE 'UTC')::date"
        case .number: return "\(rawTimeExpression) >= \(parameter)::float8"
        }
    }
}
