import CLibPQ
import Glibc

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

/// One row of a result while `PostgresConnection.forEachRow` runs (valid only inside its body).
public struct ResultRow {
    let result: OpaquePointer
    let row: Int32

    public func isNull(_ column: Int) -> Bool { PQgetisnull(result, row, Int32(column)) != 0 }

    public func string(_ column: Int) -> String? {
        isNull(column) ? nil : String(cString: PQgetvalue(result, row, Int32(column)))
    }

    /// The field read as a number: nil for NULL or text that is not entirely one (as `Double(_:)`).
    public func double(_ column: Int) -> Double? {
        guard !isNull(column) else { return nil }
        let p = PQgetvalue(result, row, Int32(column))!
        guard p.pointee != 0 else { return nil }
        var end: UnsafeMutablePointer<CChar>?
        let v = strtod(p, &end)
        guard let end, end.pointee == 0, isspace(Int32(UInt8(bitPattern: p.pointee))) == 0 else { return nil }
        return v
    }

    /// The field's bytes as they are (a `bytea` of `forEachBinaryRow`); nil for NULL.
    public func bytes(_ column: Int) -> [UInt8]? { field(column) { [UInt8]($0) } }

    /// Appends the field's bytes to `out`; false for NULL.
    public func append(_ column: Int, to out: inout [UInt8]) -> Bool {
        field(column) { out.append(contentsOf: $0) } != nil
    }

    /// The field as UTF-8 text by its length (binary results carry no terminating zero to rely on).
    public func text(_ column: Int) -> String? { field(column) { String(decoding: $0, as: UTF8.self) } }

    /// Whether the field's text is `s`, byte for byte, without making a string of it.
    public func equals(_ column: Int, _ s: String) -> Bool {
        field(column) { $0.count == s.utf8.count && s.utf8.elementsEqual($0) } ?? false
    }

    /// `body` over the field's bytes as libpq holds them (by their length); nil for NULL.
    private func field<T>(_ column: Int, _ body: (UnsafeBufferPointer<UInt8>) -> T) -> T? {
        guard !isNull(column) else { return nil }
        let n = Int(PQgetlength(result, row, Int32(column)))
        return PQgetvalue(result, row, Int32(column)).withMemoryRebound(to: UInt8.self, capacity: n) {
            body(UnsafeBufferPointer(start: $0, count: n))
        }
    }
}

/// Encoding for COPY's text format: tab-separated, \N for NULL, backslash escapes.
public enum CopyText {
    /// One row of COPY text format: fields joined by tabs, NULL as \N, and backslash, tab,
    /// newline and carriage return escaped. Fields without any of those (numbers, arrays of
    /// numbers, most names) are copied as they are: this runs for every row a cycle writes.
    public static func encode(_ fields: [String?]) -> String {
        var out = ""
        out.reserveCapacity(fields.reduce(0) { $0 + ($1?.utf8.count ?? 2) + 1 })
        for (i, field) in fields.enumerated() {
            if i > 0 { out += "\t" }
            guard let field else { out += "\\N"; continue }
            guard field.utf8.contains(where: { $0 == 0x5C || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }) else {
                out += field
                continue
            }
            for ch in field.unicodeScalars {
                switch ch {
                case "\\": out += "\\\\"
                case "\t": out += "\\t"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                default: out.unicodeScalars.append(ch)
                }
            }
        }
        return out
    }
}
