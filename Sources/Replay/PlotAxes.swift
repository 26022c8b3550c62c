import Foundation

// Axis ticks for the SVG plot. Time ticks land on calendar boundaries (whole minutes,
// midnights, Mondays, first of the month, New Year, all UTC) so that labels read naturally.

struct TimeTick: Equatable {
    var time: Double
    var label: String
    /// Wider context (date under a time, year under a date) shown where it changes.
    var context: String?
}

enum TimeAxis {
    private enum Step {
        case seconds(Double)
        case weeks(Int)
        case months(Int)
        case years(Int)

        var approximateSeconds: Double {
            switch self {
            case .seconds(let s): return s
            case .weeks(let w): return Double(w) * 7 * 86_400
            case .months(let m): return Double(m) * 30.44 * 86_400
            case .years(let y): return Double(y) * 365.25 * 86_400
            }
        }
    }

    private static let steps: [Step] =
        [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400, 172_800]
        .map { .seconds($0) }
        + [.weeks(1), .weeks(2), .months(1), .months(2), .months(3), .months(6)]
        + [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000].map { .years($0) }

    /// About `maxTicks` ticks (at most one more) within `start...end`, at the finest calendar step.
    static func ticks(start: Double, end: Double, maxTicks: Int) -> [TimeTick] {
        guard start.isFinite, end.isFinite, end > start, maxTicks >= 2 else { return [] }
        let span = end - start
        let step = steps.first { span / $0.approximateSeconds <= Double(maxTicks) } ?? steps[steps.count - 1]
        let times = tickTimes(start: start, end: end, step: step)
        return label(times, step: step)
    }

    private static func tickTimes(start: Double, end: Double, step: Step) -> [Double] {
        var result: [Double] = []
        switch step {
        case .seconds(let s):
            // Epoch time is midnight-aligned and every step divides a day (or is two days).
            var t = (start / s).rounded(.up) * s
            while t <= end { result.append(t); t += s }
        case .weeks(let w):
            let monday = 4.0 * 86_400  // 1970-01-05 was a Monday
            let s = Double(w) * 7 * 86_400
            var t = ((start - monday) / s).rounded(.up) * s + monday
            while t <= end { result.append(t); t += s }
        case .months(let k):
            let d = UTCDate(epochSeconds: start)
            var monthIndex = d.year * 12 + (d.month - 1)
            if UTCDate(year: d.year, month: d.month, day: 1).epochSeconds < start { monthIndex += 1 }
            monthIndex += (k - monthIndex % k) % k
            while true {
                let t = UTCDate(year: monthIndex / 12, month: monthIndex % 12 + 1, day: 1).epochSeconds
                if t > end { break }
                result.append(t)
                monthIndex += k
            }
        case .years(let k):
            let d = UTCDate(epochSeconds: start)
            var year = d.year
            if UTCDate(year: year, month: 1, day: 1).epochSeconds < start { year += 1 }
            year += (k - ((year % k) + k) % k) % k
            while true {
                let t = UTCDate(year: year, month: 1, day: 1).epochSeconds
                if t > end { break }
                result.append(t)
                year += k
            }
        }
        return result
    }

    private static func label(_ times: [Double], step: Step) -> [TimeTick] {
        var previous: UTCDate?
        return times.map { t in
            let d = UTCDate(epochSeconds: t)
            defer { previous = d }
            let month = UTCDate.monthAbbreviations[d.month - 1]
            let newYear = previous.map { $0.year != d.year } ?? true
            let newDay = previous.map { $0.year != d.year || $0.month != d.month || $0.day != d.day } ?? true
            switch step {
            case .seconds(let s) where s < 86_400:
                let time = s < 60 ? "\(two(d.hour)):\(two(d.minute)):\(two(d.second))" : "\(two(d.hour)):\(two(d.minute))"
                let date = newDay ? "\(month) \(d.day)" + (newYear ? " \(d.year)" : "") : nil
                return TimeTick(time: t, label: time, context: date)
            case .seconds, .weeks:
                return TimeTick(time: t, label: "\(month) \(d.day)", context: newYear ? "\(d.year)" : nil)
            case .months:
                return TimeTick(time: t, label: month, context: newYear ? "\(d.year)" : nil)
            case .years:
                return TimeTick(time: t, label: "\(d.year)", context: nil)
            }
        }
    }

    private static func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
}

/// "Nice" value-axis ticks: steps of 1, 2 or 5 times a power of ten.
enum ValueAxis {
    static func ticks(min lo: Double, max hi: Double, target: Int) -> (values: [Double], step: Double) {
        guard lo.isFinite, hi.isFinite, hi > lo, target >= 2 else { return ([], 0) }
        let raw = (hi - lo) / Double(target - 1)
        let magnitude = pow(10, log10(raw).rounded(.down))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var values: [Double] = []
        var k = (lo / step).rounded(.up)
        while k * step <= hi + step * 1e-9 {
            values.append(k * step == 0 ? 0 : k * step)  // no "-0"
            k += 1
        }
        return (values, step)
    }

    /// Enough decimals to tell ticks `step` apart, and no more.
    static func format(_ v: Double, step: Double) -> String {
        let decimals = max(0, -Int(log10(step).rounded(.down)))
        return formatFixed(v, decimals: min(decimals, 10))
    }
}

/// Fixed-point formatting with a thousands separator, without Foundation's locale-dependent
/// formatters.
func formatFixed(_ v: Double, decimals: Int) -> String {
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let scaled = (abs(v) * scale).rounded()
    guard scaled < 9e15 else { return "\(v)" }
    let n = Int(scaled)
    let integer = n / Int(scale)
    var text = groupThousands(integer)
    if decimals > 0 {
        var fraction = String(n % Int(scale))
        while fraction.count < decimals { fraction = "0" + fraction }
        text += "." + fraction
    }
    return (v < 0 && n != 0 ? "-" : "") + text
}

/// 1234567 → "1,234,567".
func groupThousands(_ n: Int) -> String {
    let digits = String(abs(n))
    var out = ""
    for (i, c) in digits.enumerated() {
        if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
        out.append(c)
    }
    return (n < 0 ? "-" : "") + out
}
