/// Mean squared error, PyTorch MSELoss(reduction: mean). Summed in Double.
public func mseLoss(_ prediction: [Float], _ target: [Float]) -> Float {
    precondition(prediction.count == target.count, "prediction/target count mismatch")
    guard !prediction.isEmpty else { return 0 }
    var s = 0.0
    for i in prediction.indices {
        let d = Double(prediction[i]) - Double(target[i])
        s += d * d
    }
    return Float(s / Double(prediction.count))
}
