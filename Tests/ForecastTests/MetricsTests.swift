import Forecast
import XCTest

final class MetricsTests: XCTestCase {
    // Four points worked by hand:
    //   actual predicted  interval   previous | |err| naive  sMAPE term      covered
    //   10     12         [9, 13]    8        | 2     2      2·2/22 = 2/11   yes
    //   20     15         [16, 24]   10       | 5     10     2·5/35 = 2/7    yes
    //   0      0          [1, 2]     20       | 0     20     0 (0/0 → 0)     no
    //   5      -5         [-10, 10]  0        | 10    5      2·10/10 = 2     yes
    private let handPoints = [
        AccuracyPoint(actual: 10, predicted: 12, lower: 9, upper: 13, previous: 8),
        AccuracyPoint(actual: 20, predicted: 15, lower: 16, upper: 24, previous: 10),
        AccuracyPoint(actual: 0, predicted: 0, lower: 1, upper: 2, previous: 20),
        AccuracyPoint(actual: 5, predicted: -5, lower: -10, upper: 10, previous: 0),
    ]

    func testHandComputedExample() throws {
        let m = AccuracyMetrics(handPoints)
        XCTAssertEqual(m.count, 4)
        XCTAssertEqual(try XCTUnwrap(m.mae), 17.0 / 4, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(m.rmse), (129.0 / 4).squareRoot(), accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(m.mase), 17.0 / 37, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(m.smape), 100 * (2.0 / 11 + 2.0 / 7 + 0 + 2) / 4, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(m.coverage), 0.75, accuracy: 1e-12)
        XCTAssertEqual(m.intervalCount, 4)
    }

    func testZeroOverZeroSMAPETermCountsAsZeroButStillCountsThePoint() throws {
        var acc = AccuracyAccumulator()
        acc.add(actual: 0, predicted: 0)
        acc.add(actual: 1, predicted: 3)  // 2·2/4 = 1
        XCTAssertEqual(try XCTUnwrap(acc.smape), 100 * (0 + 1) / 2, accuracy: 1e-12)
        XCTAssertEqual(acc.count, 2)
    }

    func testSMAPEIsBoundedBy200() throws {
        var acc = AccuracyAccumulator()
        acc.add(actual: 0, predicted: 7)
        acc.add(actual: -3, predicted: 0)
        XCTAssertEqual(try XCTUnwrap(acc.smape), 200, accuracy: 1e-12)
    }

    func testMASEUsesOnlyPointsWithAPreviousActual() throws {
        var acc = AccuracyAccumulator()
        acc.add(actual: 1, predicted: 2)  // no previous: in MAE, not in MASE
        acc.add(actual: 3, predicted: 3, previous: 1)  // |e| 0, naive 2
        acc.add(actual: 6, predicted: 4, previous: 3)  // |e| 2, naive 3
        XCTAssertEqual(try XCTUnwrap(acc.mae), 1, accuracy: 1e-12)
        XCTAssertEqual(try XCTUnwrap(acc.mase), 2.0 / 5, accuracy: 1e-12)
    }

    func testMASEOfPersistenceItselfIsOne() throws {
        let series: [Double] = [3, 5, 4, 8, 1, 1, 6]
        var acc = AccuracyAccumulator()
        for t in 1..<series.count { acc.add(actual: series[t], predicted: series[t - 1], previous: series[t - 1]) }
        XCTAssertEqual(try XCTUnwrap(acc.mase), 1, accuracy: 1e-12)
    }

    func testMASEIsUndefinedForAConstantSeries() {
        var acc = AccuracyAccumulator()
        acc.add(actual: 2, predicted: 2.5, previous: 2)
        acc.add(actual: 2, predicted: 1.5, previous: 2)
        XCTAssertNil(acc.mase)
        XCTAssertEqual(acc.mae, 0.5)
    }

    func testCoverageBoundsAreInclusiveAndMissingIntervalsAreNotCounted() throws {
        var acc = AccuracyAccumulator()
        acc.add(actual: 1, predicted: 1, lower: 1, upper: 2)  // on lower bound
        acc.add(actual: 2, predicted: 1, lower: 1, upper: 2)  // on upper bound
        acc.add(actual: 2.0000001, predicted: 1, lower: 1, upper: 2)  // just outside
        acc.add(actual: 5, predicted: 5)  // no interval
        acc.add(actual: 5, predicted: 5, lower: .nan, upper: 6)  // broken interval
        XCTAssertEqual(acc.intervalCount, 3)
        XCTAssertEqual(try XCTUnwrap(acc.coverage), 2.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(acc.count, 5)
    }

    func testEmptyAccumulatorHasNoMetrics() {
        let m = AccuracyAccumulator().metrics
        XCTAssertEqual(m.count, 0)
        XCTAssertNil(m.mae)
        XCTAssertNil(m.rmse)
        XCTAssertNil(m.mase)
        XCTAssertNil(m.smape)
        XCTAssertNil(m.coverage)
    }

    func testNonFiniteActualOrPredictionIsIgnored() throws {
        var acc = AccuracyAccumulator()
        acc.add(actual: .nan, predicted: 1, lower: 0, upper: 2, previous: 1)
        acc.add(actual: 1, predicted: .infinity)
        acc.add(actual: 4, predicted: 1, previous: .nan)
        XCTAssertEqual(acc.count, 1)
        XCTAssertEqual(acc.ignoredCount, 2)
        XCTAssertEqual(acc.mae, 3)
        XCTAssertNil(acc.mase)
        XCTAssertNil(acc.coverage)
    }

    func testMergeMatchesAddingEverythingToOne() {
        var whole = AccuracyAccumulator()
        for p in handPoints { whole.add(p) }
        var a = AccuracyAccumulator()
        var b = AccuracyAccumulator()
        for p in handPoints.prefix(1) { a.add(p) }
        for p in handPoints.dropFirst(1) { b.add(p) }
        a.merge(b)
        XCTAssertEqual(a.metrics.count, whole.metrics.count)
        XCTAssertEqual(a.mae!, whole.mae!, accuracy: 1e-12)
        XCTAssertEqual(a.rmse!, whole.rmse!, accuracy: 1e-12)
        XCTAssertEqual(a.mase!, whole.mase!, accuracy: 1e-12)
        XCTAssertEqual(a.smape!, whole.smape!, accuracy: 1e-12)
        XCTAssertEqual(a.coverage!, whole.coverage!, accuracy: 1e-12)
    }
}
