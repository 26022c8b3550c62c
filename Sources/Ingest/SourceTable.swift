import Forecast

/// A user's table of (series, time, value) rows, as forecastd reads it. Column names come from
/// configuration or flags: they are only ever used quoted.
public struct SourceTable: Sendable, Equatable {
    public var table: SQLName
    /// nil: the whole table is one series (named after the table).
    public var seriesColumn: String?
    public var timeColumn: String
    public var valueColumn: String

    public init(table: SQLName, seriesColumn: String?, timeColumn: String, valueColumn: String) {
        self.table = table
        self.seriesColumn = seriesColumn
        self.timeColumn = timeColumn
        self.valueColumn = valueColumn
    }


    /// Checks that the table and columns exist and have usable types; returns SQL expressions
    /// for (series text, epoch seconds, value text). Errors name the table and column.
    public func resolve(on conn: PostgresConnection) throws -> ResolvedSource {
        let types = try conn.execute("""
            SELECT a.attname, format_type(a.atttypid, a.atttypmod), t.typcategory
            FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
            WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
            """, [table.quoted])
        guard !types.rows.isEmpty else {
            throw PostgresError(.query, "table \(table.display) does not exist (or forecastd may not read it)", sqlState: "42P01")
        }
        var byName: [String: (type: String, category: String)] = [:]
        for row in types.rows { byName[row[0]!] = (row[1]!, row[2]!) }
        func column(_ name: String, _ role: String) throws -> (type: String, category: String) {
            guard let c = byName[name] else {
                let known = types.rows.map { $0[0]! }.joined(separator: ", ")
                throw PostgresError(.query, "table \(table.display) has no \(role) column \"\(name)\" (columns: \(known))", sqlState: "42703")
            }
            return c
        }
        let time = try column(timeColumn, "time")
        let timeExpr: String
        let kind: TimeKind
        switch time.category {
        case "D":
            timeExpr = "extract(epoch from \(PostgresConnection.quoteIdentifier(timeColumn)))::float8"
            kind = time.type.hasPrefix("timestamp with") ? .timestamptz : (time.type == "date" ? .date : .timestamp)
        case "N":
            timeExpr = "\(PostgresConnection.quoteIdentifier(timeColumn))::float8"
            kind = .number
        default:
            throw PostgresError(.query, "column \(table.display).\(timeColumn) has type \(time.type); the time column must be a timestamp, date or number", sqlState: "42804")
        }
        let value = try column(valueColumn, "value")
        guard value.category == "N" || value.category == "S" else {
            throw PostgresError(.query, "column \(table.display).\(valueColumn) has type \(value.type); the value column must be numeric", sqlState: "42804")
        }
        var seriesExpr = "$$\(table.display.replacingAll("$", with: ""))$$"
        if let s = seriesColumn {
            _ = try column(s, "series")
            seriesExpr = "\(PostgresConnection.quoteIdentifier(s))::text"
        }
        return ResolvedSource(source: self, seriesExpression: seriesExpr, timeExpression: timeExpr,
                              valueExpression: "\(PostgresConnection.quoteIdentifier(valueColumn))::text",
                              rawTimeExpression: PostgresConnection.quoteIdentifier(timeColumn), timeKind: kind)
    }
}

/// The SQL type family of a source's time column.
public enum TimeKind: Sendable, Equatable { case timestamptz, timestamp, date, number }

/// A source whose columns were checked against the database.
public struct ResolvedSource: Sendable, Equatable {
    public var source: SourceTable
    public var seriesExpression: String
    /// Seconds since the epoch as float8.
    public var timeExpression: String
    public var valueExpression: String
    /// The time column itself, for comparisons that can use its index.
    public var rawTimeExpression: String
    public var timeKind: TimeKind

    public init(source: SourceTable, seriesExpression: String, timeExpression: String, valueExpression: String,
                rawTimeExpression: String, timeKind: TimeKind) {
        self.source = source
        self.seriesExpression = seriesExpression
        self.timeExpression = timeExpression
        self.valueExpression = valueExpression
        self.rawTimeExpression = rawTimeExpression
        self.timeKind = timeKind
    }

    /// A condition on the time column itself that holds for every row at or before `epoch`
    /// (an SQL float8 of epoch seconds), so that an index on the column can bound a scan; nil
    /// for a number column, whose SQL type the comparison would have to match. It lets a
    /// microsecond more through than the epoch, for `to_timestamp`'s rounding: combine it with
    /// the exact test on `timeExpression`.
    public func rawTimeAtMost(_ epoch: String) -> String? {
        switch timeKind {
        case .timestamptz: return "\(rawTimeExpression) <= to_timestamp(\(epoch) + 1e-6)"
        case .timestamp: return "\(rawTimeExpression) <= (to_timestamp(\(epoch) + 1e-6) AT TIME ZONE 'UTC')"
        case .date: return "\(rawTimeExpression) <= (to_timestamp(\(epoch)) AT TIME ZONE 'UTC')::date"
        case .number: return nil
        }
    }

    /// The same for every row after `epoch`, letting a microsecond more through.
    public func rawTimeAfter(_ epoch: String) -> String? {
        switch timeKind {
        case .timestamptz: return "\(rawTimeExpression) >= to_timestamp(\(epoch) - 1e-6)"
        case .timestamp: return "\(rawTimeExpression) >= (to_timestamp(\(epoch) - 1e-6) AT TIME ZONE 'UTC')"
        case .date: return "\(rawTimeExpression) >= (to_timestamp(\(epoch)) AT TIME ZONE 'UTC')::date"
        case .number: return nil
        }
    }

    /// Rows in stream order (time, then series), optionally limited to one series and a time
    /// range (both bounds in epoch seconds, inclusive), read through a cursor in pages.
    public func readAll(on conn: PostgresConnection, series: String? = nil, from: Double? = nil, to: Double? = nil,
                        pageSize: Int = 20_000, _ body: ([RawRow]) throws -> Void) throws {
        var conditions: [String] = []
        var params: [String?] = []
        if let series {
            params.append(series)
            conditions.append("\(seriesExpression) = $\(params.count)")
        }
        if let from {
            params.append(String(from))
            conditions.append("\(timeExpression) >= $\(params.count)::float8")
        }
        if let to {
            params.append(String(to))
            conditions.append("\(timeExpression) <= $\(params.count)::float8")
        }
        let whereClause = conditions.isEmpty ? "" : "WHERE " + conditions.joined(separator: " AND ")
        let sql = """
            SELECT \(seriesExpression), \(timeExpression), \(valueExpression)
            FROM \(source.table.quoted) \(whereClause)
            ORDER BY 2, 1
            """
        try conn.transaction {
            try conn.execute("DECLARE forecastd_replay NO SCROLL CURSOR FOR \(sql)", params)
            while true {
                let page = try conn.execute("FETCH \(pageSize) FROM forecastd_replay")
                if page.rows.isEmpty { break }
                try body(page.rows.map(RawRow.init(sourceRow:)))
            }
            try conn.execute("CLOSE forecastd_replay")
        }
    }
}

extension RawRow {
    /// A row of (series text, epoch seconds, value text) as the source queries select it: the
    /// value stays text so that a bad value is a counted row, not a failed query.
    /// A NULL series id is counted against the source (`null_series`), and one too long to be a
    /// key of forecast's tables against it too (`bad_series`).
    init(sourceRow r: [String?]) {
        self.init(series: r[0] ?? "", time: r[1].flatMap { Double($0) }, valueText: r[2])
        if r[0] == nil { rejected = .nullSeries } else if series.utf8.count > RawRow.maxSeriesBytes { rejected = .badSeries }
    }
}
