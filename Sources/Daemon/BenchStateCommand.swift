import ArgumentParser
import Forecast
import Foundation

/// `forecastd bench state`: the memory one series costs once every window of its state is full.
///
/// A daemon's memory grows with the series it follows, and a series' memory grows for weeks (the
/// contextual check keeps three weeks of values): a load test of a few hours never sees the
/// steady state. This streams synthetic series through the engine with the daemon's settings
/// until their state is full and reports it per series, so the RSS of N series can be computed
/// rather than waited for.
struct BenchState: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "state",
        abstract: "Memory per series at steady state (the daemon's engine settings, synthetic series).",
        discussion: """
            The model is made small (--hidden) because its size does not enter the per-series \
            state and it is shared by all series; everything else is the daemon's default. The \
            default of 7,600 points of 5-minute data fills every window: three weeks of values \
            for the contextual check and its 1,000 deviations.
            """)

    @Option(help: "Series streamed side by side.") var series = 1000
    @Option(help: "Points per series.") var points = 7600
    @Option(name: .customLong("step"), help: "Seconds between a series' points (sets the day length of the checks).") var stepSeconds = 300.0
    @Option(help: "Hidden size of the (shared) model.") var hidden = 8
    @Option(help: "Write each value with this many decimals, as a sensor or a price feed does (held in four bytes instead of eight); default: the full Double.")
    var decimals: Int?
    @Option(name: .customLong("project"), help: "Series to project the RSS for.") var projectSeries = 100_000
    @Flag(help: "Print one JSON object as the last line.") var json = false

    func run() async throws {
        guard series >= 1, points >= 1 else { throw ValidationError("--series and --points must be at least 1") }
        var config = DaemonConfig.defaultEngine
        config.hiddenSizes = [hidden]
        config.initialEpochs = 1
        config.maxTrainWindows = 2048
        // One training, at the warmup: retraining does not change what a series keeps.
        config.epochs = 0
        let rssBefore = residentBytes()
        let t0 = now()
        let (engine, flagged) = try steadyStateEngine(config: config, series: series, points: points, stepSeconds: stepSeconds,
                                                      decimals: decimals) { k in
            if !json && k % 1000 == 0 { print("\(k) points, \(String(format: "%.0f", now() - t0)) s") }
        }
        // What a checkpoint writes for these series (before PostgreSQL's lz4), and how long
        // encoding it takes: at steady state the checkpoint grows with the state.
        let trimmed = FreedMemory.release().after
        // The checkpoint's own memory at its peak: the resident high-water mark is reset first
        // (Linux's clear_refs 5), so it is this encoding's peak, not the run's.
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
        let encodeStart = now()
        let stateBytes = engine.encodedSnapshots().reduce(0) { $0 + $1.bytes.count }
        let encodeSeconds = now() - encodeStart
        let checkpointPeak = max(0, residentBytes(field: "VmHWM:") - trimmed)
        // As the running daemon does once a minute (`FreedMemoryService`).
        let (rssUntrimmed, rssAfter) = FreedMemory.release()
        // The daemon's checkpoint: the series taken as they are, encoded a part at a time (8 MB,
        // as stored) and each part let go. Idle, and with every series taking a point after
        // the state was taken and before it is encoded (the most that copy-on-write can cost:
        // each series copies the buffers that point changes).
        func streamed(touching: Bool, checkpoint: Bool = true) -> (peak: Int, seconds: Double) {
            let base = FreedMemory.release().after
            try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
            let start = now()
            var writers = checkpoint ? engine.stateWriters(threads: 1) : []
            if touching {
                let t = 1_700_000_000 + Double(points + (checkpoint ? 0 : 1)) * stepSeconds
                _ = engine.process((0..<series).map { Observation(series: "s\($0)", time: t, value: 100) })
            }
            for i in writers.indices { while writers[i].nextPart(limit: 8 << 20) != nil {} }
            let seconds = now() - start
            writers = []
            return (max(0, residentBytes(field: "VmHWM:") - base), seconds)
        }
        let idle = streamed(touching: false)
        let touched = streamed(touching: true)
        // The same point's own memory without a checkpoint, to tell the copies from it.
        let pointAlone = streamed(touching: true, checkpoint: false)
        let perSeries = Double(engine.seriesStateBytes) / Double(series)
        let rssPerSeries = Double(rssAfter - rssBefore) / Double(series)
        try emit([
            "mode": "state", "series": series, "decimals": decimals ?? -1, "points": points, "step_seconds": stepSeconds,
            "state_bytes_per_series": Int(perSeries.rounded()),
            "rss_bytes_per_series": Int(rssPerSeries.rounded()),
            "rss_before_mb": Double(rssBefore) / 1e6, "rss_untrimmed_mb": Double(rssUntrimmed) / 1e6, "rss_after_mb": Double(rssAfter) / 1e6,
            "projected_series": projectSeries,
            "projected_rss_mb": (Double(rssBefore) + rssPerSeries * Double(projectSeries)) / 1e6,
            "checkpoint_bytes_per_series": Int((Double(stateBytes) / Double(series)).rounded()),
            "projected_checkpoint_mb": Double(stateBytes) / Double(series) * Double(projectSeries) / 1e6,
            "encode_seconds": encodeSeconds,
            "checkpoint_rss_bytes_per_series": Int((Double(checkpointPeak) / Double(series)).rounded()),
            "checkpoint_peak_mb": Double(checkpointPeak) / 1e6,
            "streamed_checkpoint_peak_mb": Double(idle.peak) / 1e6,
            "streamed_checkpoint_seconds": idle.seconds,
            "streamed_checkpoint_every_series_touched_peak_mb": Double(touched.peak) / 1e6,
            "a_point_of_every_series_peak_mb": Double(pointAlone.peak) / 1e6,
            "flagged_points": flagged, "seconds": now() - t0,
        ], json: json)
    }
}

/// An engine whose `series` synthetic series (a noisy daily sine each, phases apart) have streamed
/// `points` points `stepSeconds` apart: with the defaults every window of their state is full.
/// `progress` gets the points streamed so far after each step.
func steadyStateEngine(config: EngineConfig, series: Int, points: Int, stepSeconds: Double, decimals: Int? = nil,
                       progress: (Int) -> Void = { _ in }) throws -> (engine: StreamingEngine, flagged: Int) {
    let engine = try StreamingEngine(config: config, mode: .inline)
    var rng = SeededGenerator(seed: 7)
    let phases = (0..<series).map { _ in Double(rng.nextUnitFloat()) * 6.283 }
    let day = 86_400.0
    var batch: [Observation] = []
    batch.reserveCapacity(series)
    var flagged = 0
    let power = decimals.map { pow(10, Double($0)) }
    for k in 0..<points {
        let t = 1_700_000_000 + Double(k) * stepSeconds
        batch.removeAll(keepingCapacity: true)
        for s in 0..<series {
            var v = 100 + 10 * sin(2 * .pi * t / day + phases[s]) + Double(rng.nextGaussian())
            // The Double nearest the decimal (division is correctly rounded), as parsing gives.
            if let p = power { v = (v * p).rounded() / p }
            batch.append(Observation(series: "s\(s)", time: t, value: v))
        }
        flagged += engine.process(batch).filter(\.isAnomaly).count
        progress(k + 1)
    }
    return (engine, flagged)
}
