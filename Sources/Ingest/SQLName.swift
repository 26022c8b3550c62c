/// A possibly schema-qualified table name from configuration, validated and quoted, so that a
/// name can never become SQL.
public struct SQLName: Equatable, Sendable, Hashable {
    public var schema: String?
    public var name: String

    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    /// Parses `table` or `schema.table`; a part may be written in double quotes to keep dots
    /// or capitals (`"My Schema"."Prices"`).
    public init(parsing text: String) throws {
        var parts: [String] = []
        var current = ""
        var quoted = false
        var chars = Array(text)[...]
        while let c = chars.first {
            chars = chars.dropFirst()
            if quoted {
                if c == "\"" {
                    if chars.first == "\"" { current.append("\""); chars = chars.dropFirst() } else { quoted = false }
                } else {
                    current.append(c)
                }
            } else if c == "\"" {
                quoted = true
            } else if c == "." {
                parts.append(current)
                current = ""
            } else {
                current.append(c)
            }
        }
        if quoted { throw Invalid(description: "unterminated quote in table name \(text)") }
        parts.append(current)
        guard parts.count <= 2 else { throw Invalid(description: "table name \(text) has more than schema.table") }
        for p in parts { try Self.validateIdentifier(p) }
        schema = parts.count == 2 ? parts[0] : nil
        name = parts.last!
    }

    public init(schema: String?, name: String) {
        self.schema = schema
        self.name = name
    }

    /// PostgreSQL identifiers: non-empty, at most 63 bytes, no NUL.
    public static func validateIdentifier(_ s: String) throws {
        if s.isEmpty { throw Invalid(description: "an identifier may not be empty") }
        if s.utf8.count > 63 { throw Invalid(description: "identifier \(s) is longer than PostgreSQL's 63 bytes") }
        if s.contains("\0") { throw Invalid(description: "identifier contains a NUL byte") }
    }

    /// For SQL text.
    public var quoted: String {
        (schema.map { PostgresConnection.quoteIdentifier($0) + "." } ?? "") + PostgresConnection.quoteIdentifier(name)
    }

    /// For messages and keys (schema.table, unquoted).
    public var display: String { (schema.map { $0 + "." } ?? "") + name }
}
