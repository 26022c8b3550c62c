/// Sliding windows for next-step forecasting: x[i] = data[i ..< i+L], y[i] = data[i+L],
/// for i in 0 ..< n-L. Empty when n <= L.
public func createSequences(_ data: [Float], seqLength: Int) throws -> (x: [[Float]], y: [Float]) {
    let flat = try createSequencesFlat(data, seqLength: seqLength)
    var x: [[Float]] = []
    x.reserveCapacity(flat.y.count)
    for i in 0..<flat.y.count {
        x.append(Array(flat.x[(i * seqLength)..<((i + 1) * seqLength)]))
    }
    return (x, flat.y)
}

/// Same windows, row-major in one buffer ([count][seqLength], input size 1): the layout the
/// trainer and predictor take, so no per-window arrays are allocated on the hot path.
public func createSequencesFlat(_ data: [Float], seqLength: Int) throws -> (x: [Float], y: [Float]) {
    guard seqLength >= 1 else { throw ForecastError.invalidSequenceLength(seqLength) }
    let count = max(0, data.count - seqLength)
    var x = [Float]()
    x.reserveCapacity(count * seqLength)
    var y = [Float]()
    y.reserveCapacity(count)
    for i in 0..<count {
        x.append(contentsOf: data[i..<(i + seqLength)])
        y.append(data[i + seqLength])
    }
    return (x, y)
}

/// Windows for a direct H-step forecast: x[i] = data[i ..< i+L], y[i] = data[i+L ..< i+L+H],
/// for i in 0 ... n-L-H. Empty when n < L + H.
public func createSequences(_ data: [Float], seqLength: Int, horizon: Int) throws -> (x: [[Float]], y: [[Float]]) {
    guard seqLength >= 1 else { throw ForecastError.invalidSequenceLength(seqLength) }
    guard horizon >= 1 else { throw ForecastError.invalidConfig("horizon must be at least 1, got \(horizon)") }
    let count = max(0, data.count - seqLength - horizon + 1)
    var x: [[Float]] = [], y: [[Float]] = []
    x.reserveCapacity(count)
    y.reserveCapacity(count)
    for i in 0..<count {
        x.append(Array(data[i..<(i + seqLength)]))
        y.append(Array(data[(i + seqLength)..<(i + seqLength + horizon)]))
    }
    return (x, y)
}
