import CLibPQ

/// The rows of one statement, copied out of libpq's result as text (NULL is nil).
public struct QueryResult: Sendable {
    public let columns: [String]
    public let rows: [[String?]]
    /// Rows changed by INSERT/UPDATE/DELETE/COPY (from PQcmdTuples), 0 otherwise.
    public let affectedRows: Int

    init(_ result: OpaquePointer) {
        defer { PQclear(result) }
        let nf = Int(PQnfields(result))
        let nt = Int(PQntuples(result))
        columns = (0..<nf).map { String(cString: PQfname(result, Int32($0))) }
        var rows: [[String?]] = []
        rows.reserveCapacity(nt)
        for r in 0..<nt {
            var row: [String?] = []
            row.reserveCapacity(nf)
            for c in 0..<nf {
                if PQgetisnull(result, Int32(r), Int32(c)) != 0 {
                    row.append(nil)
                } else {
                    row.append(String(cString: PQgetvalue(result, Int32(r), Int32(c))))
                }
            }
            rows.append(row)
        }
        self.rows = rows
        affectedRows = Int(String(cString: PQcmdTuples(result))) ?? 0
    }

    /// The single value of a one-row, one-column result.
    public var scalar: String? { rows.first?.first ?? nil }

    public func column(_ name: String) -> [String?] {
        guard let i = columns.firstIndex(of: name) else { return [] }
        return rows.map { $0[i] }
    }
}

/// Encoding for COPY's text format: tab-separated, \N for NULL, backslash escapes.
public enum CopyText {
    public static func encode(_ fields: [String?]) -> String {
        fields.map { field -> String in
            guard let field else { return "\\N" }
            var out = ""
            out.reserveCapacity(field.utf8.count)
            for ch in field.unicodeScalars {
                switch ch {
                case "\\": out += "\\\\"
                case "\t": out += "\\t"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                default: out.unicodeScalars.append(ch)
                }
            }
            return out
        }.joined(separator: "\t")
    }
}
