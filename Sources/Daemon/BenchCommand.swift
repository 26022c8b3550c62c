import ArgumentParser
import Forecast
import Foundation

/// `forecastd bench train|infer`: throughput of the forecast core on synthetic windows, for
/// side-by-side comparison with anchors/torch_lstm_bench.py (same model shape and recipe).
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmark LSTM training and inference speed, and the memory each series needs.",
        subcommands: [BenchTrain.self, BenchInfer.self, BenchState.self, BenchRestart.self]
    )
}

struct BenchOptions: ParsableArguments {
    @Option(help: "Hidden size of every layer.") var hidden = 64
    @Option(help: "Number of stacked layers.") var layers = 2
    @Option(name: .customLong("seq-length"), help: "Window length.") var seqLength = 50
    @Option(name: .customLong("batch-size"), help: "Training batch size.") var batchSize = 32
    @Option(help: "Worker threads (batch shards).") var threads = 2
    @Option(help: "Seconds to measure (per repeat).") var seconds: Double = 5
    @Option(help: "Repeats; the median is reported.") var repeats = 5
    @Flag(help: "Print one JSON object as the last line.") var json = false

    var config: ModelConfig { ModelConfig(cell: .lstm, inputSize: 1, hiddenSizes: Array(repeating: hidden, count: layers)) }
}

/// Noisy-sine windows like the PyTorch anchor's synthetic_batches (values on a N(0,1)-ish scale).
private func syntheticWindows(count: Int, seqLength: Int, seed: UInt64) -> (x: [Float], y: [Float]) {
    var rng = SeededGenerator(seed: seed)
    var x = [Float](), y = [Float]()
    x.reserveCapacity(count * seqLength)
    for _ in 0..<count {
        let phase = Double(rng.nextUnitFloat()) * 6.283
        for t in 0...seqLength {
            let v = Float(sin(Double(t) * 0.1 + phase) + 0.1 * rng.nextGaussian())
            if t < seqLength { x.append(v) } else { y.append(v) }
        }
    }
    return (x, y)
}

private func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

func emit(_ fields: [String: Any], json: Bool) throws {
    if json {
        let data = try JSONSerialization.data(withJSONObject: fields, options: [.sortedKeys])
        print(String(decoding: data, as: UTF8.self))
    } else {
        for k in fields.keys.sorted() { print("\(k): \(fields[k]!)") }
    }
}

struct BenchTrain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train", abstract: "Training windows/s (Adam, MSE, clip 1.0).")
    @OptionGroup var options: BenchOptions

    func run() async throws {
        let o = options
        let model = try Model(config: o.config, seed: 0)
        let trainer = Trainer(model: model, optimizer: Adam(learningRate: 1e-3), maxGradNorm: 1.0, threads: o.threads, seed: 0)
        let nBatches = 16
        let data = syntheticWindows(count: nBatches * o.batchSize, seqLength: o.seqLength, seed: 1)
        let w = o.batchSize * o.seqLength
        let batches = (0..<nBatches).map { i in
            (Array(data.x[(i * w)..<((i + 1) * w)]), Array(data.y[(i * o.batchSize)..<((i + 1) * o.batchSize)]))
        }
        for i in 0..<20 { trainer.step(x: batches[i % nBatches].0, y: batches[i % nBatches].1, batch: o.batchSize, seqLength: o.seqLength) }
        var rates: [Double] = []
        var lastLoss: Float = 0
        for r in 0..<o.repeats {
            var steps = 0
            let t0 = now()
            var elapsed = 0.0
            while elapsed < o.seconds {
                let b = batches[steps % nBatches]
                lastLoss = trainer.step(x: b.0, y: b.1, batch: o.batchSize, seqLength: o.seqLength).loss
                steps += 1
                elapsed = now() - t0
            }
            rates.append(Double(steps * o.batchSize) / elapsed)
            if !o.json { print("repeat \(r): \(Int(rates.last!)) windows/s") }
        }
        try emit([
            "mode": "train", "hidden": o.hidden, "layers": o.layers, "seq_length": o.seqLength,
            "batch_size": o.batchSize, "threads": o.threads, "windows_per_second": median(rates),
            "repeats": rates, "skipped_steps": trainer.skippedSteps, "final_loss": Double(lastLoss),
        ], json: o.json)
    }
}

struct BenchInfer: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "infer", abstract: "Inference latency (batch 1) and throughput (batch 1024).")
    @OptionGroup var options: BenchOptions

    func run() async throws {
        let o = options
        let model = try Model(config: o.config, seed: 0)
        // Latency is measured on --threads cores like PyTorch's (one window's layers pipelined
        // over two threads), and on one thread for reference.
        let one = Predictor(model: model, threads: 1)
        let many = Predictor(model: model, threads: o.threads)
        let x1 = syntheticWindows(count: 1, seqLength: o.seqLength, seed: 2).x
        let big = 1024
        let xb = syntheticWindows(count: big, seqLength: o.seqLength, seed: 3).x
        var sink: Float = 0
        var out1 = [Float](repeating: 0, count: 1), outB = [Float](repeating: 0, count: big)
        /// Median of many single-window calls, in microseconds.
        func latency(_ p: Predictor, seconds: Double) -> Double {
            var ts: [Double] = []
            x1.withUnsafeBufferPointer { xp in
                out1.withUnsafeMutableBufferPointer { op in
                    for _ in 0..<200 { p.predict(xp, batch: 1, seqLength: o.seqLength, into: op) }
                    let t0 = now()
                    while now() - t0 < seconds || ts.count < 100 {
                        let a = now()
                        p.predict(xp, batch: 1, seqLength: o.seqLength, into: op)
                        ts.append((now() - a) * 1e6)
                        sink += op[0]
                    }
                }
            }
            return median(ts)
        }
        var latencies: [Double] = [], oneThread: [Double] = [], rates: [Double] = []
        for r in 0..<o.repeats {
            latencies.append(latency(many, seconds: o.seconds * 0.4))
            oneThread.append(latency(one, seconds: o.seconds * 0.1))
            // Throughput at batch 1024.
            var calls = 0
            let t1 = now()
            var elapsed = 0.0
            xb.withUnsafeBufferPointer { xp in
                outB.withUnsafeMutableBufferPointer { op in
                    while elapsed < o.seconds / 2 || calls < 3 {
                        many.predict(xp, batch: big, seqLength: o.seqLength, into: op)
                        calls += 1
                        elapsed = now() - t1
                    }
                    sink += op[0]
                }
            }
            rates.append(Double(calls * big) / elapsed)
            if !o.json {
                print("repeat \(r): \(latencies.last!) us (batch 1; \(oneThread.last!) us on one thread), \(Int(rates.last!)) windows/s (batch \(big))")
            }
        }
        try emit([
            "mode": "infer", "hidden": o.hidden, "layers": o.layers, "seq_length": o.seqLength,
            "threads": o.threads, "latency_us_batch1": median(latencies),
            "windows_per_second_batch1024": median(rates), "latency_repeats": latencies,
            "latency_us_batch1_one_thread": median(oneThread),
            "throughput_repeats": rates, "checksum": Double(sink.isFinite ? 1 : 0),
        ], json: o.json)
    }
}
