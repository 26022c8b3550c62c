import Forecast
import Foundation

/// Runs rows through the stream session — the same code path as the daemon, trained inline so
/// that a backtest is reproducible — and collects what a report needs.
public struct ReplayRunner {
    public let config: EngineConfig

    public init(config: EngineConfig) {
        self.config = config
    }

    public struct Outcome: Sendable {
        public var results: [ReplayResult]
        public var report: ReplayReport
        public var retrains: [RetrainRecord]
        /// Every issued path step with its actual (horizon > 1 and `keepPaths` only).
        public var paths: [HorizonAccuracy.Row] = []
    }

    /// Rows are fed in input order in chunks; the engine's rounds make a chunk equal to
    /// one-by-one arrival, so the chunk size only affects how often progress is shown.
    public func run(_ rows: [ReplayRow], keepPaths: Bool = false, progress: ((Int) -> Void)? = nil) throws -> Outcome {
        let started = DispatchTime.now().uptimeNanoseconds
        let session = try StreamSession(config: config, training: .inline)
        var results: [ReplayResult] = []
        results.reserveCapacity(rows.count)
        var accuracy = AccuracyAccumulator()
        var perSeries: [String: AccuracyAccumulator] = [:]
        var bad: [RowIssue: Int] = [:]
        var anomalies = 0
        var retrains: [RetrainRecord] = []
        var horizon = config.horizon > 1 ? HorizonAccuracy(horizon: config.horizon, keepRows: keepPaths) : nil
        let chunk = 256
        var start = 0
        while start < rows.count {
            let end = min(rows.count, start + chunk)
            let batch = session.process(rows[start..<end].map(\.row))
            for r in batch.rows {
                results.append(ReplayResult(predicted: r.forecast?.value, lower: r.forecast?.lower, upper: r.forecast?.upper,
                                            anomalyScore: r.anomalyScore, isAnomaly: r.isAnomaly, reason: r.reason, issue: r.issue))
            }
            for c in batch.completed {
                accuracy.add(c)
                perSeries[c.series, default: AccuracyAccumulator()].add(c)
                if c.isAnomaly { anomalies += 1 }
            }
            for r in batch.rejections { bad[r.issue, default: 0] += 1 }
            horizon?.add(batch)
            retrains += batch.retrains
            start = end
            progress?(end)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let m = accuracy.metrics
        let report = ReplayReport(
            mae: m.mae, rmse: m.rmse, mase: m.mase, smape: m.smape, intervalCoverage: m.coverage,
            anomalies: anomalies, points: rows.count, predictedPoints: m.count, seconds: seconds,
            trainSeconds: session.engine.trainSeconds, predictSeconds: session.engine.predictSeconds,
            badRows: Dictionary(uniqueKeysWithValues: bad.map { ($0.key.rawValue, $0.value) }), retrains: retrains.count,
            rejectedRetrains: retrains.filter { !$0.accepted }.count,
            perSeries: perSeries.mapValues(\.metrics),
            horizons: horizon?.steps.map(\.metrics) ?? [],
            baselines: horizon?.baselines.map { [$0.model.metrics, $0.persistence.metrics, $0.seasonalNaive.metrics] } ?? [])
        return Outcome(results: results, report: report, retrains: retrains, paths: horizon?.finish() ?? [])
    }
}

/// The numbers `--report` writes.
public struct ReplayReport: Sendable, Equatable {
    public var mae: Double?
    public var rmse: Double?
    public var mase: Double?
    public var smape: Double?
    public var intervalCoverage: Double?
    public var anomalies: Int
    public var points: Int
    public var predictedPoints: Int
    public var seconds: Double
    public var trainSeconds: Double
    public var predictSeconds: Double
    /// Rows that taught the model nothing, by reason: the names of forecast.status.bad_rows.
    public var badRows: [String: Int]
    public var retrains: Int
    public var rejectedRetrains: Int
    /// The same metrics per series: what forecast.accuracy shows for each series.
    public var perSeries: [String: AccuracyMetrics] = [:]
    /// With a horizon: the accuracy of steps 1...H of the issued paths.
    public var horizons: [AccuracyMetrics] = []
    /// Per step: the model, persistence and the seasonal naive over the same targets.
    public var baselines: [[AccuracyMetrics]] = []

    /// JSON object fields (nil metrics become null).
    public var fields: [String: JSONValue] {
        var f: [String: JSONValue] = [
            "mae": .number(mae), "rmse": .number(rmse), "mase": .number(mase), "smape": .number(smape),
            "interval_coverage": .number(intervalCoverage), "anomalies": .int(anomalies), "points": .int(points),
            "predicted_points": .int(predictedPoints), "seconds": .number(seconds),
            "train_seconds": .number(trainSeconds), "predict_seconds": .number(predictSeconds),
            "bad_rows": .object(badRows.mapValues { .int($0) }),
            "retrains": .int(retrains), "rejected_retrains": .int(rejectedRetrains),
            "series": .object(perSeries.mapValues { m in
                .object(["points": .int(m.count), "mae": .number(m.mae), "rmse": .number(m.rmse), "mase": .number(m.mase),
                         "smape": .number(m.smape), "interval_coverage": .number(m.coverage)])
            }),
        ]
        if !horizons.isEmpty {
            f["horizons"] = .array(horizons.enumerated().map { k, m in
                var o: [String: JSONValue] = ["step": .int(k + 1), "points": .int(m.count), "mae": .number(m.mae), "rmse": .number(m.rmse),
                                              "mase": .number(m.mase), "coverage": .number(m.coverage)]
                if k < baselines.count {
                    let b = baselines[k]
                    o["same_targets"] = .object(["points": .int(b[0].count), "mase": .number(b[0].mase),
                                                 "persistence_mase": .number(b[1].mase), "seasonal_naive_mase": .number(b[2].mase)])
                }
                return .object(o)
            })
        }
        return f
    }
}

/// A tiny JSON writer with sorted keys, so reports are byte-stable.
public indirect enum JSONValue: Sendable, Equatable {
    case number(Double?)
    case int(Int)
    case string(String)
    case bool(Bool)
    case array([JSONValue])
    case object([String: JSONValue])

    public func render(indent: Int = 0) -> String {
        let pad = String(repeating: " ", count: indent + 2), end = String(repeating: " ", count: indent)
        switch self {
        case .number(let d):
            guard let d, d.isFinite else { return "null" }
            return d == d.rounded() && abs(d) < 1e15 ? String(format: "%.1f", d) : "\(d)"
        case .int(let n): return String(n)
        case .bool(let b): return b ? "true" : "false"
        case .string(let s): return JSONValue.quote(s)
        case .array(let items):
            if items.isEmpty { return "[]" }
            return "[\n" + items.map { pad + $0.render(indent: indent + 2) }.joined(separator: ",\n") + "\n\(end)]"
        case .object(let o):
            if o.isEmpty { return "{}" }
            return "{\n" + o.keys.sorted().map { pad + JSONValue.quote($0) + ": " + o[$0]!.render(indent: indent + 2) }
                .joined(separator: ",\n") + "\n\(end)}"
        }
    }

    static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if u.value < 0x20 { out += String(format: "\\u%04x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out + "\""
    }
}
