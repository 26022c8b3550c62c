// RFC 4180 record splitting over raw UTF-8 bytes. Fields are byte ranges into the file, not
// Strings: only the two or three selected columns are ever decoded, which is what keeps a
// 100k-row, 8-column file fast.

/// Where one field sits in the file. For a quoted field `start..<end` excludes the quotes.
struct CSVField {
    var origin: Int  // first byte of the field, the opening quote if quoted
    var start: Int
    var end: Int
    var line: Int  // line of `origin`
    var lineStart: Int  // offset of the first byte of that line
    var quoted = false
    var hasEscapedQuotes = false
    /// Characters between a closing quote and the next delimiter (`"ab"c`), which RFC 4180
    /// does not allow; the row is reported instead of guessing what was meant.
    var hasTrailingGarbage = false

    var isEmpty: Bool { start == end }
}

struct CSVScanner {
    let path: String
    private(set) var position: Int
    private(set) var line = 1
    private var lineStart: Int
    private(set) var fields: [CSVField] = []
    /// Line on which the most recent record starts (a quoted newline makes records span lines).
    private(set) var recordLine = 1

    private static let quote: UInt8 = 0x22
    private static let comma: UInt8 = 0x2C
    private static let cr: UInt8 = 0x0D
    private static let lf: UInt8 = 0x0A

    init(path: String, bytes b: UnsafeBufferPointer<UInt8>) {
        self.path = path
        let hasBOM = b.count >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF
        position = hasBOM ? 3 : 0
        // Columns count from after the BOM: editors do not show it.
        lineStart = position
        fields.reserveCapacity(16)
    }

    /// True when the last record was an empty line, which is skipped rather than reported.
    var isBlankRecord: Bool { fields.count == 1 && !fields[0].quoted && fields[0].isEmpty }

    /// Splits the next record into `fields`. Returns false at end of input.
    mutating func next(_ b: UnsafeBufferPointer<UInt8>) throws(CSVError) -> Bool {
        let n = b.count
        guard position < n else { return false }
        fields.removeAll(keepingCapacity: true)
        recordLine = line
        while true {
            var field = CSVField(origin: position, start: position, end: position, line: line, lineStart: lineStart)
            if position < n && b[position] == Self.quote {
                field.quoted = true
                position += 1
                field.start = position
                while true {
                    guard position < n else {
                        throw CSVError(path: path, line: field.line, column: column(of: field, in: b),
                                       message: "unterminated quoted field: the quote opened here is never closed")
                    }
                    let c = b[position]
                    if c == Self.quote {
                        if position + 1 < n && b[position + 1] == Self.quote {
                            field.hasEscapedQuotes = true
                            position += 2
                            continue
                        }
                        field.end = position
                        position += 1
                        break
                    }
                    if c == Self.lf {
                        line += 1
                        lineStart = position + 1
                    } else if c == Self.cr && !(position + 1 < n && b[position + 1] == Self.lf) {
                        line += 1
                        lineStart = position + 1
                    }
                    position += 1
                }
                while position < n {
                    let c = b[position]
                    if c == Self.comma || c == Self.lf || c == Self.cr { break }
                    field.hasTrailingGarbage = true
                    position += 1
                }
            } else {
                while position < n {
                    let c = b[position]
                    if c == Self.comma || c == Self.lf || c == Self.cr { break }
                    position += 1
                }
                field.end = position
            }
            fields.append(field)

            guard position < n else { return true }
            let delimiter = b[position]
            position += 1
            if delimiter == Self.comma { continue }
            // CRLF, LF, or a lone CR (old Mac files) all end the record.
            if delimiter == Self.cr && position < n && b[position] == Self.lf { position += 1 }
            line += 1
            lineStart = position
            return true
        }
    }

    /// 1-based column in characters, as an editor shows it.
    func column(of field: CSVField, in b: UnsafeBufferPointer<UInt8>) -> Int {
        var characters = 1
        var i = field.lineStart
        while i < field.origin {
            if b[i] & 0xC0 != 0x80 { characters += 1 }
            i += 1
        }
        return characters
    }

    /// The field's content with `""` collapsed; unquoted and escape-free fields are not copied.
    func withContent<R>(of field: CSVField, in b: UnsafeBufferPointer<UInt8>, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        guard field.hasEscapedQuotes else {
            return body(UnsafeBufferPointer(rebasing: b[field.start..<field.end]))
        }
        var unescaped: [UInt8] = []
        unescaped.reserveCapacity(field.end - field.start)
        var i = field.start
        while i < field.end {
            unescaped.append(b[i])
            i += b[i] == Self.quote ? 2 : 1
        }
        return unescaped.withUnsafeBufferPointer(body)
    }

    func string(of field: CSVField, in b: UnsafeBufferPointer<UInt8>) -> String {
        withContent(of: field, in: b) { String(decoding: $0, as: UTF8.self) }
    }
}
