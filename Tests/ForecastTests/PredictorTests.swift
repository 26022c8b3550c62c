import XCTest

@testable import Forecast

/// The inference paths of `Predictor` (batch-1 kernel, batched batch-in-lanes kernels, GRU via
/// the training workspace) against the training forward (`Workspace.forward`, which the golden
/// tests tie to PyTorch), for batch sizes around the chunk and vector boundaries.
final class PredictorTests: XCTestCase {
    private let batches = [1, 2, 3, 31, 64, 65, 1024]

    private func reference(_ model: Model, _ x: [Float], batch: Int, seqLength: Int) -> [Float] {
        let ws = Workspace(config: model.config, layout: model.layout)
        return model.parameters.withUnsafeBufferPointer { p in
            x.withUnsafeBufferPointer { xp in
                ws.forward(p.baseAddress!, x: xp.baseAddress!, batch: batch, seqLength: seqLength, dropoutRNG: nil)
                return Array(UnsafeBufferPointer(start: ws.pred.pointer, count: batch))
            }
        }
    }

    private func windows(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        return (0..<count).map { _ in Float(rng.nextGaussian()) }
    }

    private func check(_ config: ModelConfig, seqLength T: Int = 20, seed: UInt64 = 7,
                       file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try Model(config: config, seed: seed)
        let maxB = batches.max()!
        let x = windows(maxB * T * config.inputSize, seed: seed + 1)
        for threads in [1, 2] {
            let predictor = Predictor(model: model, threads: threads)
            for b in batches {
                let xs = Array(x[0..<(b * T * config.inputSize)])
                let expected = reference(model, xs, batch: b, seqLength: T).map(Double.init)
                let what = "\(config.cell) \(config.hiddenSizes) in \(config.inputSize), batch \(b), \(threads) threads"
                // Twice on one instance: reused buffers must not leak state between calls.
                for call in 0..<2 {
                    let got = predictor.predict(xs, batch: b, seqLength: T)
                    assertClose(got, expected, rel: 1e-5, "\(what), call \(call)", file: file, line: line)
                }
            }
        }
        // Model.predict (cached predictor) agrees as well.
        let xs = Array(x[0..<(65 * T * config.inputSize)])
        assertClose(model.predict(xs, batch: 65, seqLength: T),
                    reference(model, xs, batch: 65, seqLength: T).map(Double.init), rel: 1e-5,
                    "Model.predict \(config.cell) \(config.hiddenSizes)", file: file, line: line)
    }

    func testLSTM64x64() throws { try check(ModelConfig(cell: .lstm, inputSize: 1, hiddenSizes: [64, 64]), seqLength: 50) }
    func testLSTMTapering() throws { try check(ModelConfig(cell: .lstm, inputSize: 1, hiddenSizes: [16, 8, 4])) }
    func testLSTMInputSize2() throws { try check(ModelConfig(cell: .lstm, inputSize: 2, hiddenSizes: [32, 12])) }
    func testLSTMOddHidden() throws { try check(ModelConfig(cell: .lstm, inputSize: 3, hiddenSizes: [13])) }
    func testLSTMHidden1() throws { try check(ModelConfig(cell: .lstm, inputSize: 1, hiddenSizes: [1, 3])) }
    func testGRU() throws { try check(ModelConfig(cell: .gru, inputSize: 2, hiddenSizes: [16, 8])) }

    func testSeqLength1() throws {
        try check(ModelConfig(cell: .lstm, inputSize: 2, hiddenSizes: [8, 8]), seqLength: 1)
    }

    /// A layer with In + H > 1024 (the batched kernel's row table moves to the heap).
    func testWideLayer() throws {
        let model = try Model(config: ModelConfig(cell: .lstm, inputSize: 1, hiddenSizes: [520, 510]), seed: 5)
        let x = windows(9 * 3, seed: 6)
        for threads in [1, 2] {
            assertClose(Predictor(model: model, threads: threads).predict(x, batch: 9, seqLength: 3),
                        reference(model, x, batch: 9, seqLength: 3).map(Double.init), rel: 1e-5, "wide, \(threads) threads")
        }
    }

    /// Results do not depend on how many threads split the batch or where chunks end.
    func testThreadCountDoesNotChangeResults() throws {
        let model = try Model(config: ModelConfig(hiddenSizes: [64, 64]), seed: 3)
        let x = windows(1024 * 30, seed: 4)
        let one = Predictor(model: model, threads: 1).predict(x, batch: 1024, seqLength: 30)
        let two = Predictor(model: model, threads: 2).predict(x, batch: 1024, seqLength: 30)
        XCTAssertEqual(one, two)
    }

    /// The two-thread single-window path gives the one-thread result to the bit, call after
    /// call, whether its helper thread is still spinning or has gone to sleep in between.
    func testSingleWindowSplitMatchesOneThread() throws {
        let model = try Model(config: ModelConfig(hiddenSizes: [64, 64]), seed: 8)
        let one = Predictor(model: model, threads: 1)
        let two = Predictor(model: model, threads: 2)
        for call in 0..<40 {
            let x = windows(48, seed: UInt64(100 + call))
            XCTAssertEqual(two.predict(x, batch: 1, seqLength: 48), one.predict(x, batch: 1, seqLength: 48), "call \(call)")
            if call % 8 == 7 { usleep(3000) }  // let the helper fall asleep
        }
    }

    /// Two callers at once: one gets the shared helper thread, the other runs both halves
    /// itself; both get the exact one-thread results.
    func testSingleWindowConcurrentCallers() throws {
        let models = try (0..<2).map { try Model(config: ModelConfig(hiddenSizes: [64, 64]), seed: UInt64(20 + $0)) }
        let inputs = (0..<30).map { windows(48, seed: UInt64(200 + $0)) }
        let expected = models.map { m in inputs.map { Predictor(model: m, threads: 1).predict($0, batch: 1, seqLength: 48) } }
        let got = UnsafeMutablePointer<[[Float]]>.allocate(capacity: 2)
        got.initialize(repeating: [], count: 2)
        defer { got.deinitialize(count: 2); got.deallocate() }
        let slots = UncheckedSlots(got)
        DispatchQueue.concurrentPerform(iterations: 2) { w in
            let p = Predictor(model: models[w], threads: 2)
            slots.p[w] = inputs.map { p.predict($0, batch: 1, seqLength: 48) }
        }
        XCTAssertEqual(got[0], expected[0])
        XCTAssertEqual(got[1], expected[1])
    }
}

private struct UncheckedSlots: @unchecked Sendable {
    let p: UnsafeMutablePointer<[[Float]]>
    init(_ p: UnsafeMutablePointer<[[Float]]>) { self.p = p }
}
