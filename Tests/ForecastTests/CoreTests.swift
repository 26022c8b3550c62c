import Foundation
import XCTest

@testable import Forecast

final class SequenceTests: XCTestCase {
    func testWindowsAndTargets() throws {
        let (x, y) = try createSequences([1, 2, 3, 4, 5], seqLength: 2)
        XCTAssertEqual(x, [[1, 2], [2, 3], [3, 4]])
        XCTAssertEqual(y, [3, 4, 5])
        let flat = try createSequencesFlat([1, 2, 3, 4, 5], seqLength: 2)
        XCTAssertEqual(flat.x, [1, 2, 2, 3, 3, 4])
        XCTAssertEqual(flat.y, y)
        let one = try createSequences([7, 8], seqLength: 1)
        XCTAssertEqual(one.x, [[7]])
        XCTAssertEqual(one.y, [8])
    }

    func testEmptyWhenTooShort() throws {
        XCTAssertTrue(try createSequences([1, 2, 3], seqLength: 3).x.isEmpty)
        XCTAssertTrue(try createSequences([1, 2], seqLength: 5).y.isEmpty)
        XCTAssertTrue(try createSequences([], seqLength: 1).x.isEmpty)
    }

    func testInvalidLengthThrows() {
        XCTAssertThrowsError(try createSequences([1, 2, 3], seqLength: 0)) {
            XCTAssertEqual($0 as? ForecastError, .invalidSequenceLength(0))
        }
        XCTAssertThrowsError(try createSequencesFlat([1, 2, 3], seqLength: -2))
    }
}

final class ClipAndAdamTests: XCTestCase {
    func testClipScalesWithPyTorchEpsilon() {
        var g: [Float] = [3, 4]
        let n = clipGradNorm(&g, maxNorm: 1)
        XCTAssertEqual(n, 5)
        let coef = Float(1) / (5 + 1e-6)
        XCTAssertEqual(g, [3 * coef, 4 * coef])
    }

    func testClipLeavesSmallGradients() {
        var g: [Float] = [0.3, -0.4]
        XCTAssertEqual(clipGradNorm(&g, maxNorm: 1), 0.5, accuracy: 1e-7)
        XCTAssertEqual(g, [0.3, -0.4])
        // norm == maxNorm: coef = max/(norm + 1e-6) < 1, so PyTorch scales (by ~1 - 2e-7).
        var h: [Float] = [3, 4]
        clipGradNorm(&h, maxNorm: 5)
        XCTAssertLessThan(h[1], 4)
    }

    func testClipNonFiniteReturnsNormAndLeavesGradients() {
        var g: [Float] = [1, .nan]
        XCTAssertTrue(clipGradNorm(&g, maxNorm: 1).isNaN)
        XCTAssertEqual(g[0], 1)
        var h: [Float] = [.infinity, 1]
        XCTAssertEqual(clipGradNorm(&h, maxNorm: 1), .infinity)
    }

    func testAdamFirstStepIsLearningRateTimesSign() {
        // With bias correction, step 1 moves every parameter by ~lr * sign(g).
        var adam = Adam()
        var p: [Float] = [1, 1, 1]
        adam.update(&p, gradients: [0.5, -2, 1e-3])
        XCTAssertEqual(adam.step, 1)
        XCTAssertEqual(p[0], 1 - 1e-3, accuracy: 1e-6)
        XCTAssertEqual(p[1], 1 + 1e-3, accuracy: 1e-6)
        XCTAssertEqual(p[2], 1 - 1e-3, accuracy: 1e-5)
        for (m, e) in zip(adam.m, [Float(0.05), -0.2, 1e-4]) { XCTAssertEqual(m, e, accuracy: 1e-6) }
    }
}

final class TrainerBehaviourTests: XCTestCase {
    private func data(batch: Int, seq: Int, input: Int = 1, seed: UInt64 = 3) -> ([Float], [Float]) {
        var rng = SeededGenerator(seed: seed)
        let x = (0..<(batch * seq * input)).map { _ in Float(rng.nextGaussian()) }
        let y = (0..<batch).map { _ in Float(rng.nextGaussian()) }
        return (x, y)
    }

    func testNonFiniteStepIsSkippedAndCounted() throws {
        let model = try Model(config: ModelConfig(hiddenSizes: [8, 8]), seed: 1)
        let trainer = Trainer(model: model, threads: 2)
        var (x, y) = data(batch: 6, seq: 5)
        y[2] = .nan
        let r = trainer.step(x: x, y: y, batch: 6, seqLength: 5)
        XCTAssertFalse(r.applied)
        XCTAssertTrue(r.loss.isNaN)
        XCTAssertEqual(trainer.skippedSteps, 1)
        XCTAssertEqual(trainer.appliedSteps, 0)
        XCTAssertEqual(trainer.optimizer.step, 0)
        XCTAssertEqual(trainer.model.parameters, model.parameters, "skipped step must not touch weights")

        y[2] = 0
        x[7] = .infinity
        XCTAssertFalse(trainer.step(x: x, y: y, batch: 6, seqLength: 5).applied)
        XCTAssertEqual(trainer.skippedSteps, 2)

        x[7] = 0
        XCTAssertTrue(trainer.step(x: x, y: y, batch: 6, seqLength: 5).applied)
        XCTAssertEqual(trainer.appliedSteps, 1)
        XCTAssertEqual(trainer.optimizer.step, 1)
        XCTAssertNotEqual(trainer.model.parameters, model.parameters)
    }

    func testSameSeedSameBitsDifferentSeedDifferentBits() throws {
        let config = ModelConfig(hiddenSizes: [16, 8], dropout: 0.2)
        let a = try Model(config: config, seed: 42), b = try Model(config: config, seed: 42)
        let c = try Model(config: config, seed: 43)
        XCTAssertEqual(a.parameters.map(\.bitPattern), b.parameters.map(\.bitPattern))
        XCTAssertNotEqual(a.parameters.map(\.bitPattern), c.parameters.map(\.bitPattern))

        let (x, y) = data(batch: 40, seq: 6)
        func train(_ m: Model, seed: UInt64) -> [UInt32] {
            let t = Trainer(model: m, threads: 2, seed: seed)
            t.fit(x: x, y: y, seqLength: 6, epochs: 3, batchSize: 16)
            return t.model.parameters.map(\.bitPattern)
        }
        XCTAssertEqual(train(a, seed: 9), train(b, seed: 9))
        XCTAssertNotEqual(train(a, seed: 9), train(a, seed: 10), "shuffle/dropout seed must matter")
    }

    func testTwoThreadTrainingGivesTheSameBitsWhetherTheHelperThreadIsFreeOrHeld() throws {
        let model = try Model(config: ModelConfig(hiddenSizes: [16, 8]), seed: 3)
        let (x, y) = data(batch: 40, seq: 6)
        func train() -> [UInt32] {
            let t = Trainer(model: model, threads: 2, seed: 1)
            t.fit(x: x, y: y, seqLength: 6, epochs: 2, batchSize: 16)
            return t.model.parameters.map(\.bitPattern)
        }
        let onHelper = train()
        // Another call holds the process's helper thread: shards go to dispatch workers.
        XCTAssertNotNil(PipelineHelper.shared.begin(task: { _ in }))
        PipelineHelper.shared.waitForHelper()
        let onDispatch = train()
        PipelineHelper.shared.end()
        XCTAssertEqual(onHelper, onDispatch)
    }

    func testThreadsSplitGivesSameGradientsUpToRounding() throws {
        let model = try Model(config: ModelConfig(inputSize: 2, hiddenSizes: [12, 12]), seed: 5)
        let (x, y) = data(batch: 9, seq: 7, input: 2)
        let g1 = Trainer(model: model, threads: 1).gradients(x: x, y: y, batch: 9, seqLength: 7)
        let g2 = Trainer(model: model, threads: 2).gradients(x: x, y: y, batch: 9, seqLength: 7)
        assertClose([g2.loss], [Double(g1.loss)], rel: 1e-5, "loss")
        assertClose(g2.gradients, g1.gradients.map(Double.init), rel: 1e-5, "gradients")
        assertClose(g2.inputGradient, g1.inputGradient.map(Double.init), rel: 1e-5, "input gradient")
    }

    func testBatchOnePathMatchesBatchedPath() throws {
        let model = try Model(config: ModelConfig(inputSize: 3, hiddenSizes: [20, 70, 9]), seed: 8)
        let (x, _) = data(batch: 5, seq: 11, input: 3)
        let all = Predictor(model: model, threads: 2).predict(x, batch: 5, seqLength: 11)
        for b in 0..<5 {
            let one = model.predict(Array(x[(b * 33)..<((b + 1) * 33)]), batch: 1, seqLength: 11)
            assertClose(one, [Double(all[b])], rel: 1e-5, "window \(b)")
        }
    }

    func testDropoutOnlyInTraining() throws {
        let config = ModelConfig(hiddenSizes: [16, 16], dropout: 0.5)
        let model = try Model(config: config, seed: 2)
        let plain = try Model(config: ModelConfig(hiddenSizes: [16, 16]), parameters: model.parameters)
        let (x, y) = data(batch: 8, seq: 5)
        // Inference ignores dropout entirely.
        XCTAssertEqual(model.predict(x, batch: 8, seqLength: 5), plain.predict(x, batch: 8, seqLength: 5))
        let t = Trainer(model: model)
        let eval = t.gradients(x: x, y: y, batch: 8, seqLength: 5, training: false).loss
        XCTAssertEqual(eval, mseLoss(plain.predict(x, batch: 8, seqLength: 5), y), accuracy: 1e-5)
        let train1 = t.gradients(x: x, y: y, batch: 8, seqLength: 5, training: true).loss
        let train2 = t.gradients(x: x, y: y, batch: 8, seqLength: 5, training: true).loss
        XCTAssertNotEqual(train1, eval)
        XCTAssertNotEqual(train1, train2, "a fresh mask every step")
        // Without dropout in the config, training mode is the same function.
        let tp = Trainer(model: plain)
        XCTAssertEqual(tp.gradients(x: x, y: y, batch: 8, seqLength: 5, training: true).loss, eval, accuracy: 1e-6)
    }

    func testPyTorchInitBounds() throws {
        let model = try Model(config: ModelConfig(inputSize: 2, hiddenSizes: [64, 32, 16]), seed: 4)
        for (k, l) in model.layout.layers.enumerated() {
            let bound = 1 / Float(model.config.hiddenSizes[k]).squareRoot()
            let slice = model.parameters[l.weightIH..<(l.biasHH + l.gateWidth)]
            XCTAssertLessThanOrEqual(slice.map(abs).max()!, bound)
            XCTAssertGreaterThan(slice.map(abs).max()!, bound * 0.95)
        }
        let head = model.parameters[model.layout.fcWeight...]
        XCTAssertLessThanOrEqual(head.map(abs).max()!, 0.25)  // 1/sqrt(16)
        XCTAssertEqual(try model.parameter(named: "lstm.weight_ih_l1").count, 4 * 32 * 64)
        XCTAssertThrowsError(try model.parameter(named: "lstm.weight_ih_l3"))
    }
}

/// Central finite differences in float32: eps 1e-2 keeps rounding noise (~1e-7 / eps) well
/// below the O(eps^2) truncation error; tolerance 2e-3 absolute + 2% relative.
final class FiniteDifferenceTests: XCTestCase {
    private func check(_ config: ModelConfig, batch: Int, seq: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try Model(config: config, seed: 11)
        var rng = SeededGenerator(seed: 12)
        let x = (0..<(batch * seq * config.inputSize)).map { _ in Float(rng.nextGaussian()) }
        let y = (0..<batch).map { _ in Float(rng.nextGaussian()) }
        let t = Trainer(model: model)
        let (_, g, gx) = t.gradients(x: x, y: y, batch: batch, seqLength: seq)
        XCTAssertEqual(g.count, model.parameterCount)
        XCTAssertEqual(gx.count, x.count)
        func loss(_ p: [Float], _ xx: [Float]) -> Double {
            let m = try! Model(config: config, parameters: p)
            let pred = m.predict(xx, batch: batch, seqLength: seq)
            return zip(pred, y).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) } / Double(batch)
        }
        let eps: Float = 1e-2
        var worst = 0.0
        for i in 0..<model.parameterCount {
            var p = model.parameters
            p[i] += eps
            let up = loss(p, x)
            p[i] -= 2 * eps
            let down = loss(p, x)
            let fd = (up - down) / Double(2 * eps)
            let err = abs(fd - Double(g[i])) / (2e-3 + 0.02 * abs(fd))
            worst = max(worst, err)
            XCTAssertLessThanOrEqual(err, 1, "param \(i): analytic \(g[i]) vs fd \(fd)", file: file, line: line)
        }
        for i in 0..<x.count {
            var xx = x
            xx[i] += eps
            let up = loss(model.parameters, xx)
            xx[i] -= 2 * eps
            let fd = (up - loss(model.parameters, xx)) / Double(2 * eps)
            XCTAssertLessThanOrEqual(abs(fd - Double(gx[i])), 2e-3 + 0.02 * abs(fd), "input \(i)", file: file, line: line)
        }
    }

    func testGRUGradients() throws {
        try check(ModelConfig(cell: .gru, inputSize: 2, hiddenSizes: [3, 2]), batch: 2, seq: 4)
    }

    func testGRUSingleLayerWideGradients() throws {
        try check(ModelConfig(cell: .gru, inputSize: 1, hiddenSizes: [9]), batch: 3, seq: 3)
    }

    func testSingleWindowSingleStepGradients() throws {
        // T * B == 1: the smallest shapes the buffers ever see.
        try check(ModelConfig(cell: .lstm, inputSize: 1, hiddenSizes: [3, 2]), batch: 1, seq: 1)
        try check(ModelConfig(cell: .gru, inputSize: 1, hiddenSizes: [2]), batch: 1, seq: 1)
    }

    func testKerasStyleTaperingLSTMGradients() throws {
        try check(ModelConfig(cell: .lstm, inputSize: 2, hiddenSizes: [4, 3, 2]), batch: 2, seq: 4)
    }

    func testKerasStyleShapes() throws {
        let config = ModelConfig(inputSize: 3, hiddenSizes: [64, 32, 16])
        let model = try Model(config: config, seed: 1)
        XCTAssertEqual(model.layout.layers.map(\.inputSize), [3, 64, 32])
        XCTAssertEqual(model.layout.count, 4 * 64 * (3 + 64 + 2) + 4 * 32 * (64 + 32 + 2) + 4 * 16 * (32 + 16 + 2) + 17)
        let x = [Float](repeating: 0.1, count: 5 * 7 * 3), y = [Float](repeating: 0, count: 5)
        let t = Trainer(model: model, threads: 2)
        let (loss, g, gx) = t.gradients(x: x, y: y, batch: 5, seqLength: 7)
        XCTAssertTrue(loss.isFinite)
        XCTAssertEqual(g.count, model.parameterCount)
        XCTAssertEqual(gx.count, x.count)
        XCTAssertEqual(model.predict(x, batch: 5, seqLength: 7).count, 5)
        XCTAssertTrue(t.step(x: x, y: y, batch: 5, seqLength: 7).applied)
    }
}

final class CheckpointTests: XCTestCase {
    private func trainedCheckpoint() throws -> Checkpoint {
        let model = try Model(config: ModelConfig(inputSize: 2, hiddenSizes: [6, 4], dropout: 0.1), seed: 3)
        let t = Trainer(model: model, optimizer: Adam(learningRate: 3e-3))
        var rng = SeededGenerator(seed: 1)
        let x = (0..<(4 * 5 * 2)).map { _ in Float(rng.nextGaussian()) }
        t.step(x: x, y: [1, 2, 3, 4], batch: 4, seqLength: 5)
        t.step(x: x, y: [1, 2, 3, 4], batch: 4, seqLength: 5)
        return Checkpoint(model: t.model, adam: t.optimizer, scaler: Scaler(kind: .log1pZScore, mean: 1.25, std: 0.3))
    }

    func testRoundTripIsBitIdentical() throws {
        let ck = try trainedCheckpoint()
        let bytes = ck.encoded()
        let back = try Checkpoint(decoding: bytes)
        XCTAssertEqual(back.config, ck.config)
        XCTAssertEqual(back.parameters.map(\.bitPattern), ck.parameters.map(\.bitPattern))
        XCTAssertEqual(back.adam.m.map(\.bitPattern), ck.adam.m.map(\.bitPattern))
        XCTAssertEqual(back.adam.v.map(\.bitPattern), ck.adam.v.map(\.bitPattern))
        XCTAssertEqual(back.adam.step, 2)
        XCTAssertEqual(back.adam.learningRate, 3e-3)
        XCTAssertEqual(back.scaler, ck.scaler)
        XCTAssertEqual(back.encoded(), bytes)
        XCTAssertEqual(try Checkpoint(decoding: ck.encodedData()), back)
        XCTAssertEqual(try back.makeModel().parameters, ck.parameters)
        // A fresh (never stepped) optimizer round-trips too.
        let fresh = Checkpoint(model: try ck.makeModel())
        XCTAssertEqual(try Checkpoint(decoding: fresh.encoded()), fresh)
    }

    func testTruncatedThrows() throws {
        let bytes = try trainedCheckpoint().encoded()
        for n in [0, 3, 8, 12, 19, 20, 21, bytes.count / 2, bytes.count - 4, bytes.count - 1] {
            XCTAssertThrowsError(try Checkpoint(decoding: Array(bytes[0..<n])), "prefix \(n)")
        }
        XCTAssertThrowsError(try Checkpoint(decoding: bytes + [0])) {
            XCTAssertEqual($0 as? CheckpointError, .trailingBytes(1))
        }
    }

    func testEveryFlippedByteThrows() throws {
        let bytes = try trainedCheckpoint().encoded()
        for i in 0..<bytes.count {
            var b = bytes
            b[i] ^= 0x10
            XCTAssertThrowsError(try Checkpoint(decoding: b), "flip at \(i)")
        }
        var b = bytes
        b[40] ^= 1
        XCTAssertThrowsError(try Checkpoint(decoding: b)) {
            guard case .checksumMismatch = $0 as? CheckpointError else { return XCTFail("\($0)") }
        }
    }

    func testWrongVersionAndMagic() throws {
        var bytes = try trainedCheckpoint().encoded()
        var v = bytes
        v[8] = 3
        XCTAssertThrowsError(try Checkpoint(decoding: v)) {
            XCTAssertEqual($0 as? CheckpointError, .unsupportedVersion(found: 3, supported: 2))
        }
        bytes[0] = UInt8(ascii: "X")
        XCTAssertThrowsError(try Checkpoint(decoding: bytes)) {
            XCTAssertEqual($0 as? CheckpointError, .badMagic)
        }
    }
}
