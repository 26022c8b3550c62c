// Proleptic Gregorian calendar arithmetic in UTC, without Foundation's Calendar/DateFormatter:
// those allocate per call and are locale- and time-zone-sensitive, which a 100k-row CSV parse
// and a reproducible SVG axis should not be.

/// A calendar date and time of day, in UTC.
struct UTCDate: Equatable {
    var year: Int
    var month: Int  // 1...12
    var day: Int  // 1...31
    var hour = 0
    var minute = 0
    var second = 0
    var fraction = 0.0  // 0..<1 second

    static let secondsPerDay = 86_400

    static func isLeap(_ year: Int) -> Bool { (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return isLeap(year) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 for a civil date; shifting the year to start in March puts the
    /// leap day last, so each 400-year era has the same shape.
    static func daysSinceEpoch(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let monthFromMarch = (month + 9) % 12
        let dayOfYear = (153 * monthFromMarch + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    /// Inverse of `daysSinceEpoch`.
    static func civil(fromDays days: Int) -> (year: Int, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    init(year: Int, month: Int, day: Int, hour: Int = 0, minute: Int = 0, second: Int = 0, fraction: Double = 0) {
        self.year = year
        self.month = month
        self.day = day
        self.hour = hour
        self.minute = minute
        self.second = second
        self.fraction = fraction
    }

    init(epochSeconds t: Double) {
        let whole = t.rounded(.down)
        let seconds = Int(whole)
        let days = seconds >= 0 ? seconds / Self.secondsPerDay : (seconds - Self.secondsPerDay + 1) / Self.secondsPerDay
        let secondOfDay = seconds - days * Self.secondsPerDay
        let (y, m, d) = Self.civil(fromDays: days)
        self.init(year: y, month: m, day: d, hour: secondOfDay / 3600, minute: secondOfDay / 60 % 60,
                  second: secondOfDay % 60, fraction: t - whole)
    }

    var epochSeconds: Double {
        let days = Self.daysSinceEpoch(year: year, month: month, day: day)
        return Double(days * Self.secondsPerDay + hour * 3600 + minute * 60 + second) + fraction
    }

    static let monthAbbreviations = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
}

// MARK: - Parsing timestamps from CSV bytes

public enum TimestampParser {
    /// Epoch seconds of a timestamp in any of the accepted forms, or nil.
    public static func parse(_ text: String) -> Double? {
        var t = text
        return t.withUTF8 { parse($0) }
    }

    /// ISO 8601 UTC text for epoch seconds (`2016-07-01T00:00:00Z`, with fractions when present).
    public static func format(_ seconds: Double) -> String {
        let whole = seconds.rounded(.down)
        let days = Int((whole / 86_400).rounded(.down))
        let rem = Int(whole) - days * 86_400
        let (y, m, d) = UTCDate.civil(fromDays: days)
        var s = String(format: "%04d-%02d-%02dT%02d:%02d:%02d", y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
        let frac = seconds - whole
        if frac > 0 { s += String(format: "%.6f", frac).dropFirst(1).replacingOccurrences(of: "0+$", with: "", options: .regularExpression) }
        return s + "Z"
    }

    /// Parses the forms time-series files actually use, to seconds since 1970-01-01T00:00:00Z:
    /// `2016-07-01`, `2016-07-01 00:00[:00[.123]]`, `2016-07-01T00:00:00[.123][Z|±hh:mm|±hhmm|±hh]`,
    /// `/` instead of `-` in the date, and plain numbers (epoch seconds, possibly fractional).
    /// No zone means UTC. Returns nil for anything else, including impossible dates like Feb 30.
    static func parse(_ s: UnsafeBufferPointer<UInt8>) -> Double? {
        var b = s[...]
        while let f = b.first, f == 0x20 || f == 0x09 { b = b.dropFirst() }
        while let l = b.last, l == 0x20 || l == 0x09 { b = b.dropLast() }
        guard !b.isEmpty else { return nil }
        if let dated = parseDateTime(b) { return dated }
        return parseEpoch(b)
    }

    private static func parseEpoch(_ b: Slice<UnsafeBufferPointer<UInt8>>) -> Double? {
        // Digits with at most one dot and an optional sign; anything fancier (exponents, hex,
        // "nan") is far more likely to be a wrong column than a timestamp.
        var sawDigit = false
        var sawDot = false
        for (i, c) in zip(b.indices, b) {
            if c >= 0x30 && c <= 0x39 { sawDigit = true; continue }
            if c == 0x2E && !sawDot { sawDot = true; continue }
            if (c == 0x2D || c == 0x2B) && i == b.startIndex { continue }
            return nil
        }
        guard sawDigit else { return nil }
        return Double(String(decoding: b, as: UTF8.self))
    }

    private static func parseDateTime(_ b: Slice<UnsafeBufferPointer<UInt8>>) -> Double? {
        var i = b.startIndex
        let end = b.endIndex

        func digits(_ n: Int) -> Int? {
            guard end - i >= n else { return nil }
            var v = 0
            for k in 0..<n {
                let c = b[i + k]
                guard c >= 0x30 && c <= 0x39 else { return nil }
                v = v * 10 + Int(c - 0x30)
            }
            i += n
            return v
        }
        func eat(_ c: UInt8) -> Bool {
            if i < end && b[i] == c { i += 1; return true }
            return false
        }

        guard let year = digits(4) else { return nil }
        guard i < end, b[i] == 0x2D || b[i] == 0x2F else { return nil }
        let dateSeparator = b[i]
        i += 1
        guard let month = digits(2), eat(dateSeparator), let day = digits(2) else { return nil }
        guard (1...12).contains(month), day >= 1, day <= UTCDate.daysIn(month: month, year: year) else { return nil }
        var date = UTCDate(year: year, month: month, day: day)
        if i == end { return date.epochSeconds }

        guard eat(0x54) || eat(0x20) || eat(0x74) else { return nil }  // 'T', ' ', 't'
        while i < end && b[i] == 0x20 { i += 1 }
        guard let hour = digits(2), eat(0x3A), let minute = digits(2) else { return nil }
        var second = 0
        var fraction = 0.0
        if eat(0x3A) {
            guard let s = digits(2) else { return nil }
            second = s
            if i < end && (b[i] == 0x2E || b[i] == 0x2C) {  // ISO 8601 allows a decimal comma
                i += 1
                var scale = 0.1
                var any = false
                while i < end, b[i] >= 0x30 && b[i] <= 0x39 {
                    fraction += Double(b[i] - 0x30) * scale
                    scale /= 10
                    i += 1
                    any = true
                }
                guard any else { return nil }
            }
        }
        // 24:00:00 is ISO 8601's end of day; 60 seconds is a leap second, folded into the next.
        guard hour <= 23 || (hour == 24 && minute == 0 && second == 0 && fraction == 0),
              minute <= 59, second <= 60 else { return nil }
        date.hour = hour
        date.minute = minute
        date.second = second
        date.fraction = fraction

        while i < end && b[i] == 0x20 { i += 1 }
        var offset = 0
        if i < end {
            if eat(0x5A) || eat(0x7A) {  // 'Z', 'z'
            } else if b[i] == 0x2B || b[i] == 0x2D {
                let sign = b[i] == 0x2D ? -1 : 1
                i += 1
                guard let oh = digits(2), oh <= 23 else { return nil }
                var om = 0
                if i < end {
                    _ = eat(0x3A)
                    guard let m = digits(2), m <= 59 else { return nil }
                    om = m
                }
                offset = sign * (oh * 3600 + om * 60)
            } else {
                return nil
            }
        }
        guard i == end else { return nil }
        return date.epochSeconds - Double(offset)
    }
}
