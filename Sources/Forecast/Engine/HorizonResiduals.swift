/// Per-step residuals of a horizon model. A path issued after observation n forecasts
/// observation n+h as its step h; when that observation arrives, its error in units of the
/// series' spread joins step h's window. Each step's interval comes from its own window, so
/// step 24's interval is as wide as step 24's errors have been.
///
/// Far steps need more: their errors come in long runs (consecutive paths share most of their
/// targets' weather), so the window's quantiles lag when the error level shifts and the interval
/// under-covers. Each step's miscoverage level is therefore adapted online (adaptive conformal
/// inference, Gibbs & Candès 2021): after every scored point, α ← α + γ(α* − miss). Over any
/// long stretch the step's misses then average α* whatever the errors do. γ = 0.005 is the
/// paper's choice; nothing here is fitted to a file.
struct HorizonResiduals: Sendable {
    static let adaptationRate = 0.005
    let horizon: Int
    /// Windows for steps 2...H (step 1 is the series' own residual window).
    private(set) var windows: [ResidualWindow]
    /// Miscoverage level used for steps 2...H, adapted from the target.
    private(set) var alpha: [Double]
    let targetAlpha: Double
    /// The last H issued paths (model-space forecasts, steps 1...H), by issue index mod H.
    private var paths: [[Double]]
    private var issuedAt: [Int]

    init(horizon: Int, capacity: Int, coverage: Double) {
        self.horizon = horizon
        windows = (0..<(horizon - 1)).map { _ in ResidualWindow(capacity: capacity) }
        targetAlpha = 1 - coverage
        alpha = Array(repeating: 1 - coverage, count: max(0, horizon - 1))
        paths = Array(repeating: [], count: horizon)
        issuedAt = Array(repeating: -1, count: horizon)
    }

    /// A path issued after observation `index` (model-space values for steps 1...H).
    mutating func issued(_ path: [Double], after index: Int) {
        paths[index % horizon] = path
        issuedAt[index % horizon] = index
    }

    /// Observation `index` arrived with model-space value `u`: scores it against the paths that
    /// forecast it two or more steps ahead. `record` false (a flagged point) only consumes them.
    mutating func observed(_ u: Double, index: Int, std: Double, record: Bool) {
        guard record, std > 0, horizon >= 2 else { return }
        for h in 2...horizon {
            let n = index - h
            guard n >= 0, issuedAt[n % horizon] == n else { continue }
            let r = (u - paths[n % horizon][h - 1]) / std
            if let (lo, hi) = bounds(step: h) {
                let miss = r < lo || r > hi ? 1.0 : 0.0
                alpha[h - 2] = min(1, max(0, alpha[h - 2] + Self.adaptationRate * (targetAlpha - miss)))
            }
            windows[h - 2].add(r)
        }
    }

    /// Step h's interval in units of the spread (h >= 2), nil until it has 20 errors.
    func bounds(step h: Int) -> (Double, Double)? {
        let w = windows[h - 2]
        guard w.count >= 20 else { return nil }
        let a = alpha[h - 2]
        return (w.quantile(a / 2)!, w.quantile(1 - a / 2)!)
    }

    var bytesHeld: Int {
        windows.reduce(0) { $0 + $1.bytesHeld } + paths.reduce(0) { $0 + $1.capacity * 8 } + (alpha.capacity + issuedAt.capacity) * 8
    }

    mutating func rescale(by factor: Double) {
        for i in windows.indices { windows[i].rescale(by: factor) }
    }

    /// Puts back what a snapshot kept; ignored when it was made for another horizon.
    mutating func restore(residuals: [[Double]], alpha: [Double]) {
        guard residuals.count == windows.count, alpha.count == windows.count else { return }
        for (i, r) in residuals.enumerated() {
            var w = ResidualWindow(capacity: windows[i].capacity)
            for x in r { w.add(x) }
            windows[i] = w
        }
        self.alpha = alpha.map { $0.isFinite ? min(1, max(0, $0)) : targetAlpha }
    }
}
