import Foundation
@testable import Replay
import XCTest

#if canImport(FoundationXML)
import FoundationXML
#endif

final class SVGPlotTests: XCTestCase {
    private let july1 = 1_467_331_200.0

    private func assertWellFormed(_ svg: String, file: StaticString = #filePath, line: UInt = #line) {
        let parser = XMLParser(data: Data(svg.utf8))
        XCTAssertTrue(parser.parse(), "not well-formed XML: \(String(describing: parser.parserError))", file: file, line: line)
        XCTAssertFalse(svg.contains("nan") || svg.contains("inf"), "non-finite coordinate in SVG", file: file, line: line)
    }

    private func occurrences(_ needle: String, in s: String) -> Int { s.components(separatedBy: needle).count - 1 }

    /// The `d` attribute of the path stroked in `color`.
    private func pathData(stroke color: String, in svg: String) -> String? {
        guard let r = svg.range(of: "stroke=\"\(color)\"[^>]* d=\"[^\"]*\"", options: .regularExpression) else { return nil }
        let tag = String(svg[r])
        return tag.components(separatedBy: " d=\"").last.map { String($0.dropLast()) }
    }

    private func sine(_ n: Int, step: Double = 3600) -> PlotData {
        let times = (0..<n).map { july1 + Double($0) * step }
        let actual: [Double?] = (0..<n).map { sin(Double($0) / 10) * 10 + 20 }
        let predicted: [Double?] = [nil] + actual.dropLast()
        return PlotData(times: times, actual: actual, predicted: predicted,
                        lower: predicted.map { $0.map { $0 - 3 } }, upper: predicted.map { $0.map { $0 + 3 } },
                        isAnomaly: (0..<n).map { $0 % 50 == 7 })
    }

    func testSmallPlotHasAllParts() throws {
        let svg = SVGPlot(title: "CPU <host \"a\" & b>", valueLabel: "percent").render(sine(200))
        assertWellFormed(svg)
        XCTAssertTrue(svg.hasPrefix("<?xml"))
        XCTAssertTrue(svg.contains("CPU &lt;host &quot;a&quot; &amp; b&gt;"))
        XCTAssertTrue(svg.contains(">percent</text>"))
        for legend in ["actual", "predicted", "prediction interval", "anomaly"] {
            XCTAssertTrue(svg.contains(">\(legend)</text>"), legend)
        }
        // Anomalies at i = 7, 57, 107, 157, plus one legend dot.
        XCTAssertEqual(occurrences("<circle", in: svg), 5)
        XCTAssertTrue(svg.contains("fill-opacity=\"0.2\""), "interval band")
        XCTAssertTrue(svg.contains(">UTC</text>"))
    }

    func testLegendOmitsWhatIsNotThere() {
        let svg = SVGPlot(title: "t").render(PlotData(times: [july1, july1 + 60], actual: [1, 2]))
        assertWellFormed(svg)
        XCTAssertTrue(svg.contains(">actual</text>"))
        XCTAssertFalse(svg.contains(">predicted</text>"))
        XCTAssertFalse(svg.contains(">anomaly</text>"))
    }

    func testGapsBreakTheLine() throws {
        let data = PlotData(times: (0..<6).map { july1 + Double($0) * 60 }, actual: [1, 2, nil, 4, .nan, 6])
        let svg = SVGPlot(title: "gaps").render(data)
        assertWellFormed(svg)
        let d = try XCTUnwrap(pathData(stroke: "#1f77b4", in: svg))
        XCTAssertEqual(occurrences("M", in: d), 3, d)  // [1,2] [4] [6]
    }

    func testLongSeriesIsDownsampledAndStaysSmall() throws {
        let data = sine(200_000, step: 60)
        let svg = SVGPlot(title: "long", width: 1200).render(data)
        assertWellFormed(svg)
        XCTAssertLessThan(svg.utf8.count, 300_000, "SVG is \(svg.utf8.count) bytes")
        let d = try XCTUnwrap(pathData(stroke: "#1f77b4", in: svg))
        let points = occurrences(",", in: d)
        XCTAssertLessThanOrEqual(points, 2 * 1200)
        XCTAssertGreaterThan(points, 1000)
        XCTAssertTrue(svg.contains("min/max envelope"))
    }

    func testEnvelopeKeepsASingleSpike() throws {
        var actual: [Double?] = Array(repeating: 1, count: 50_000)
        actual[31_234] = 100
        let svg = SVGPlot(title: "spike").render(PlotData(times: (0..<50_000).map { Double($0) }, actual: actual))
        let d = try XCTUnwrap(pathData(stroke: "#1f77b4", in: svg))
        // The spike is the only point far above the baseline; its y is near the plot top (44).
        let ys = d.split(whereSeparator: { $0 == " " || $0 == "M" }).compactMap { Double($0.split(separator: ",").last ?? "") }
        XCTAssertEqual(ys.filter { $0 < 100 }.count, 1)
    }

    func testEmptyAndDegenerateInputs() {
        for data in [
            PlotData(times: [], actual: []),
            PlotData(times: [july1], actual: [nil]),
            PlotData(times: [july1], actual: [5]),
            PlotData(times: [july1, july1 + 1, july1 + 2], actual: [3, 3, 3], predicted: [3, 3, 3]),
        ] {
            let svg = SVGPlot(title: "edge").render(data)
            assertWellFormed(svg)
        }
        XCTAssertTrue(SVGPlot(title: "e").render(PlotData(times: [], actual: [])).contains("no data"))
    }

    func testHourlyTicksShowDatesWhereTheDayChanges() {
        let ticks = TimeAxis.ticks(start: july1 - 1800, end: july1 + 2 * 86_400, maxTicks: 10)
        XCTAssertEqual(ticks.first?.time, july1)
        XCTAssertEqual(ticks.first?.label, "00:00")
        XCTAssertEqual(ticks.first?.context, "Jul 1 2016")
        XCTAssertEqual(ticks.map(\.label).prefix(3), ["00:00", "06:00", "12:00"])
        XCTAssertEqual(ticks.compactMap(\.context), ["Jul 1 2016", "Jul 2", "Jul 3"])
    }

    func testMinuteTicks() {
        let ticks = TimeAxis.ticks(start: july1 + 7, end: july1 + 3600, maxTicks: 12)
        XCTAssertEqual(ticks.map(\.label), ["00:05", "00:10", "00:15", "00:20", "00:25", "00:30", "00:35", "00:40", "00:45", "00:50", "00:55", "01:00"])
    }

    func testMonthAndYearTicks() {
        let twoYears = TimeAxis.ticks(start: july1, end: july1 + 2 * 365 * 86_400, maxTicks: 8)
        XCTAssertEqual(twoYears.map(\.label), ["Jul", "Oct", "Jan", "Apr", "Jul", "Oct", "Jan", "Apr", "Jul"])
        XCTAssertEqual(twoYears.compactMap(\.context), ["2016", "2017", "2018"])
        let decades = TimeAxis.ticks(start: 0, end: 40 * 365.25 * 86_400, maxTicks: 10)
        XCTAssertEqual(decades.map(\.label), ["1970", "1975", "1980", "1985", "1990", "1995", "2000", "2005", "2010"])
    }

    func testWeekTicksFallOnMondays() {
        let ticks = TimeAxis.ticks(start: july1, end: july1 + 60 * 86_400, maxTicks: 10)
        XCTAssertEqual(ticks.first?.label, "Jul 4")  // 2016-07-04 was a Monday
        for t in ticks { XCTAssertEqual(Int(t.time / 86_400 - 4) % 7, 0) }
    }

    func testNiceValueTicks() {
        let a = ValueAxis.ticks(min: 0.3, max: 9.7, target: 6)
        XCTAssertEqual(a.values, [2, 4, 6, 8])
        XCTAssertEqual(a.values.map { ValueAxis.format($0, step: a.step) }, ["2", "4", "6", "8"])
        let b = ValueAxis.ticks(min: -0.013, max: 0.021, target: 5)
        XCTAssertEqual(b.values.map { ValueAxis.format($0, step: b.step) }, ["-0.01", "0.00", "0.01", "0.02"])
        let c = ValueAxis.ticks(min: 0, max: 25_000, target: 6)
        XCTAssertEqual(c.values.map { ValueAxis.format($0, step: c.step) }, ["0", "5,000", "10,000", "15,000", "20,000", "25,000"])
    }
}
