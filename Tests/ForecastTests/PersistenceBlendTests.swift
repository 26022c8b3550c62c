import XCTest
@testable import Forecast

final class PersistenceBlendTests: XCTestCase {
    /// A step series (flat between jumps no one can foresee) and a model whose forecasts wander
    /// around the level: persistence is better, and the blend moves to it.
    func testFallsBackToPersistenceWhenTheModelOnlyAddsError() {
        var rng = SeededGenerator(seed: 1)
        var blend = PersistenceBlend()
        var level = 10.0
        var last = level
        var errorBlended = 0.0, errorPersistence = 0.0, errorModel = 0.0
        for i in 0..<2000 {
            if rng.nextUnitFloat() < 0.02 { level += Double(rng.nextGaussian()) * 5 }
            let model = last + 0.3 * Double(rng.nextGaussian())
            if i == 0 { XCTAssertEqual(blend.weight, 1, "the model alone until enough forecasts are scored") }
            let forecast = blend.blend(model: model, persistence: last)
            if i >= 500 {
                errorBlended += abs(level - forecast)
                errorPersistence += abs(level - last)
                errorModel += abs(level - model)
            }
            blend.record(actual: level, model: model, persistence: last, memory: 500)
            last = level
        }
        XCTAssertEqual(blend.weight, 0)
        XCTAssertLessThan(errorBlended, errorModel * 0.8)
        XCTAssertLessThan(errorBlended, errorPersistence * 1.02)
    }

    /// A model that does see the moves keeps its full weight.
    func testKeepsAGoodModel() {
        var rng = SeededGenerator(seed: 2)
        var blend = PersistenceBlend()
        var last = 0.0
        for i in 0..<1000 {
            let actual = sin(Double(i) / 5) + 0.05 * Double(rng.nextGaussian())
            let model = sin(Double(i) / 5)
            blend.record(actual: actual, model: model, persistence: last, memory: 500)
            last = actual
        }
        XCTAssertEqual(blend.weight, 1)
    }

    /// In between, it picks the weight in between.
    func testPartialWeight() {
        var rng = SeededGenerator(seed: 3)
        var blend = PersistenceBlend()
        var last = 0.0
        for _ in 0..<3000 {
            // The actual move is half the model's move plus noise: ½ is the best weight.
            let move = Double(rng.nextGaussian())
            let actual = last + 0.5 * move + 0.1 * Double(rng.nextGaussian())
            blend.record(actual: actual, model: last + move, persistence: last, memory: 500)
            last = actual
        }
        XCTAssertEqual(blend.weight, 0.5)
    }
}
