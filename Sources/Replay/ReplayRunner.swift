import Forecast
import Foundation

/// Runs rows through the streaming engine — the same code path as the daemon, trained inline so
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
    }

    /// Rows are fed in input order in chunks; the engine's rounds make a chunk equal to
    /// one-by-one arrival, so the chunk size only affects how often progress is shown.
    public func run(_ rows: [ReplayRow], progress: ((Int) -> Void)? = nil) throws -> Outcome {
        let started = DispatchTime.now().uptimeNanoseconds
        let engine = try StreamingEngine(config: config, mode: .inline)
        var results = [ReplayResult](repeating: ReplayResult(predicted: nil, lower: nil, upper: nil, anomalyScore: 0, isAnomaly: false),
                                     count: rows.count)
        var accuracy = AccuracyAccumulator()
        var previous: [String: Double] = [:]
        var rejected: [String: Int] = [:]
        var anomalies = 0
        let chunk = 256
        var start = 0
        while start < rows.count {
            let end = min(rows.count, start + chunk)
            var batch: [Observation] = []
            var positions: [Int] = []
            for i in start..<end {
                let r = rows[i]
                if let why = r.skipped {
                    rejected[why, default: 0] += 1
                    continue
                }
                batch.append(Observation(series: r.series, time: r.time, value: r.value))
                positions.append(i)
            }
            let scored = engine.process(batch)
            for (k, s) in scored.enumerated() {
                let i = positions[k]
                if let why = s.rejected {
                    rejected[why.rawValue, default: 0] += 1
                    continue
                }
                let value = s.observation.value!
                if let f = s.forecast {
                    results[i] = ReplayResult(predicted: f.value, lower: f.lower, upper: f.upper,
                                              anomalyScore: s.anomalyScore, isAnomaly: s.isAnomaly)
                    accuracy.add(actual: value, predicted: f.value, lower: f.lower, upper: f.upper,
                                 previous: previous[s.observation.series])
                    if s.isAnomaly { anomalies += 1 }
                }
                previous[s.observation.series] = value
            }
            start = end
            progress?(end)
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - started) / 1e9
        let m = accuracy.metrics
        let report = ReplayReport(
            mae: m.mae, rmse: m.rmse, mase: m.mase, smape: m.smape, intervalCoverage: m.coverage,
            anomalies: anomalies, points: rows.count, predictedPoints: m.count, seconds: seconds,
            trainSeconds: engine.trainSeconds, predictSeconds: engine.predictSeconds,
            skippedRows: rejected, retrains: engine.allRetrains.count,
            rejectedRetrains: engine.allRetrains.filter { !$0.accepted }.count)
        return Outcome(results: results, report: report, retrains: engine.allRetrains)
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
    /// Rows that taught the model nothing, by reason (the reader's and the engine's).
    public var skippedRows: [String: Int]
    public var retrains: Int
    public var rejectedRetrains: Int

    /// JSON object fields (nil metrics become null).
    public var fields: [String: JSONValue] {
        [
            "mae": .number(mae), "rmse": .number(rmse), "mase": .number(mase), "smape": .number(smape),
            "interval_coverage": .number(intervalCoverage), "anomalies": .int(anomalies), "points": .int(points),
            "predicted_points": .int(predictedPoints), "seconds": .number(seconds),
            "train_seconds": .number(trainSeconds), "predict_seconds": .number(predictSeconds),
            "skipped_rows": .object(skippedRows.mapValues { .int($0) }),
            "retrains": .int(retrains), "rejected_retrains": .int(rejectedRetrains),
        ]
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
