// Forecast accuracy metrics, accumulated one point at a time. The replay report computes them
// here from the stream's completed predictions; forecast.accuracy (sql/004_accuracy.sql) computes
// the same formulas in SQL from the same rows, which the daemon writes with the same previous
// actual (a test compares the two).

/// Accuracy of a forecast over some points: errors, scaled error, and interval coverage.
///
/// Every metric is `nil` when it is undefined for the points seen (no points, no previous
/// actuals, no intervals, or a persistence forecast with zero error), rather than NaN, so that
/// reports and JSON can print "n/a" instead of a number that looks like a result.
public struct AccuracyMetrics: Sendable, Equatable {
    /// Points that had a finite actual and a finite prediction.
    public var count: Int
    /// Mean absolute error.
    public var mae: Double?
    /// Root mean squared error.
    public var rmse: Double?
    /// MAE divided by the MAE of the persistence forecast (predict x[t-1]) on the same points:
    /// below 1 means better than repeating the last value.
    public var mase: Double?
    /// Symmetric mean absolute percentage error, in percent (0...200).
    public var smape: Double?
    /// Fraction (0...1) of points with an interval whose interval contains the actual.
    public var coverage: Double?
    /// Points that had both interval bounds, i.e. the denominator of `coverage`.
    public var intervalCount: Int
}

/// One scored point, for computing metrics from an array in one call.
public struct AccuracyPoint: Sendable, Equatable {
    public var actual: Double
    public var predicted: Double
    public var lower: Double?
    public var upper: Double?
    public var previous: Double?

    public init(actual: Double, predicted: Double, lower: Double? = nil, upper: Double? = nil, previous: Double? = nil) {
        self.actual = actual
        self.predicted = predicted
        self.lower = lower
        self.upper = upper
        self.previous = previous
    }
}

/// Running sums for `AccuracyMetrics`. Adding a point is O(1); reading a metric is O(1).
///
/// Points whose actual or prediction is not finite are ignored (counted in `ignoredCount`):
/// a gap in the data is not an error of the model. An interval or a previous actual that is
/// missing or not finite only removes the point from coverage or MASE respectively.
public struct AccuracyAccumulator: Sendable, Equatable {
    public private(set) var count = 0
    public private(set) var ignoredCount = 0
    public private(set) var intervalCount = 0
    public private(set) var coveredCount = 0

    private var sumAbsError = 0.0
    private var sumSquaredError = 0.0
    private var sumSMAPETerms = 0.0
    // MASE compares like with like: both MAEs over only the points that have a previous actual.
    private var scaledCount = 0
    private var sumAbsErrorScaled = 0.0
    private var sumAbsNaiveError = 0.0

    public init() {}

    public mutating func add(actual: Double, predicted: Double, lower: Double? = nil, upper: Double? = nil, previous: Double? = nil) {
        guard actual.isFinite, predicted.isFinite else {
            ignoredCount += 1
            return
        }
        let error = actual - predicted
        let absError = abs(error)
        count += 1
        sumAbsError += absError
        sumSquaredError += error * error

        let denominator = abs(actual) + abs(predicted)
        // Both zero means a perfect forecast of zero; counting it as 0 keeps sMAPE finite.
        if denominator > 0 { sumSMAPETerms += 2 * absError / denominator }

        if let previous, previous.isFinite {
            scaledCount += 1
            sumAbsErrorScaled += absError
            sumAbsNaiveError += abs(actual - previous)
        }
        if let lower, let upper, !lower.isNaN, !upper.isNaN {
            intervalCount += 1
            if lower <= actual && actual <= upper { coveredCount += 1 }
        }
    }

    /// A completed prediction of the stream, against the series' previous actual.
    public mutating func add(_ c: StreamBatch.Completed) {
        add(actual: c.actual, predicted: c.forecast.value, lower: c.forecast.lower, upper: c.forecast.upper,
            previous: c.previousActual)
    }

    public mutating func add(_ point: AccuracyPoint) {
        add(actual: point.actual, predicted: point.predicted, lower: point.lower, upper: point.upper, previous: point.previous)
    }

    /// Combines the sums of two disjoint sets of points (e.g. per-series into overall).
    public mutating func merge(_ other: AccuracyAccumulator) {
        count += other.count
        ignoredCount += other.ignoredCount
        intervalCount += other.intervalCount
        coveredCount += other.coveredCount
        sumAbsError += other.sumAbsError
        sumSquaredError += other.sumSquaredError
        sumSMAPETerms += other.sumSMAPETerms
        scaledCount += other.scaledCount
        sumAbsErrorScaled += other.sumAbsErrorScaled
        sumAbsNaiveError += other.sumAbsNaiveError
    }

    public var mae: Double? { count > 0 ? sumAbsError / Double(count) : nil }

    public var rmse: Double? { count > 0 ? (sumSquaredError / Double(count)).squareRoot() : nil }

    public var mase: Double? {
        // A constant series makes persistence perfect; any ratio against zero is meaningless.
        guard scaledCount > 0, sumAbsNaiveError > 0 else { return nil }
        return sumAbsErrorScaled / sumAbsNaiveError
    }

    public var smape: Double? { count > 0 ? 100 * sumSMAPETerms / Double(count) : nil }

    public var coverage: Double? { intervalCount > 0 ? Double(coveredCount) / Double(intervalCount) : nil }

    public var metrics: AccuracyMetrics {
        AccuracyMetrics(count: count, mae: mae, rmse: rmse, mase: mase, smape: smape, coverage: coverage, intervalCount: intervalCount)
    }
}

extension AccuracyMetrics {
    public init<S: Sequence>(_ points: S) where S.Element == AccuracyPoint {
        var accumulator = AccuracyAccumulator()
        for point in points { accumulator.add(point) }
        self = accumulator.metrics
    }
}
