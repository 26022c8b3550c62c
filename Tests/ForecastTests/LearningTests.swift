import Foundation
import XCTest

import Forecast

/// Does the model learn as well as PyTorch on the same recipe? The recipe is spelled out in
/// bench/torch_sine.py and repeated here exactly: the series is the committed fixture
/// sine_noise.csv (x_t = sin(2πt/50) + 0.1·N(0,1), 1000 points, bench/make_sine_fixture.py),
/// z-scored with the first 800 points' mean / population std; L = 50 windows, 750 train
/// (targets 50..799) and 200 test (targets 800..999), chronological; LSTM [32, 32] + Linear;
/// Adam 1e-3, MSE, clip 1.0, batch 32, shuffled epochs with the last partial batch kept.
///
/// Reference, measured on this machine:
///   ../.venv-torch/bin/python bench/torch_sine.py --epochs 40 --seeds 7
///   -> test MSE per seed 0.02457 0.02354 0.02231 0.02309 0.02447 0.02311 0.02282,
///      median 0.02311 (persistence baseline 0.05544, noise floor ≈ 0.0196).
/// Single runs differ by ±5 % from seed to seed in both frameworks (init and shuffle draws
/// cannot be shared), so one seed against one seed would test luck. We compare the median of
/// three seeds (1, 2, 3: the first three, not picked) with PyTorch's 7-seed median, no margin.
/// forecastd seeds 1...7 gave 0.02229 0.02335 0.02278 0.02427 0.02406 0.02231 0.02363
/// (median 0.02335): the same distribution as PyTorch's.
final class LearningTests: XCTestCase {
    static let epochs = 40
    static let pytorchMedianMSE: Float = 0.02311

    func testSineNextStepMatchesPyTorch() throws {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "sine_noise", withExtension: "csv", subdirectory: "Fixtures"))
        let raw = try String(contentsOf: url, encoding: .utf8).split(separator: "\n").dropFirst().map { Float($0)! }
        XCTAssertEqual(raw.count, 1000)
        let (L, split) = (50, 800)
        let scaler = Scaler(fitting: Array(raw[0..<split]), kind: .zScore)
        let z = scaler.transform(raw)
        let train = try createSequencesFlat(Array(z[0..<split]), seqLength: L)
        let test = try createSequencesFlat(Array(z[(split - L)...]), seqLength: L)
        XCTAssertEqual(train.y.count, 750)
        XCTAssertEqual(test.y.count, 200)

        var results: [Float] = []
        for seed: UInt64 in [1, 2, 3] {
            let model = try Model(config: ModelConfig(cell: .lstm, inputSize: 1, hiddenSizes: [32, 32]), seed: seed)
            let trainer = Trainer(model: model, optimizer: Adam(learningRate: 1e-3), maxGradNorm: 1.0, threads: 2, seed: seed)
            trainer.fit(x: train.x, y: train.y, seqLength: L, epochs: Self.epochs, batchSize: 32)
            XCTAssertEqual(trainer.skippedSteps, 0)
            results.append(trainer.evaluate(x: test.x, y: test.y, seqLength: L))
        }
        let median = results.sorted()[1]
        print("forecastd sine test MSE per seed \(results), median \(median) (PyTorch median \(Self.pytorchMedianMSE))")
        XCTAssertLessThanOrEqual(median, Self.pytorchMedianMSE)
    }
}
