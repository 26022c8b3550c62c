/// What to draw: one series with its forecast. All arrays are indexed like `times`; `nil`
/// (or a non-finite number) is a gap that breaks the line or the band.
public struct PlotData: Sendable {
    /// Seconds since 1970-01-01T00:00:00Z, increasing.
    public var times: [Double]
    public var actual: [Double?]
    public var predicted: [Double?]?
    public var lower: [Double?]?
    public var upper: [Double?]?
    public var isAnomaly: [Bool]?
    /// One issued path drawn as a fan (its forecast and interval per step) over the actuals.
    public var fan: PlotFan?

    public init(times: [Double], actual: [Double?], predicted: [Double?]? = nil,
                lower: [Double?]? = nil, upper: [Double?]? = nil, isAnomaly: [Bool]? = nil) {
        self.times = times
        self.actual = actual
        self.predicted = predicted
        self.lower = lower
        self.upper = upper
        self.isAnomaly = isAnomaly
    }
}

/// The steps of one issued forecast path.
public struct PlotFan: Sendable {
    public var issuedAt: Double
    public var times: [Double]
    public var predicted: [Double]
    public var lower: [Double]
    public var upper: [Double]

    public init(issuedAt: Double, times: [Double], predicted: [Double], lower: [Double], upper: [Double]) {
        self.issuedAt = issuedAt
        self.times = times
        self.predicted = predicted
        self.lower = lower
        self.upper = upper
    }
}

/// Renders actual vs predicted as a self-contained SVG line chart: interval band, anomaly
/// dots, UTC time axis, value axis, title and legend.
public struct SVGPlot: Sendable {
    public var title: String
    public var valueLabel: String?
    public var width: Int
    public var height: Int
    /// Above this many points each pixel column is reduced to its min and max, which looks the
    /// same as drawing every point but keeps a year of 1-minute data to a few hundred kB.
    public var downsampleAbove: Int

    public init(title: String, valueLabel: String? = nil, width: Int = 1200, height: Int = 480, downsampleAbove: Int = 4000) {
        self.title = title
        self.valueLabel = valueLabel
        self.width = max(width, 300)
        self.height = max(height, 200)
        self.downsampleAbove = downsampleAbove
    }

    private static let actualColor = "#1f77b4"
    private static let predictedColor = "#ff7f0e"
    private static let anomalyColor = "#d62728"
    private static let fanColor = "#2ca02c"

    public func render(_ data: PlotData) -> String {
        // A fan is drawn over the whole time range: its steps join the axis as values and times.
        var data = data
        if let fan = data.fan {
            data = Self.withFan(data, fan)
        }
        let n = data.times.count
        let frame = PlotFrame(width: Double(width), height: Double(height), hasValueLabel: valueLabel != nil)
        let actual = Self.column(data.actual, n)
        let predicted = data.predicted.map { Self.column($0, n) }
        let lower = data.lower.map { Self.column($0, n) }
        let upper = data.upper.map { Self.column($0, n) }
        let anomalies = data.isAnomaly.map { a in (0..<n).map { $0 < a.count && a[$0] } }
        let hasBand = lower != nil && upper != nil

        var svg = SVGWriter(width: width, height: height)
        svg.raw("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n")
        svg.text(title, x: frame.left, y: 24, attributes: "font-size=\"16\" font-weight=\"bold\"")

        guard let tRange = Self.timeRange(data.times), let vRange = Self.valueRange(actual: actual + Self.fanValues(data.fan), predicted: predicted, lower: lower, upper: upper) else {
            svg.raw("<rect x=\"\(px(frame.left))\" y=\"\(px(frame.top))\" width=\"\(px(frame.plotWidth))\" height=\"\(px(frame.plotHeight))\" fill=\"none\" stroke=\"#999\"/>\n")
            svg.text("no data", x: frame.left + frame.plotWidth / 2, y: frame.top + frame.plotHeight / 2,
                     attributes: "font-size=\"14\" fill=\"#666\" text-anchor=\"middle\"")
            return svg.finish()
        }

        let yTicks = ValueAxis.ticks(min: vRange.lo, max: vRange.hi, target: max(3, Int(frame.plotHeight / 55)))
        let yLo = min(vRange.lo, yTicks.values.first ?? vRange.lo)
        let yHi = max(vRange.hi, yTicks.values.last ?? vRange.hi)
        let scale = PlotScale(frame: frame, t0: tRange.lo, t1: tRange.hi, v0: yLo, v1: yHi)

        drawValueAxis(&svg, frame: frame, scale: scale, ticks: yTicks)
        drawTimeAxis(&svg, frame: frame, scale: scale)

        let reduce = n > downsampleAbove
        let columns = reduce ? Int(frame.plotWidth.rounded(.up)) : 0
        func points(_ values: [Double?]) -> [[(Double, Double)]] {
            reduce ? Self.envelopeRuns(values, times: data.times, scale: scale, columns: columns)
                   : Self.runs(values, times: data.times, scale: scale)
        }

        svg.raw("<defs><clipPath id=\"plot\"><rect x=\"\(px(frame.left))\" y=\"\(px(frame.top))\" width=\"\(px(frame.plotWidth))\" height=\"\(px(frame.plotHeight))\"/></clipPath></defs>\n")
        svg.raw("<g clip-path=\"url(#plot)\">\n")
        if let lower, let upper {
            let bands = reduce ? Self.envelopeBands(lower: lower, upper: upper, times: data.times, scale: scale, columns: columns)
                               : Self.bands(lower: lower, upper: upper, times: data.times, scale: scale)
            var d = ""
            for band in bands {
                d += "M" + band.upper.map { "\(px($0.0)),\(px($0.1))" }.joined(separator: " ")
                d += " L" + band.lower.reversed().map { "\(px($0.0)),\(px($0.1))" }.joined(separator: " ") + "Z"
            }
            if !d.isEmpty { svg.raw("<path d=\"\(d)\" fill=\"\(Self.predictedColor)\" fill-opacity=\"0.2\" stroke=\"none\"/>\n") }
        }
        if let fan = data.fan {
            let lo = fan.lower.map(Optional.some), hi = fan.upper.map(Optional.some)
            var d = ""
            for band in Self.bands(lower: lo, upper: hi, times: fan.times, scale: scale) {
                d += "M" + band.upper.map { "\(px($0.0)),\(px($0.1))" }.joined(separator: " ")
                d += " L" + band.lower.reversed().map { "\(px($0.0)),\(px($0.1))" }.joined(separator: " ") + "Z"
            }
            if !d.isEmpty { svg.raw("<path d=\"\(d)\" fill=\"\(Self.fanColor)\" fill-opacity=\"0.22\" stroke=\"none\"/>\n") }
            svg.polyline(Self.runs(fan.predicted.map(Optional.some), times: fan.times, scale: scale), color: Self.fanColor, width: 1.8)
            let x = scale.x(fan.issuedAt)
            svg.raw("<path d=\"M\(px(x)),\(px(frame.top))V\(px(frame.bottom))\" stroke=\"#888\" stroke-dasharray=\"4 3\" stroke-width=\"1\"/>\n")
        }
        // Actual last, on top: where the two lines coincide (dense data, good forecasts) the data
        // itself should stay visible, with the forecast showing around it.
        if let predicted { svg.polyline(points(predicted), color: Self.predictedColor, width: 1.6) }
        svg.polyline(points(actual), color: Self.actualColor, width: 1.1)
        if let anomalies {
            var seen = Set<Int>()
            var dots = ""
            for i in 0..<n where anomalies[i] {
                guard let v = actual[i] else { continue }
                let x = scale.x(data.times[i])
                let y = scale.y(v)
                // Coincident dots add bytes, not information.
                guard seen.insert(Int(x.rounded()) &* 100_003 &+ Int((y / 2).rounded())).inserted else { continue }
                dots += "<circle cx=\"\(px(x))\" cy=\"\(px(y))\" r=\"3.5\"/>"
            }
            if !dots.isEmpty { svg.raw("<g fill=\"\(Self.anomalyColor)\" stroke=\"white\" stroke-width=\"0.8\">\(dots)</g>\n") }
        }
        svg.raw("</g>\n")
        svg.raw("<rect x=\"\(px(frame.left))\" y=\"\(px(frame.top))\" width=\"\(px(frame.plotWidth))\" height=\"\(px(frame.plotHeight))\" fill=\"none\" stroke=\"#444\" stroke-width=\"1\"/>\n")

        drawLegend(&svg, frame: frame, predicted: predicted != nil, band: hasBand,
                   anomalies: anomalies?.contains(true) ?? false, fan: data.fan != nil)
        if reduce { svg.raw("<!-- \(n) points drawn as a min/max envelope over \(columns) pixel columns -->\n") }
        return svg.finish()
    }

    // MARK: Axes and legend

    private func drawValueAxis(_ svg: inout SVGWriter, frame: PlotFrame, scale: PlotScale, ticks: (values: [Double], step: Double)) {
        var grid = ""
        for v in ticks.values {
            let y = scale.y(v)
            grid += "M\(px(frame.left)),\(px(y))H\(px(frame.right))"
            svg.text(ValueAxis.format(v, step: ticks.step), x: frame.left - 6, y: y + 4,
                     attributes: "font-size=\"11\" text-anchor=\"end\" fill=\"#333\"")
        }
        svg.raw("<path d=\"\(grid)\" stroke=\"#e4e4e4\" stroke-width=\"1\"/>\n")
        if let valueLabel {
            let cy = frame.top + frame.plotHeight / 2
            svg.text(valueLabel, x: 16, y: cy,
                     attributes: "font-size=\"12\" text-anchor=\"middle\" fill=\"#333\" transform=\"rotate(-90 16 \(px(cy)))\"")
        }
    }

    private func drawTimeAxis(_ svg: inout SVGWriter, frame: PlotFrame, scale: PlotScale) {
        // ~95 px per label leaves room for "00:00" under "Jul 10 2016" without overlap.
        let ticks = TimeAxis.ticks(start: scale.t0, end: scale.t1, maxTicks: max(2, Int(frame.plotWidth / 95)))
        var grid = ""
        var marks = ""
        for tick in ticks {
            let x = scale.x(tick.time)
            grid += "M\(px(x)),\(px(frame.top))V\(px(frame.bottom))"
            marks += "M\(px(x)),\(px(frame.bottom))v5"
            svg.text(tick.label, x: x, y: frame.bottom + 18, attributes: "font-size=\"11\" text-anchor=\"middle\" fill=\"#333\"")
            if let context = tick.context {
                svg.text(context, x: x, y: frame.bottom + 32, attributes: "font-size=\"11\" text-anchor=\"middle\" fill=\"#666\"")
            }
        }
        svg.raw("<path d=\"\(grid)\" stroke=\"#eeeeee\" stroke-width=\"1\"/>\n")
        svg.raw("<path d=\"\(marks)\" stroke=\"#444\" stroke-width=\"1\"/>\n")
        svg.text("UTC", x: frame.right, y: frame.bottom + 46, attributes: "font-size=\"10\" text-anchor=\"end\" fill=\"#888\"")
    }

    private func drawLegend(_ svg: inout SVGWriter, frame: PlotFrame, predicted: Bool, band: Bool, anomalies: Bool, fan: Bool = false) {
        enum Swatch { case line(String), area(String), dot(String) }
        var entries: [(Swatch, String)] = [(.line(Self.actualColor), "actual")]
        if predicted { entries.append((.line(Self.predictedColor), "predicted")) }
        if band { entries.append((.area(Self.predictedColor), "prediction interval")) }
        if anomalies { entries.append((.dot(Self.anomalyColor), "anomaly")) }
        if fan {
            entries.append((.line(Self.fanColor), "path forecast"))
            entries.append((.area(Self.fanColor), "path interval"))
        }

        // Text width estimated at 6.2 px per character of 12 px sans-serif: no font metrics here.
        let widths = entries.map { 28 + Double($0.1.count) * 6.2 + 14 }
        var x = frame.right - widths.reduce(0, +)
        let y = 22.0
        for (entry, w) in zip(entries, widths) {
            switch entry.0 {
            case .line(let c):
                svg.raw("<path d=\"M\(px(x)),\(px(y - 4))h22\" stroke=\"\(c)\" stroke-width=\"2\"/>")
            case .area(let c):
                svg.raw("<rect x=\"\(px(x))\" y=\"\(px(y - 10))\" width=\"22\" height=\"12\" fill=\"\(c)\" fill-opacity=\"0.2\"/>")
            case .dot(let c):
                svg.raw("<circle cx=\"\(px(x + 11))\" cy=\"\(px(y - 4))\" r=\"3.5\" fill=\"\(c)\"/>")
            }
            svg.text(entry.1, x: x + 28, y: y, attributes: "font-size=\"12\" fill=\"#333\"")
            x += w
        }
        svg.raw("\n")
    }

    // MARK: Data to pixels

    private static func fanValues(_ fan: PlotFan?) -> [Double?] {
        guard let fan else { return [] }
        return (fan.predicted + fan.lower + fan.upper).filter(\.isFinite).map(Optional.some)
    }

    /// The data with the fan's times merged in (actuals missing there), so the axes and the value
    /// range cover both.
    private static func withFan(_ data: PlotData, _ fan: PlotFan) -> PlotData {
        var byTime: [Double: Int] = [:]
        for (i, t) in data.times.enumerated() { byTime[t] = i }
        var times = data.times, actual = data.actual, lower = data.lower ?? Array(repeating: nil, count: times.count),
            upper = data.upper ?? Array(repeating: nil, count: times.count)
        var flags = data.isAnomaly ?? Array(repeating: false, count: times.count)
        for t in fan.times where byTime[t] == nil {
            times.append(t); actual.append(nil); lower.append(nil); upper.append(nil); flags.append(false)
        }
        let order = times.indices.sorted { times[$0] < times[$1] }
        var out = PlotData(times: order.map { times[$0] }, actual: order.map { actual[$0] },
                           predicted: data.predicted.map { p in order.map { $0 < p.count ? p[$0] : nil } },
                           lower: data.lower == nil ? nil : order.map { lower[$0] },
                           upper: data.upper == nil ? nil : order.map { upper[$0] },
                           isAnomaly: order.map { flags[$0] })
        // The value range should hold the fan: its bounds enter as a band of the axis only.
        out.fan = fan
        return out
    }

    private static func column(_ values: [Double?], _ n: Int) -> [Double?] {
        (0..<n).map { i in
            guard i < values.count, let v = values[i], v.isFinite else { return nil }
            return v
        }
    }

    private static func timeRange(_ times: [Double]) -> (lo: Double, hi: Double)? {
        let finite = times.filter(\.isFinite)
        guard var lo = finite.min(), var hi = finite.max() else { return nil }
        if hi == lo { lo -= 30; hi += 30 }  // one point: a minute either side, centred
        return (lo, hi)
    }

    /// The range of actual and predicted values, widened for the band only up to half that
    /// range again on each side: an interval still wide from warm-up should not flatten the data.
    private static func valueRange(actual: [Double?], predicted: [Double?]?, lower: [Double?]?, upper: [Double?]?) -> (lo: Double, hi: Double)? {
        var lo = Double.infinity
        var hi = -Double.infinity
        for v in actual + (predicted ?? []) { if let v { lo = min(lo, v); hi = max(hi, v) } }
        guard lo <= hi else { return nil }
        let span = max(hi - lo, abs(hi) * 1e-6, 1e-9)
        var bandLo = lo
        var bandHi = hi
        for v in lower ?? [] { if let v { bandLo = min(bandLo, v) } }
        for v in upper ?? [] { if let v { bandHi = max(bandHi, v) } }
        lo = max(bandLo, lo - span / 2)
        hi = min(bandHi, hi + span / 2)
        if hi - lo < span { lo -= span / 2; hi += span / 2 }  // flat series: give it some height
        let pad = (hi - lo) * 0.04
        return (lo - pad, hi + pad)
    }

    /// Contiguous non-nil runs as pixel points.
    private static func runs(_ values: [Double?], times: [Double], scale: PlotScale) -> [[(Double, Double)]] {
        var result: [[(Double, Double)]] = []
        var current: [(Double, Double)] = []
        for i in values.indices {
            if let v = values[i] {
                current.append((scale.x(times[i]), scale.y(v)))
            } else if !current.isEmpty {
                result.append(current)
                current = []
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }

    /// Per pixel column, the min and max in the order they occur, so spikes survive and the line
    /// keeps its direction; a column with no values breaks the line.
    private static func envelopeRuns(_ values: [Double?], times: [Double], scale: PlotScale, columns: Int) -> [[(Double, Double)]] {
        var buckets = [Bucket?](repeating: nil, count: columns)
        for i in values.indices {
            guard let v = values[i] else { continue }
            let c = scale.column(times[i], columns: columns)
            if buckets[c] == nil { buckets[c] = Bucket(minIndex: i, min: v, maxIndex: i, max: v) } else { buckets[c]!.add(i, v) }
        }
        var result: [[(Double, Double)]] = []
        var current: [(Double, Double)] = []
        for c in 0..<columns {
            guard let b = buckets[c] else {
                if !current.isEmpty { result.append(current); current = [] }
                continue
            }
            let x = scale.frame.left + Double(c) + 0.5
            if b.minIndex == b.maxIndex {
                current.append((x, scale.y(b.min)))
            } else if b.minIndex < b.maxIndex {
                current.append((x, scale.y(b.min)))
                current.append((x, scale.y(b.max)))
            } else {
                current.append((x, scale.y(b.max)))
                current.append((x, scale.y(b.min)))
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }

    private struct Bucket {
        var minIndex: Int, min: Double, maxIndex: Int, max: Double
        mutating func add(_ i: Int, _ v: Double) {
            if v < min { min = v; minIndex = i }
            if v > max { max = v; maxIndex = i }
        }
    }

    private struct Band { var upper: [(Double, Double)] = []; var lower: [(Double, Double)] = [] }

    private static func bands(lower: [Double?], upper: [Double?], times: [Double], scale: PlotScale) -> [Band] {
        var result: [Band] = []
        var current = Band()
        for i in times.indices {
            if let lo = lower[i], let hi = upper[i] {
                let x = scale.x(times[i])
                current.upper.append((x, scale.y(hi)))
                current.lower.append((x, scale.y(lo)))
            } else if !current.upper.isEmpty {
                result.append(current)
                current = Band()
            }
        }
        if !current.upper.isEmpty { result.append(current) }
        return result
    }

    private static func envelopeBands(lower: [Double?], upper: [Double?], times: [Double], scale: PlotScale, columns: Int) -> [Band] {
        var lowest = [Double?](repeating: nil, count: columns)
        var highest = [Double?](repeating: nil, count: columns)
        for i in times.indices {
            guard let lo = lower[i], let hi = upper[i] else { continue }
            let c = scale.column(times[i], columns: columns)
            lowest[c] = min(lowest[c] ?? lo, lo)
            highest[c] = max(highest[c] ?? hi, hi)
        }
        var result: [Band] = []
        var current = Band()
        for c in 0..<columns {
            if let lo = lowest[c], let hi = highest[c] {
                let x = scale.frame.left + Double(c) + 0.5
                current.upper.append((x, scale.y(hi)))
                current.lower.append((x, scale.y(lo)))
            } else if !current.upper.isEmpty {
                result.append(current)
                current = Band()
            }
        }
        if !current.upper.isEmpty { result.append(current) }
        return result
    }
}

/// Pixel geometry of the chart: margins around the plot area.
struct PlotFrame {
    var width: Double
    var height: Double
    var left: Double
    var right: Double
    var top = 44.0
    var bottom: Double

    init(width: Double, height: Double, hasValueLabel: Bool) {
        self.width = width
        self.height = height
        left = hasValueLabel ? 84 : 66
        right = width - 20
        bottom = height - 56
    }

    var plotWidth: Double { right - left }
    var plotHeight: Double { bottom - top }
}

struct PlotScale {
    var frame: PlotFrame
    var t0: Double, t1: Double, v0: Double, v1: Double

    func x(_ t: Double) -> Double { frame.left + (t - t0) / (t1 - t0) * frame.plotWidth }
    func y(_ v: Double) -> Double { frame.bottom - (v - v0) / (v1 - v0) * frame.plotHeight }

    func column(_ t: Double, columns: Int) -> Int {
        let c = Int(((t - t0) / (t1 - t0) * Double(columns)).rounded(.down))
        return min(max(c, 0), columns - 1)
    }
}

/// Accumulates SVG markup; escapes text content.
struct SVGWriter {
    private var out: String

    init(width: Int, height: Int) {
        out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        out += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n"
    }

    mutating func raw(_ s: String) { out += s }

    mutating func text(_ s: String, x: Double, y: Double, attributes: String) {
        out += "<text x=\"\(px(x))\" y=\"\(px(y))\" \(attributes)>\(Self.escape(s))</text>\n"
    }

    mutating func polyline(_ runs: [[(Double, Double)]], color: String, width: Double) {
        guard !runs.isEmpty else { return }
        out += "<path fill=\"none\" stroke=\"\(color)\" stroke-width=\"\(width)\" stroke-linejoin=\"round\" d=\""
        for run in runs {
            out += "M"
            var first = true
            for (x, y) in run {
                if !first { out += " " }
                first = false
                out += px(x)
                out += ","
                out += px(y)
            }
            // A lone point between gaps would be invisible as a zero-length path.
            if run.count == 1 { out += "h0.01" }
        }
        out += "\"/>\n"
    }

    mutating func finish() -> String {
        out += "</svg>\n"
        return out
    }

    static func escape(_ s: String) -> String {
        var r = ""
        r.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": r += "&amp;"
            case "<": r += "&lt;"
            case ">": r += "&gt;"
            case "\"": r += "&quot;"
            // XML 1.0 forbids most control characters even when escaped.
            case "\t", "\n", "\r": r.unicodeScalars.append(c)
            case _ where c.value < 0x20: r += "\u{FFFD}"
            default: r.unicodeScalars.append(c)
            }
        }
        return r
    }
}

/// Pixel coordinate with one decimal: sub-pixel enough, and half the bytes of full precision.
func px(_ v: Double) -> String {
    guard v.isFinite else { return "0" }
    let tenths = Int((v * 10).rounded())
    let whole = tenths / 10
    let frac = abs(tenths % 10)
    let sign = tenths < 0 && whole == 0 ? "-" : ""
    return frac == 0 ? "\(sign)\(whole)" : "\(sign)\(whole).\(frac)"
}
