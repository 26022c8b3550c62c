import CKernels

/// Global L2 norm of `grads` (accumulated in Double: ~1e5 squares must not lose the small ones).
public func gradNorm(_ grads: [Float]) -> Float {
    grads.withUnsafeBufferPointer { Float(fk_sum_squares($0.baseAddress!, $0.count).squareRoot()) }
}

/// torch.nn.utils.clip_grad_norm_ semantics: if norm > maxNorm every gradient is scaled by
/// maxNorm / (norm + 1e-6) (the 1e-6 is PyTorch's). Returns the norm before clipping.
/// A non-finite norm is returned as is and the gradients are left alone: the trainer skips
/// such steps instead of applying a NaN-scaled update.
@discardableResult
public func clipGradNorm(_ grads: inout [Float], maxNorm: Float) -> Float {
    grads.withUnsafeMutableBufferPointer { clipGradNorm($0.baseAddress!, count: $0.count, maxNorm: maxNorm) }
}

@discardableResult
func clipGradNorm(_ g: UnsafeMutablePointer<Float>, count: Int, maxNorm: Float) -> Float {
    let norm = Float(fk_sum_squares(g, count).squareRoot())
    guard norm.isFinite else { return norm }
    let coef = maxNorm / (norm + 1e-6)
    if coef < 1 { fk_scale(g, count, coef) }
    return norm
}
