@testable import Forecast
import XCTest

/// The direct multi-step head: its gradients, its checkpoints, its windows, and the engine's
/// per-step intervals, seasons and non-negative bounds.
final class HorizonTests: XCTestCase {
    /// Every parameter's gradient of a 3-output head with a seasonal skip against central finite
    /// differences of the loss (Double-precision reference of the float model: a loose but
    /// failing-on-a-wrong-formula tolerance).
    func testMultiOutputHeadGradientsMatchFiniteDifferences() throws {
        let config = ModelConfig(cell: .lstm, inputSize: 1, hiddenSizes: [5, 4], outputSize: 3, seasonalSkip: true)
        var model = try Model(config: config, seed: 7)
        // A non-zero skip, so its effect on the other gradients is exercised too.
        try model.setParameter(named: "seasonal.weight", to: [0.3, -0.2, 0.5])
        let B = 4, T = 6, O = 3
        var rng = SeededGenerator(seed: 3)
        let x = (0..<(B * T)).map { _ in rng.nextUniform(bound: 1) }
        let y = (0..<(B * O)).map { _ in rng.nextUniform(bound: 1) }
        let s = (0..<(B * O)).map { _ in rng.nextUniform(bound: 1) }
        let trainer = Trainer(model: model, maxGradNorm: nil)
        let (loss, grads, _) = trainer.gradients(x: x, y: y, seasonal: s, batch: B, seqLength: T, training: false)
        XCTAssertEqual(Double(loss), Double(mseLoss(model.predict(x, seasonal: s, batch: B, seqLength: T), y)), accuracy: 1e-6)
        func lossAt(_ p: [Float]) -> Double {
            let m = try! Model(config: config, parameters: p)
            let pred = m.predict(x, seasonal: s, batch: B, seqLength: T)
            var sum = 0.0
            for i in pred.indices { sum += Double(pred[i] - y[i]) * Double(pred[i] - y[i]) }
            return sum / Double(pred.count)
        }
        let eps: Float = 1e-2
        var worst = 0.0
        for i in 0..<model.parameterCount {
            var plus = model.parameters, minus = model.parameters
            plus[i] += eps
            minus[i] -= eps
            let numeric = (lossAt(plus) - lossAt(minus)) / Double(2 * eps)
            let err = abs(numeric - Double(grads[i])) / max(1e-2, abs(numeric) + abs(Double(grads[i])))
            worst = max(worst, err)
        }
        XCTAssertLessThan(worst, 2e-2, "relative error of the worst of \(model.parameterCount) gradients")
        // Head shapes are PyTorch's Linear(H_last, O).
        XCTAssertEqual(model.layout.entry(named: "fc.weight")?.shape, [3, 4])
        XCTAssertEqual(model.layout.entry(named: "fc.bias")?.shape, [3])
    }

    /// The batch-1 path, the batched lanes path and the training forward give the same outputs.
    func testPredictPathsAgreeForAMultiOutputHead() throws {
        let config = ModelConfig(cell: .lstm, inputSize: 1, hiddenSizes: [16, 16], outputSize: 5, seasonalSkip: true)
        var model = try Model(config: config, seed: 1)
        try model.setParameter(named: "seasonal.weight", to: [0.1, 0.2, 0.3, 0.4, 0.5])
        var rng = SeededGenerator(seed: 9)
        let B = 37, T = 20
        let x = (0..<(B * T)).map { _ in rng.nextUniform(bound: 1) }
        let s = (0..<(B * 5)).map { _ in rng.nextUniform(bound: 1) }
        let batched = Predictor(model: model, threads: 2).predict(x, seasonal: s, batch: B, seqLength: T)
        let ws = Workspace(config: config, layout: model.layout)
        model.parameters.withUnsafeBufferPointer { p in
            x.withUnsafeBufferPointer { xp in
                s.withUnsafeBufferPointer { sp in
                    ws.forward(p.baseAddress!, x: xp.baseAddress!, seasonal: sp.baseAddress!, batch: B, seqLength: T, dropoutRNG: nil)
                }
            }
        }
        for b in 0..<B {
            let one = Predictor(model: model).predict(Array(x[(b * T)..<((b + 1) * T)]), seasonal: Array(s[(b * 5)..<((b + 1) * 5)]),
                                                      batch: 1, seqLength: T)
            for o in 0..<5 {
                XCTAssertEqual(one[o], batched[b * 5 + o], accuracy: 1e-5)
                XCTAssertEqual(ws.pred.pointer[b * 5 + o], batched[b * 5 + o], accuracy: 1e-5)
            }
        }
    }

    func testCheckpointsKeepTheHeadAndNextStepModelsKeepFormat1() throws {
        let multi = try Model(config: ModelConfig(hiddenSizes: [4], outputSize: 6, seasonalSkip: true), seed: 2)
        let bytes = Checkpoint(model: multi).encoded()
        XCTAssertEqual(bytes[8], 2, "format 2 for a multi-step head")
        let back = try Checkpoint(decoding: bytes)
        XCTAssertEqual(back.config, multi.config)
        XCTAssertEqual(try back.makeModel(), multi)
        let next = try Model(config: ModelConfig(hiddenSizes: [4]), seed: 2)
        let nb = Checkpoint(model: next).encoded()
        XCTAssertEqual(nb[8], 1, "a next-step model's checkpoint is what it always was")
        XCTAssertEqual(try Checkpoint(decoding: nb).makeModel(), next)
    }

    func testCreateSequencesWithAHorizon() throws {
        let (x, y) = try createSequences([0, 1, 2, 3, 4, 5], seqLength: 2, horizon: 3)
        XCTAssertEqual(x, [[0, 1], [1, 2]])
        XCTAssertEqual(y, [[2, 3, 4], [3, 4, 5]])
        XCTAssertTrue(try createSequences([0, 1, 2], seqLength: 2, horizon: 2).x.isEmpty)
        XCTAssertThrowsError(try createSequences([0, 1, 2], seqLength: 1, horizon: 0))
    }

    func testSeasonsAreFoundInTheDataNotConfigured() {
        var rng = SeededGenerator(seed: 4)
        let daily = (0..<2000).map { i in 10 + 5 * sin(2 * Double.pi * Double(i) / 288) + 0.1 * Double(rng.nextUniform(bound: 1)) }
        XCTAssertEqual(Seasonality.detectPeriod(daily, step: 300, horizon: 12), 288)
        // A 7-minute step divides no day: no candidate.
        XCTAssertNil(Seasonality.detectPeriod(daily, step: 420, horizon: 12))
        // A random walk repeats nothing.
        var walk = [0.0]
        for _ in 0..<2000 { walk.append(walk.last! + Double(rng.nextUniform(bound: 1))) }
        XCTAssertNil(Seasonality.detectPeriod(walk, step: 300, horizon: 12))
        // Too short for two seasons.
        XCTAssertNil(Seasonality.detectPeriod(Array(daily.prefix(500)), step: 300, horizon: 12))
    }

    /// A daily pattern with noise, 5-minute steps, H = 6: every forecast issues a path of 6 steps
    /// at the series' step, intervals widen with the step and cover about what they promise, and
    /// a series that never went below zero gets no negative bound.
    func testEnginePathsPerStepIntervalsAndNonNegativeBounds() throws {
        var c = EngineConfig.smallForTests
        c.warmup = 300
        c.retrainEvery = 400
        c.history = 800
        c.residualWindow = EngineConfig().residualWindow
        c.horizon = 6
        let engine = try StreamingEngine(config: c)
        var rng = SeededGenerator(seed: 11)
        var obs: [Observation] = []
        for i in 0..<2400 {
            // Near zero at night: the interval of a plain model would go below it.
            let v = max(0, 3 * sin(2 * Double.pi * Double(i) / 288)) + abs(Double(rng.nextUniform(bound: 1)))
            obs.append(Observation(series: "s", time: Double(i * 300), value: v))
        }
        let out = engine.process(obs)
        var covered = [Int](repeating: 0, count: 6), total = [Int](repeating: 0, count: 6)
        var width = [Double](repeating: 0, count: 6)
        var issued: [Double: Forecast] = [:]
        for (i, r) in out.enumerated() {
            if let f = r.next {
                XCTAssertEqual(f.path.count, 6)
                XCTAssertEqual(f.issuedAt, obs[i].time)
                XCTAssertEqual(f.path.map(\.step), Array(1...6))
                XCTAssertEqual(f.path.map(\.time), (1...6).map { obs[i].time + Double($0 * 300) })
                XCTAssertEqual(f.path[0].value, f.value)
                for p in f.path { XCTAssertGreaterThanOrEqual(p.lower, 0, "never-negative series") }
                issued[obs[i].time] = f
            }
            // Score the paths that targeted this point, after the first 1200 points.
            guard i >= 1200 else { continue }
            for h in 1...6 {
                guard let f = issued[obs[i].time - Double(h * 300)] else { continue }
                let p = f.path[h - 1]
                total[h - 1] += 1
                width[h - 1] += p.upper - p.lower
                if p.lower <= obs[i].value! && obs[i].value! <= p.upper { covered[h - 1] += 1 }
            }
        }
        for h in 0..<6 {
            XCTAssertGreaterThan(total[h], 1000)
            let coverage = Double(covered[h]) / Double(total[h])
            XCTAssertEqual(coverage, 0.95, accuracy: 0.04, "step \(h + 1)")
        }
        XCTAssertGreaterThan(width[5], width[0], "step 6's interval is wider than step 1's")
    }

    /// Steps weighted by the inverse of their targets' mean square, then half the loss to step 1.
    func testStepWeightsGiveHalfTheLossToTheNextStep() {
        // Two windows, 3 steps: mean squares 1, 4, 16.
        let y: [Float] = [1, 2, 4, -1, -2, -4]
        let w = StreamingEngine.stepWeights(y, horizon: 3)
        let ms: [Float] = [1, 4, 16]
        let shares = (0..<3).map { w[$0] * ms[$0] }
        let total = shares.reduce(0, +)
        XCTAssertEqual(shares[0] / total, 0.5, accuracy: 1e-6)
        XCTAssertEqual(shares[1] / total, 0.25, accuracy: 1e-6)
        XCTAssertEqual(shares[2] / total, 0.25, accuracy: 1e-6)
        XCTAssertEqual(StreamingEngine.stepWeights([0, 0, 0], horizon: 3).count, 3, "a constant series keeps finite weights")
        XCTAssertTrue(StreamingEngine.stepWeights([0, 0, 0], horizon: 3).allSatisfy(\.isFinite))
    }

    func testHorizonNeedsTheLevelTransformAndHistory() {
        var c = EngineConfig()
        c.horizon = 4
        c.transform = .difference
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("horizon")) }
        c.transform = .level
        c.history = c.seqLength + 2
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("history")) }
    }
}
