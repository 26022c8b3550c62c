import Foundation
import XCTest

@testable import Forecast

/// Every tensor of the PyTorch float64 fixture (anchors/make_golden.py) against our float32
/// implementation: forward activations, loss, all gradients, clipping, two Adam steps.
final class GoldenLSTMTests: XCTestCase {
    func testStackedCase() throws { try check(caseName: "stacked") }
    func testSingleLayerCase() throws { try check(caseName: "single") }

    private func fixture() throws -> [String: Any] {
        let url = try XCTUnwrap(Bundle.module.url(forResource: "lstm_golden", withExtension: "json", subdirectory: "Fixtures"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    private func check(caseName: String) throws {
        let root = try fixture()
        let c = try XCTUnwrap((root["cases"] as? [String: Any])?[caseName] as? [String: Any])
        let cfg = try XCTUnwrap(c["config"] as? [String: Any])
        let inputSize = cfg["input_size"] as! Int, H = cfg["hidden_size"] as! Int
        let L = cfg["num_layers"] as! Int, B = cfg["batch"] as! Int, T = cfg["seq_length"] as! Int
        let maxNorm = Float(cfg["clip_max_norm"] as! Double)
        let adamCfg = cfg["adam"] as! [String: Any]
        let betas = adamCfg["betas"] as! [Double]

        func values(_ any: Any?) -> [Double] { flatten((any as! [String: Any])["value"]!) }
        func named(_ dict: Any?) -> [String: [Double]] {
            (dict as! [String: Any]).mapValues { values($0) }
        }

        let config = ModelConfig(cell: .lstm, inputSize: inputSize, hiddenSizes: Array(repeating: H, count: L))
        var model = try Model(config: config, seed: 0)
        let params = named(c["parameters"])
        XCTAssertEqual(Set(params.keys), Set(model.layout.entries.map(\.name)), "parameter names")
        for (name, v) in params { try model.setParameter(named: name, to: v.map { Float($0) }) }

        let x = values(c["inputs"]).map { Float($0) }
        let y = values(c["targets"]).map { Float($0) }
        let trainer = Trainer(
            model: model,
            optimizer: Adam(learningRate: Float(adamCfg["lr"] as! Double), beta1: Float(betas[0]),
                            beta2: Float(betas[1]), epsilon: Float(adamCfg["eps"] as! Double)),
            maxGradNorm: maxNorm, threads: 1)

        // Forward + backward, no update.
        let (loss, grads, gradInput) = trainer.gradients(x: x, y: y, batch: B, seqLength: T)
        let ws = trainer.workspaceForTesting
        let layers = c["layers"] as! [[String: Any]]
        for k in 0..<L {
            let lw = layers[k]
            assertClose(batchFirst(ws.hidden[k].pointer, T: T, B: B, W: H), values(lw["h"]), "layer \(k) h")
            assertClose(batchFirst(ws.cells[k].pointer, T: T, B: B, W: H), values(lw["c"]), "layer \(k) c")
            let g = batchFirst(ws.gates[k].pointer, T: T, B: B, W: 4 * H)
            for (gi, gname) in ["gate_i", "gate_f", "gate_g", "gate_o"].enumerated() {
                var sel: [Float] = []
                for r in 0..<(B * T) {
                    let start: Int = r * 4 * H + gi * H
                    sel.append(contentsOf: g[start..<(start + H)])
                }
                assertClose(sel, values(lw[gname]), "layer \(k) \(gname)")
            }
        }
        // h_n / c_n: [L][B][H] = last step of each layer.
        var hn: [Float] = [], cn: [Float] = []
        for k in 0..<L {
            hn += UnsafeBufferPointer(start: ws.hidden[k].pointer + (T - 1) * B * H, count: B * H)
            cn += UnsafeBufferPointer(start: ws.cells[k].pointer + (T - 1) * B * H, count: B * H)
        }
        assertClose(hn, values(c["h_n"]), "h_n")
        assertClose(cn, values(c["c_n"]), "c_n")
        assertClose(Array(UnsafeBufferPointer(start: ws.pred.pointer, count: B)), values(c["prediction"]), "prediction")
        XCTAssertEqual(model.predict(x, batch: B, seqLength: T).count, B)
        assertClose(model.predict(x, batch: B, seqLength: T), values(c["prediction"]), "predict()")
        assertClose(model.predict(Array(x[0..<(T * inputSize)]), batch: 1, seqLength: T),
                    [values(c["prediction"])[0]], "predict() batch-1 path")
        assertClose(Predictor(model: model, threads: 2).predict(Array(x[0..<(T * inputSize)]), batch: 1, seqLength: T),
                    [values(c["prediction"])[0]], "batch-1 path split over two threads")
        assertClose(loss, c["loss"] as! Double, "loss")

        let expectedGrads = named(c["gradients"])
        for e in model.layout.entries {
            assertClose(Array(grads[e.offset..<(e.offset + e.count)]), expectedGrads[e.name]!, "grad \(e.name)")
        }
        assertClose(gradInput, values(c["grad_input"]), "grad_input")
        assertClose(gradNorm(grads), c["grad_norm"] as! Double, "grad_norm")

        // Clipping, as a free function on a copy.
        let clip = c["clip"] as! [String: Any]
        var clipped = grads
        let pre = clipGradNorm(&clipped, maxNorm: maxNorm)
        assertClose(pre, c["grad_norm"] as! Double, "clip return")
        let expectedClipped = named(clip["gradients_clipped"])
        for e in model.layout.entries {
            assertClose(Array(clipped[e.offset..<(e.offset + e.count)]), expectedClipped[e.name]!, "clipped \(e.name)")
        }

        // Step 1 through the trainer: forward, backward, clip, Adam.
        let r1 = trainer.step(x: x, y: y, batch: B, seqLength: T)
        XCTAssertTrue(r1.applied)
        assertClose(r1.loss, c["loss"] as! Double, "step1 loss")
        assertClose(r1.gradNorm, c["grad_norm"] as! Double, "step1 grad norm")
        let s1 = c["adam_step1"] as! [String: Any]
        let p1 = named(s1["parameters"]), m1 = named(s1["exp_avg"]), v1 = named(s1["exp_avg_sq"])
        let after1 = trainer.model
        XCTAssertEqual(trainer.optimizer.step, 1)
        for e in model.layout.entries {
            let r = e.offset..<(e.offset + e.count)
            assertClose(Array(after1.parameters[r]), p1[e.name]!, "step1 param \(e.name)")
            assertClose(Array(trainer.optimizer.m[r]), m1[e.name]!, "step1 exp_avg \(e.name)")
            // v ~ g^2: relative float32 error doubles, still well inside 1e-4.
            assertClose(Array(trainer.optimizer.v[r]), v1[e.name]!, "step1 exp_avg_sq \(e.name)")
        }

        // Step 2: state carried over.
        let s2 = c["adam_step2"] as! [String: Any]
        let r2 = trainer.step(x: x, y: y, batch: B, seqLength: T)
        XCTAssertTrue(r2.applied)
        assertClose(r2.loss, s2["loss"] as! Double, "step2 loss")
        assertClose(r2.gradNorm, s2["grad_norm"] as! Double, "step2 grad norm")
        let g2 = named(s2["gradients_clipped"]), p2 = named(s2["parameters"])
        let lastG = trainer.lastGradients
        let after2 = trainer.model
        for e in model.layout.entries {
            let r = e.offset..<(e.offset + e.count)
            assertClose(Array(lastG[r]), g2[e.name]!, "step2 clipped grad \(e.name)")
            assertClose(Array(after2.parameters[r]), p2[e.name]!, "step2 param \(e.name)")
        }
        XCTAssertEqual(trainer.optimizer.step, 2)
        XCTAssertEqual(trainer.skippedSteps, 0)
    }
}
