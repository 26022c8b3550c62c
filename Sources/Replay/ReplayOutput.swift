import Forecast
import Foundation

/// The per-row output CSV: `series,timestamp,actual,predicted,lower,upper,anomaly_score,is_anomaly,reason`,
/// one row per input row in input order. Numbers use Swift's shortest round-trip form, so the
/// same run always writes the same bytes.
public enum ReplayOutput {
    public static let header = "series,timestamp,actual,predicted,lower,upper,anomaly_score,is_anomaly,reason"

    public static func csv(rows: [ReplayRow], results: [ReplayResult]) -> String {
        var out = header + "\n"
        out.reserveCapacity(rows.count * 80)
        for (r, res) in zip(rows, results) {
            out += field(r.series) + "," + field(r.timeText) + "," + number(r.value) + ","
            out += number(res.predicted) + "," + number(res.lower) + "," + number(res.upper) + ","
            out += number(res.anomalyScore) + "," + (res.isAnomaly ? "1" : "0") + "," + (res.reason?.rawValue ?? "") + "\n"
        }
        return out
    }

    static func number(_ v: Double?) -> String {
        guard let v, v.isFinite else { return "" }
        return "\(v)"
    }

    static func field(_ s: String) -> String {
        guard s.contains(where: { $0 == "," || $0 == "\"" || $0 == "\n" || $0 == "\r" }) else { return s }
        return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }

    public static let pathsHeader = "series,issued_at,timestamp,step,predicted,lower,upper,actual"

    /// One row per issued path step (`--output-paths`), times in UTC ISO 8601.
    public static func pathsCSV(_ rows: [HorizonAccuracy.Row]) -> String {
        var out = pathsHeader + "\n"
        out.reserveCapacity(rows.count * 90)
        for r in rows {
            out += field(r.series) + "," + TimestampParser.format(r.issuedAt) + "," + TimestampParser.format(r.time) + "," + String(r.step) + ","
            out += number(r.predicted) + "," + number(r.lower) + "," + number(r.upper) + "," + number(r.actual) + "\n"
        }
        return out
    }
}
