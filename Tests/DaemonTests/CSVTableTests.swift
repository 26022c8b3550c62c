import Forecast
import Foundation
import Replay
import XCTest

final class CSVTableTests: XCTestCase {
    private let tv = CSVColumns(time: "t", value: "v")

    private func parse(_ text: String, _ columns: CSVColumns? = nil) throws -> CSVTable {
        try CSVTable.parse(text, path: "data.csv", columns: columns ?? tv)
    }

    private func fatal(_ text: String, _ columns: CSVColumns? = nil, file: StaticString = #filePath, line: UInt = #line) -> CSVError? {
        do {
            _ = try parse(text, columns)
            XCTFail("expected a fatal error", file: file, line: line)
            return nil
        } catch {
            return error as? CSVError
        }
    }

    // 2016-07-01T00:00:00Z
    private let july1 = 1_467_331_200.0

    func testSimpleFile() throws {
        let t = try parse("t,v\n2016-07-01 00:00:00,1.5\n2016-07-01 01:00:00,-2\n")
        XCTAssertEqual(t.header, ["t", "v"])
        XCTAssertEqual(t.series.count, 1)
        XCTAssertNil(t.series[0].name)
        XCTAssertEqual(t.series[0].times, [july1, july1 + 3600])
        XCTAssertEqual(t.series[0].values, [1.5, -2])
        XCTAssertEqual(t.series[0].lines, [2, 3])
        XCTAssertTrue(t.issues.isEmpty)
        XCTAssertEqual(t.recordCount, 2)
    }

    func testQuotedFieldsWithCommasNewlinesAndEscapedQuotes() throws {
        let text = "note,t,v\n\"a, b\",2016-07-01,1\n\"line one\nline \"\"two\"\"\",2016-07-02,2\n\"\",\"2016-07-03\",\"3\"\n"
        let t = try parse(text)
        XCTAssertEqual(t.series[0].values, [1, 2, 3])
        XCTAssertEqual(t.series[0].times, [july1, july1 + 86_400, july1 + 2 * 86_400])
        // The quoted newline makes the third record start on line 5, not 4.
        XCTAssertEqual(t.series[0].lines, [2, 3, 5])
        XCTAssertTrue(t.issues.isEmpty, "\(t.issues.summaryLines)")
    }

    func testQuotedSeriesNameWithEscapes() throws {
        let text = "t,name,v\n2016-07-01,\"say \"\"hi\"\", ok\",1\n"
        let t = try parse(text, CSVColumns(time: "t", value: "v", series: "name"))
        XCTAssertEqual(t.series.map(\.name), ["say \"hi\", ok"])
    }

    func testCRLFLineEndingsAndNoFinalNewline() throws {
        let t = try parse("t,v\r\n2016-07-01,1\r\n2016-07-02,2")
        XCTAssertEqual(t.series[0].values, [1, 2])
        XCTAssertEqual(t.series[0].lines, [2, 3])
    }

    func testBOMIsIgnoredAndDoesNotShiftColumns() throws {
        let bytes: [UInt8] = [0xEF, 0xBB, 0xBF] + Array("t,v\n2016-07-01,1\n2016-07-02,x\n".utf8)
        let t = try CSVTable.parse(bytes: bytes, path: "bom.csv", columns: tv)
        XCTAssertEqual(t.header, ["t", "v"])
        XCTAssertEqual(t.series[0].count, 2)
        let issue = try XCTUnwrap(t.issues.examples[.nonNumericValue]?.first)
        XCTAssertEqual(issue.line, 3)
        XCTAssertEqual(issue.column, 12)
    }

    func testUnknownColumnListsAvailableOnesAndNamesTheFile() throws {
        let error = try XCTUnwrap(fatal("date,HUFL,OT\n2016-07-01,1,2\n", CSVColumns(time: "date", value: "oil")))
        XCTAssertEqual(error.description, "data.csv:1:1: no value column named \"oil\"; available columns: date, HUFL, OT")
        XCTAssertFalse(error.description.contains("\n"))
    }

    func testColumnNamesMatchCaseInsensitivelyWhenUnambiguous() throws {
        let t = try parse("Date, OT\n2016-07-01,3\n", CSVColumns(time: "date", value: "ot"))
        XCTAssertEqual(t.series[0].values, [3])
    }

    func testValueProblemsBecomeGapsWithLineAndColumn() throws {
        let text = """
            t,v
            2016-07-01 00:00:00,1
            2016-07-01 01:00:00,abc
            2016-07-01 02:00:00,
            2016-07-01 03:00:00,NaN
            2016-07-01 04:00:00,inf
            2016-07-01 05:00:00,  -Infinity
            2016-07-01 06:00:00, 7.5 
            2016-07-01 07:00:00,1e999

            """
        let t = try parse(text)
        XCTAssertEqual(t.series[0].values, [1, nil, nil, nil, nil, nil, 7.5, nil])
        XCTAssertEqual(t.series[0].gapCount, 6)
        XCTAssertEqual(t.issues.count(of: .nonNumericValue), 1)
        XCTAssertEqual(t.issues.count(of: .nullValue), 1)
        XCTAssertEqual(t.issues.count(of: .nonFiniteValue), 4)
        let nonNumeric = try XCTUnwrap(t.issues.examples[.nonNumericValue]?.first)
        XCTAssertEqual(nonNumeric.line, 3)
        XCTAssertEqual(nonNumeric.column, 21)
        XCTAssertEqual(nonNumeric.description, "data.csv:3:21: non-numeric value \"abc\" (kept as a gap)")
        XCTAssertEqual(t.issues.firstLines(of: .nullValue), [4])
        XCTAssertEqual(t.issues.firstLines(of: .nonFiniteValue), [5, 6, 7, 9])
        XCTAssertEqual(t.issues.examples[.nullValue]?.first?.column, 21)
    }

    func testColumnCountsCharactersNotBytes() throws {
        let t = try parse("name,t,v\nü€,2016-07-01,x\n", CSVColumns(time: "t", value: "v"))
        XCTAssertEqual(t.issues.examples[.nonNumericValue]?.first?.column, 15)
    }

    func testDuplicateAndOutOfOrderTimestampsAreSkipped() throws {
        let text = "t,v\n2016-07-01,1\n2016-07-02,2\n2016-07-02,99\n2016-06-30,98\n2016-07-03,3\n"
        let t = try parse(text)
        XCTAssertEqual(t.series[0].values, [1, 2, 3])
        XCTAssertEqual(t.series[0].lines, [2, 3, 6])
        XCTAssertEqual(t.issues.firstLines(of: .duplicateTime), [4])
        XCTAssertEqual(t.issues.firstLines(of: .outOfOrderTime), [5])
        XCTAssertEqual(t.issues.examples[.duplicateTime]?.first?.column, 1)
        XCTAssertEqual(t.recordCount, 5)
        XCTAssertEqual(t.pointCount, 3)
    }

    func testBadTimestampAndWrongFieldCountAreSkipped() throws {
        let text = "x,t,v\n1,2016-07-01,1\n2,yesterday,2\n3,2016-02-30,3\n4,2016-07-02\n5,2016-07-03,5,extra\n6,2016-07-04,6\n"
        let t = try parse(text)
        XCTAssertEqual(t.series[0].values, [1, 6])
        XCTAssertEqual(t.issues.firstLines(of: .badTime), [3, 4])
        XCTAssertEqual(t.issues.examples[.badTime]?.first?.column, 3)
        XCTAssertEqual(t.issues.firstLines(of: .wrongFieldCount), [5, 6])
        XCTAssertEqual(t.issues.examples[.wrongFieldCount]?.first?.message, "expected 3 fields as in the header, found 2")
    }

    func testTextAfterClosingQuoteIsAMalformedRow() throws {
        let t = try parse("t,v\n2016-07-01,\"1\"2\n2016-07-02,2\n")
        XCTAssertEqual(t.series[0].values, [2])
        XCTAssertEqual(t.issues.firstLines(of: .malformedField), [2])
        XCTAssertEqual(t.issues.examples[.malformedField]?.first?.column, 12)
    }

    func testBlankLinesAreIgnored() throws {
        let t = try parse("\nt,v\n\n2016-07-01,1\n\n\n2016-07-02,2\n\n")
        XCTAssertEqual(t.series[0].values, [1, 2])
        XCTAssertEqual(t.series[0].lines, [4, 7])
        XCTAssertTrue(t.issues.isEmpty)
    }

    func testEmptyFileIsFatal() throws {
        XCTAssertEqual(fatal("")?.description, "data.csv:1:1: file is empty; expected a header row naming the columns")
        XCTAssertNotNil(fatal("\n\n"))
    }

    func testHeaderOnlyGivesZeroPoints() throws {
        let t = try parse("t,v\n")
        XCTAssertEqual(t.pointCount, 0)
        XCTAssertEqual(t.recordCount, 0)
        XCTAssertEqual(t.series.count, 1)
        XCTAssertEqual(t.series[0].count, 0)
        let noNewline = try parse("t,v")
        XCTAssertEqual(noNewline.pointCount, 0)
    }

    func testUnterminatedQuoteIsFatalAtTheOpeningQuote() throws {
        let error = try XCTUnwrap(fatal("t,v\n2016-07-01,1\n2016-07-02,\"2\n2016-07-03,3\n"))
        XCTAssertEqual(error.line, 3)
        XCTAssertEqual(error.column, 12)
        XCTAssertTrue(error.description.hasPrefix("data.csv:3:12: unterminated quoted field"), error.description)
    }

    func testMissingFileIsFatal() throws {
        XCTAssertThrowsError(try CSVTable.read(path: "/nonexistent/x.csv", columns: tv)) { error in
            XCTAssertEqual("\(error)", "/nonexistent/x.csv: no such file")
        }
    }

    func testReadsAFileAndReportsProgress() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("csvtable-\(UUID().uuidString).csv")
        defer { try? FileManager.default.removeItem(at: url) }
        var text = "t,v\n"
        for i in 0..<10_000 { text += "\(1_467_331_200 + i * 60),\(i)\n" }
        try text.write(to: url, atomically: true, encoding: .utf8)
        var calls: [(Int, Int)] = []
        let t = try CSVTable.read(path: url.path, columns: tv) { calls.append(($0, $1)) }
        XCTAssertEqual(t.pointCount, 10_000)
        XCTAssertEqual(t.path, url.path)
        XCTAssertGreaterThanOrEqual(calls.count, 2)
        XCTAssertEqual(calls.last?.0, text.utf8.count)
        XCTAssertEqual(calls.last?.1, text.utf8.count)
    }

    func testTimestampFormats() throws {
        let rows: [(String, Double)] = [
            ("2016-07-01", july1),
            ("2016-07-01 00:00:01", july1 + 1),
            ("2016-07-01T00:00:02", july1 + 2),
            ("2016-07-01T00:00:03Z", july1 + 3),
            ("2016-07-01T00:00:04.25Z", july1 + 4.25),
            ("2016-07-01T02:00:05+02:00", july1 + 5),
            ("2016-06-30T23:00:06-0100", july1 + 6),
            ("2016-07-01 00:01", july1 + 60),
            ("2016/07/01 00:02:00", july1 + 120),
            ("1467331500", july1 + 300),
            ("1467331800.5", july1 + 600.5),
            ("2016-07-01T00:11:00.123456+00:00", july1 + 660.123456),
        ]
        let text = "t,v\n" + rows.map { "\($0.0),1" }.joined(separator: "\n")
        let t = try parse(text)
        XCTAssertTrue(t.issues.isEmpty, "\(t.issues.summaryLines)")
        XCTAssertEqual(t.series[0].count, rows.count)
        for (got, want) in zip(t.series[0].times, rows) { XCTAssertEqual(got, want.1, accuracy: 1e-6, want.0) }
    }

    func testOldAndLeapDates() throws {
        let t = try parse("t,v\n1969-12-31T23:59:59Z,1\n2000-02-29,2\n2024-12-31T23:59:59,3\n")
        XCTAssertEqual(t.series[0].times, [-1, 951_782_400, 1_735_689_599])
    }

    func testSeriesColumnGroupsAndChecksOrderPerSeries() throws {
        let text = """
            host,t,v
            a,2016-07-01 00:00:00,1
            b,2016-07-01 00:00:00,10
            a,2016-07-01 01:00:00,2
            b,2016-07-01 00:00:00,11
            b,2016-07-01 02:00:00,12
            a,2016-07-01 00:30:00,3
            """
        let t = try parse(text, CSVColumns(time: "t", value: "v", series: "host"))
        XCTAssertEqual(t.series.map(\.name), ["a", "b"])
        XCTAssertEqual(t.series[0].values, [1, 2])
        XCTAssertEqual(t.series[1].values, [10, 12])
        XCTAssertEqual(t.issues.firstLines(of: .duplicateTime), [5])
        XCTAssertEqual(t.issues.firstLines(of: .outOfOrderTime), [7])
        XCTAssertTrue(t.issues.examples[.duplicateTime]![0].message.contains("series \"b\""))
    }

    func testStreamingReaderYieldsPointsInFileOrder() throws {
        var reader = try CSVPointReader(bytes: Array("s,t,v\nx,2016-07-01,1\ny,2016-07-01,2\nx,2016-07-02,\n".utf8),
                                        path: "d.csv", columns: CSVColumns(time: "t", value: "v", series: "s"))
        var points: [CSVPoint] = []
        while let p = try reader.next() { points.append(p) }
        XCTAssertEqual(points.map(\.seriesIndex), [0, 1, 0])
        XCTAssertEqual(points.map(\.value), [1, 2, nil])
        XCTAssertEqual(reader.seriesNames, ["x", "y"])
        XCTAssertEqual(reader.bytesConsumed, reader.totalBytes)
    }

    func testSummaryAndWarning() throws {
        var text = "t,v\n"
        for i in 0..<8 { text += "2016-07-0\(i + 1),\(i == 0 ? "1" : "bad")\n" }
        let t = try parse(text)
        XCTAssertEqual(t.issues.count(of: .nonNumericValue), 7)
        XCTAssertEqual(t.issues.firstLines(of: .nonNumericValue), [3, 4, 5, 6, 7])
        XCTAssertEqual(t.issues.summaryLines, ["7 non-numeric values, kept as gaps (lines 3, 4, 5, 6, 7, …)"])
        XCTAssertEqual(t.issues.warning(path: "data.csv"), "data.csv: 7 non-numeric values, kept as gaps (lines 3, 4, 5, 6, 7, …)")
    }

    func testHundredThousandRowsIsFast() throws {
        var text = "date,a,b,c,OT\n"
        text.reserveCapacity(5_000_000)
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyy-MM-dd HH:mm:ss"
        for i in 0..<100_000 {
            let date = formatter.string(from: Date(timeIntervalSince1970: july1 + Double(i) * 3600))
            text += "\(date),1.25,2.5,\"3\",\(Double(i) * 0.5)\n"
        }
        let start = Date()
        let t = try parse(text, CSVColumns(time: "date", value: "OT"))
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(t.pointCount, 100_000)
        XCTAssertTrue(t.issues.isEmpty)
        XCTAssertEqual(t.series[0].values.last!, 49_999.5)
        // Generous: debug builds are several times slower than release.
        XCTAssertLessThan(elapsed, 5, "parsing 100k rows took \(elapsed) s")
    }
}

