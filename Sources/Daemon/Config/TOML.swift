import Foundation

/// A TOML value with the line it came from, so configuration errors can point at it.
struct TOMLValue {
    enum Kind {
        case string(String)
        case integer(Int)
        case float(Double)
        case bool(Bool)
        case array([TOMLValue])
    }
    var kind: Kind
    var line: Int
    var column: Int

    var typeName: String {
        switch kind {
        case .string: return "a string"
        case .integer: return "an integer"
        case .float: return "a number"
        case .bool: return "true or false"
        case .array: return "an array"
        }
    }
}

/// One `[table]` or `[[array-of-tables]]` entry: its keys in file order.
struct TOMLTable {
    var name: String
    var line: Int
    var entries: [(key: String, value: TOMLValue)] = []
}

struct TOMLError: Error, CustomStringConvertible {
    var file: String
    var line: Int
    var column: Int
    var message: String
    var description: String { "\(file):\(line):\(column): \(message)" }
}

/// The subset of TOML that forecastd's configuration uses: `[table]`, `[[array]]`,
/// `key = value` with basic and literal strings, integers (with `_`), floats, booleans and
/// arrays of those, and `#` comments. Anything else is an error naming line and column —
/// better a clear refusal than a silently different setting.
struct TOMLDocument {
    /// The top-level keys (before any header) come first, as a table named "".
    var tables: [TOMLTable] = []

    init(parsing text: String, file: String) throws {
        var current = TOMLTable(name: "", line: 1)
        var seenTables: Set<String> = []
        // "\r\n" is one Character in Swift: a CRLF file split on "\n" alone is a single line.
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
        for (index, rawLine) in lines.enumerated() {
            let lineNo = index + 1
            var p = Parser(chars: Array(rawLine), line: lineNo, file: file)
            p.skipSpace()
            if p.atEnd || p.peek == "#" { continue }
            if p.peek == "[" {
                let isArray = p.peek(at: 1) == "["
                p.advance(isArray ? 2 : 1)
                p.skipSpace()
                let name = try p.dottedKey()
                p.skipSpace()
                try p.expect(isArray ? "]]" : "]")
                try p.expectEndOfLine()
                tables.append(current)
                if !isArray {
                    if seenTables.contains(name) { throw p.error("table [\(name)] is defined twice") }
                    seenTables.insert(name)
                }
                current = TOMLTable(name: isArray ? "[[\(name)]]" : name, line: lineNo)
                continue
            }
            let keyColumn = p.column
            let key = try p.dottedKey()
            p.skipSpace()
            try p.expect("=")
            p.skipSpace()
            let value = try p.value()
            try p.expectEndOfLine()
            if current.entries.contains(where: { $0.key == key }) {
                throw TOMLError(file: file, line: lineNo, column: keyColumn, message: "key '\(key)' is set twice")
            }
            current.entries.append((key, value))
        }
        tables.append(current)
    }

    private struct Parser {
        let chars: [Character]
        let line: Int
        let file: String
        var i = 0

        init(chars: [Character], line: Int, file: String) {
            self.chars = chars
            self.line = line
            self.file = file
        }

        var atEnd: Bool { i >= chars.count }
        var peek: Character? { atEnd ? nil : chars[i] }
        var column: Int { i + 1 }
        func peek(at offset: Int) -> Character? { i + offset < chars.count ? chars[i + offset] : nil }
        mutating func advance(_ n: Int = 1) { i += n }

        func error(_ message: String) -> TOMLError {
            TOMLError(file: file, line: line, column: column, message: message)
        }

        mutating func skipSpace() {
            while let c = peek, c == " " || c == "\t" { i += 1 }
        }

        mutating func expect(_ s: String) throws {
            for ch in s {
                guard peek == ch else { throw error("expected '\(s)'") }
                i += 1
            }
        }

        mutating func expectEndOfLine() throws {
            skipSpace()
            if let c = peek, c != "#" { throw error("unexpected '\(c)' after the value") }
        }

        mutating func dottedKey() throws -> String {
            var parts: [String] = []
            repeat {
                skipSpace()
                if peek == "\"" {
                    parts.append(try basicString())
                } else {
                    let start = i
                    while let c = peek, c.isLetter || c.isNumber || c == "_" || c == "-" { i += 1 }
                    guard i > start else { throw error("expected a key name") }
                    parts.append(String(chars[start..<i]))
                }
                skipSpace()
                guard peek == "." else { break }
                i += 1
            } while true
            return parts.joined(separator: ".")
        }

        mutating func value() throws -> TOMLValue {
            let col = column
            guard let c = peek else { throw error("missing value after '='") }
            switch c {
            case "\"":
                if peek(at: 1) == "\"" && peek(at: 2) == "\"" { throw error("multi-line strings are not supported") }
                return TOMLValue(kind: .string(try basicString()), line: line, column: col)
            case "'":
                i += 1
                let start = i
                while let ch = peek, ch != "'" { i += 1 }
                guard peek == "'" else { throw error("unterminated string") }
                let s = String(chars[start..<i])
                i += 1
                return TOMLValue(kind: .string(s), line: line, column: col)
            case "[":
                i += 1
                var items: [TOMLValue] = []
                while true {
                    skipSpace()
                    if peek == "]" { i += 1; break }
                    items.append(try value())
                    skipSpace()
                    if peek == "," { i += 1; continue }
                    if peek == "]" { i += 1; break }
                    throw error(atEnd ? "arrays must close on the same line" : "expected ',' or ']' in array")
                }
                return TOMLValue(kind: .array(items), line: line, column: col)
            default:
                let start = i
                while let ch = peek, ch != " " && ch != "\t" && ch != "," && ch != "]" && ch != "#" { i += 1 }
                let word = String(chars[start..<i])
                if word == "true" { return TOMLValue(kind: .bool(true), line: line, column: col) }
                if word == "false" { return TOMLValue(kind: .bool(false), line: line, column: col) }
                let digits = word.replacingOccurrences(of: "_", with: "")
                if let n = Int(digits) { return TOMLValue(kind: .integer(n), line: line, column: col) }
                if let d = Double(digits), !word.isEmpty, word.first != "." {
                    return TOMLValue(kind: .float(d), line: line, column: col)
                }
                if ["inf", "+inf", "-inf", "nan", "+nan", "-nan"].contains(word) {
                    return TOMLValue(kind: .float(word.contains("nan") ? .nan : (word.hasPrefix("-") ? -.infinity : .infinity)),
                                     line: line, column: col)
                }
                i = start
                throw error("cannot read value '\(word)' (strings need quotes)")
            }
        }

        mutating func basicString() throws -> String {
            i += 1  // opening quote
            var out = ""
            while let c = peek {
                i += 1
                switch c {
                case "\"":
                    return out
                case "\\":
                    guard let e = peek else { throw error("unterminated escape") }
                    i += 1
                    switch e {
                    case "n": out.append("\n")
                    case "t": out.append("\t")
                    case "r": out.append("\r")
                    case "\\": out.append("\\")
                    case "\"": out.append("\"")
                    case "u", "U":
                        let n = e == "u" ? 4 : 8
                        guard i + n <= chars.count, let code = UInt32(String(chars[i..<(i + n)]), radix: 16),
                              let scalar = Unicode.Scalar(code) else { throw error("bad unicode escape") }
                        out.unicodeScalars.append(scalar)
                        i += n
                    default: throw error("unknown escape '\\\(e)'")
                    }
                default:
                    out.append(c)
                }
            }
            throw error("unterminated string")
        }
    }
}
