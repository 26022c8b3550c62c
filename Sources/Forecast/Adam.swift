import CKernels
import Foundation

/// Adam with PyTorch's defaults and update rule (bias-corrected, no weight decay).
/// Kept apart from the model (as in mlx-swift): it owns only its moment buffers and step.
public struct Adam: Sendable, Equatable, Codable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    /// First / second moment estimates (PyTorch exp_avg / exp_avg_sq); empty until the first step.
    public private(set) var m: [Float]
    public private(set) var v: [Float]
    /// Number of updates applied (PyTorch `state['step']`).
    public private(set) var step: Int

    public init(learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        m = []
        v = []
        step = 0
    }

    /// Restore a saved state (checkpoints). `m` and `v` must have equal length (0 = fresh).
    public init(learningRate: Float, beta1: Float, beta2: Float, epsilon: Float,
                m: [Float], v: [Float], step: Int) throws {
        guard m.count == v.count, step >= 0 else {
            throw ForecastError.shapeMismatch("Adam state: m has \(m.count), v has \(v.count), step \(step)")
        }
        self.init(learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon)
        self.m = m
        self.v = v
        self.step = step
    }

    /// One update of `parameters` with `gradients` (same length).
    public mutating func update(_ parameters: inout [Float], gradients: [Float]) {
        precondition(parameters.count == gradients.count, "parameter/gradient count mismatch")
        parameters.withUnsafeMutableBufferPointer { p in
            gradients.withUnsafeBufferPointer { g in
                update(parameters: p.baseAddress!, gradients: g.baseAddress!, count: p.count)
            }
        }
    }

    mutating func update(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, count: Int) {
        if m.count != count {
            precondition(m.isEmpty, "Adam state sized for \(m.count) parameters, got \(count)")
            m = [Float](repeating: 0, count: count)
            v = [Float](repeating: 0, count: count)
        }
        step += 1
        // Bias corrections in Double as PyTorch does (Python floats), then rounded once.
        let bc1 = Float(1 - pow(Double(beta1), Double(step)))
        let bc2 = Float(1 - pow(Double(beta2), Double(step)))
        let (lr, b1, b2, eps) = (learningRate, beta1, beta2, epsilon)
        m.withUnsafeMutableBufferPointer { mp in
            v.withUnsafeMutableBufferPointer { vp in
                fk_adam(count, parameters, gradients, mp.baseAddress!, vp.baseAddress!, lr, b1, b2, eps, bc1, bc2)
            }
        }
    }
}
