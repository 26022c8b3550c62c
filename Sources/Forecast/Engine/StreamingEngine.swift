import Foundation

/// The one streaming code path: observations in, forecasts, intervals and anomaly flags out.
/// The daemon feeds it rows from PostgreSQL, `replay` feeds it history from a file or a table;
/// it knows neither. Deterministic for a seed and an input order.
public final class StreamingEngine {
    public enum TrainingMode: Sendable {
        /// Train when due, before the next forecast (backtests: exactly RP-1's schedule).
        case inline
        /// Hand due trainings out through `takeTrainingJobs()`; predictions go on with the current
        /// model until `install(_:)` (the daemon: ingest never waits for training).
        case deferred
    }

    public let config: EngineConfig
    /// Flags of rows primed before a stored state was installed (a caller that primes, then
    /// restores), per series, until the state is installed: installing replaces the scorer.
    private var primedFlags: [Int: Int] = [:]
    public let mode: TrainingMode
    private var groups: [ModelGroup] = []
    private var groupIndex: [String: Int] = [:]
    private var series: [SeriesState] = []
    private var seriesIndex: [String: Int] = [:]
    private var pendingInternals: [Int: PendingInternals] = [:]
    private var jobs: [TrainingJob] = []
    private var versionFloors: [String: Int] = [:]
    private let codec: WindowCodec
    private let keep: Int
    private let zLow: Double, zHigh: Double

    /// Seconds spent training and predicting (for reports).
    public private(set) var trainSeconds = 0.0
    public private(set) var predictSeconds = 0.0
    public private(set) var rejected: [String: [RowIssue: Int]] = [:]

    /// What is needed to score a forecast once its actual arrives.
    private struct PendingInternals {
        var uHat: Double
        var previousRaw: Double
        /// The model's own forecast and persistence, in model space, for the blend's record
        /// (nil for a forecast re-armed after a restart).
        var blendInputs: (model: Double, persistence: Double)? = nil
    }

    public init(config: EngineConfig, mode: TrainingMode = .inline) throws {
        try config.validate()
        self.config = config
        self.mode = mode
        codec = WindowCodec(normalization: config.normalization, seqLength: config.seqLength)
        keep = max(config.history, config.warmup, config.seqLength) + 2
        let tail = (1 - config.coverage) / 2
        zLow = tail
        zHigh = 1 - tail
    }

    // MARK: ingest

    /// Processes observations (any mix of series; each series in time order) and returns one
    /// result per observation, in input order. Several points of one series are taken one at a
    /// time in rounds, so a catch-up batch gives exactly what one-by-one arrival would.
    public func process(_ batch: [Observation]) -> [ScoredObservation] {
        var results = [ScoredObservation?](repeating: nil, count: batch.count)
        // Per series, the positions of its observations in `batch`, in order.
        var queues: [Int: [Int]] = [:]
        var order: [Int] = []
        for (i, o) in batch.enumerated() {
            let s = seriesFor(o.series)
            if queues[s] == nil { order.append(s) }
            queues[s, default: []].append(i)
        }
        var round = 0
        while true {
            var toForecast: [Int] = []
            var any = false
            for s in order {
                guard let q = queues[s], round < q.count else { continue }
                any = true
                let i = q[round]
                let (result, usable) = observe(batch[i], series: s)
                results[i] = result
                if usable { toForecast.append(s) }
            }
            if !any { break }
            trainDueGroups()
            let next = forecast(toForecast)
            for s in order {
                guard let q = queues[s], round < q.count, let f = next[s] else { continue }
                results[q[round]]?.next = f
            }
            round += 1
        }
        return results.map { $0! }
    }

    private func seriesFor(_ key: String) -> Int {
        if let s = seriesIndex[key] { return s }
        let gkey = config.scope == .series ? key : ""
        let g: Int
        if let existing = groupIndex[gkey] {
            g = existing
        } else {
            g = groups.count
            groups.append(ModelGroup(key: gkey, learningRate: config.learningRate))
            groups[g].versionFloor = versionFloors[gkey] ?? 0
            groupIndex[gkey] = g
        }
        let s = series.count
        series.append(SeriesState(key: key, groupIndex: g, keep: keep, config: config))
        seriesIndex[key] = s
        groups[g].series.append(s)
        return s
    }

    /// Scores the pending forecast against the new value and appends it. Returns whether the
    /// value was used (and so a new forecast is due).
    private func observe(_ o: Observation, series s: Int) -> (ScoredObservation, Bool) {
        observe(o, series: s, state: &series[s])
    }

    /// `st` is `series[s]`, mutated in place (a copy would copy its windows on every append).
    private func observe(_ o: Observation, series s: Int, state st: inout SeriesState) -> (ScoredObservation, Bool) {
        var out = ScoredObservation(observation: o, forecast: nil, anomalyScore: 0, isAnomaly: false, next: nil, rejected: nil)
        func reject(_ r: RowIssue) -> (ScoredObservation, Bool) {
            out.rejected = r
            rejected[o.series, default: [:]][r, default: 0] += 1
            return (out, false)
        }
        if let last = st.lastTime {
            if o.time == last { return reject(.duplicateTime) }
            if o.time < last { return reject(.outOfOrderTime) }
        }
        guard let value = o.value else { return reject(.nullValue) }
        guard value.isFinite else { return reject(.nonFiniteValue) }
        guard config.transform.accepts(value) else { return reject(.notPositiveValue) }

        var flagged = false
        if let f = st.pending, let p = pendingInternals[s] {
            out.forecast = f
            // A forecast implies a scaler. The residual is in the units of the current one, like
            // the residual window (a retrain in between re-expresses both).
            if let uActual = config.transform.forward(value, previous: p.previousRaw), let scaler = st.scaler {
                let r = (uActual - p.uHat) / scaler.std
                let center = st.residuals.quantile(0.5) ?? 0
                let scale = robustScale(st.residuals)
                // A series' first score (or first after a restart): the level-shift windows follow
                // its step, and a new series' value checks learn the history the model warmed up
                // on (days of it when the daemon starts on a filled table).
                if st.anomaly.needsStep { st.anomaly.learn(history: st.rawValues, step: st.typicalStep) }
                let (score, isAnomaly) = st.anomaly.score(residual: r - center, scale: scale, value: value)
                out.anomalyScore = score
                out.isAnomaly = isAnomaly
                if isAnomaly { out.reason = st.anomaly.lastReason }
                flagged = isAnomaly
                // Steps 2...H of earlier paths are scored against the same value.
                st.horizon?.observed(uActual, index: st.observations, std: scaler.std, record: !isAnomaly)
                // An anomaly's residual would widen every interval after it; keep it out.
                if !isAnomaly {
                    st.residuals.add(r)
                    if let b = p.blendInputs, let memory = config.blendMemory {
                        st.blend.record(actual: uActual, model: b.model, persistence: b.persistence, memory: memory)
                    }
                }
            }
        }
        st.pending = nil
        pendingInternals[s] = nil
        st.append(value, time: o.time)
        if flagged { st.markLastFlagged() }
        groups[st.groupIndex].points += 1
        return (out, true)
    }

    private func robustScale(_ w: ResidualWindow) -> Double {
        guard w.count >= 20, let q1 = w.quantile(0.25), let q3 = w.quantile(0.75) else { return 1 }
        let iqr = (q3 - q1) / 1.349
        return iqr > 1e-9 ? iqr : 1
    }

    // MARK: training

    private func trainDueGroups(firstOnly: Bool = false) {
        for g in groups.indices {
            let grp = groups[g]
            guard !grp.inFlight, !firstOnly || grp.model == nil else { continue }
            // A shared model counts warm-up and retraining in points per series, so that a
            // thousand series do not retrain a thousand times as often as one.
            let scale = config.scope == .shared ? max(1, grp.series.count) : 1
            let due: Bool
            let epochs: Int
            if grp.model == nil {
                due = grp.points >= config.warmup * scale
                epochs = config.initialEpochs
            } else {
                due = config.epochs > 0 && grp.points - grp.lastTrainPoints >= config.retrainEvery * scale
                epochs = config.epochs
            }
            guard due, let job = makeJob(group: g, epochs: epochs) else { continue }
            groups[g].lastTrainPoints = grp.points
            groups[g].trainings += 1
            switch mode {
            case .inline:
                install(job.run())
            case .deferred:
                groups[g].inFlight = true
                jobs.append(job)
            }
        }
    }

    private func makeJob(group g: Int, epochs: Int) -> TrainingJob? {
        let L = config.seqLength, H = config.horizon
        // Windows without a flagged point (inputs or targets), per series. Counted first and
        // encoded afterwards, so that only the windows kept under the cap are ever materialised
        // (with thousands of series and full histories, encoding all of them would take gigabytes).
        // With a season, a window whose targets reach back before the history's start would see
        // a stand-in instead of its seasonal values, unlike every forecast: those are left out.
        func usableWindows(_ u: [Double], _ flags: [Bool], period: Int?) -> [Int] {
            let n = max(0, u.count - L - H + 1)
            let first = min(n, max(0, (period ?? 0) - L))
            // Prefix count of flagged points, to drop windows that contain an anomaly.
            var flaggedBefore = [Int](repeating: 0, count: u.count + 1)
            for i in 0..<u.count { flaggedBefore[i + 1] = flaggedBefore[i] + (flags[i] ? 1 : 0) }
            guard config.excludeAnomaliesFromTraining else { return Array(first..<n) }
            return (first..<n).filter { flaggedBefore[$0 + L + H] == flaggedBefore[$0] }
        }
        var counted: [(s: Int, windows: Int)] = []
        var total = 0
        for s in groups[g].series {
            detectPeriod(s, again: true)
            let (u, flags) = series[s].modelSpace(last: config.history, transform: config.transform)
            guard u.count >= L + H else { continue }
            let n = usableWindows(u, flags, period: series[s].period).count
            total += n
            counted.append((s, n))
        }
        guard total > 0 else { return nil }
        // Keep the newest windows of every series in proportion when over the cap.
        let cap = config.maxTrainWindows ?? Int.max
        var tx: [Float] = [], ty: [Float] = [], ts: [Float] = [], hx: [Float] = [], hy: [Float] = [], hs: [Float] = []
        let skip = config.usesSeason
        var seasonalInputs = [Float](repeating: 0, count: H)
        var scalers: [(Int, Scaler)] = []
        scalers.reserveCapacity(counted.count)
        var window = [Float](repeating: 0, count: L)
        for (s, count) in counted {
            let (u, flags) = series[s].modelSpace(last: config.history, transform: config.transform)
            let scaler = Scaler(fitting: u, skipping: config.excludeAnomaliesFromTraining ? flags : nil,
                                for: config.normalization)
            scalers.append((s, scaler))
            var n = count
            if total > cap { n = min(count, max(1, Int((Double(n) * Double(cap) / Double(total)).rounded(.down)))) }
            let first = count - n
            let holdout = groups[g].model == nil ? 0 : Int((Double(n) * config.holdoutFraction).rounded(.down))
            let split = count - holdout
            let period = series[s].period
            for (k, i) in usableWindows(u, flags, period: period).enumerated() where k >= first {
                let ref = codec.encode(u, end: i + L, scaler: scaler, into: &window, at: 0)
                if skip { seasonalContext(u, last: i + L - 1, period: period, reference: ref, scaler: scaler, into: &seasonalInputs) }
                if k < split {
                    tx.append(contentsOf: window)
                    for h in 0..<H { ty.append(codec.target(u[i + L + h], reference: ref, scaler: scaler)) }
                    if skip { ts.append(contentsOf: seasonalInputs) }
                } else {
                    hx.append(contentsOf: window)
                    for h in 0..<H { hy.append(codec.target(u[i + L + h], reference: ref, scaler: scaler)) }
                    if skip { hs.append(contentsOf: seasonalInputs) }
                }
            }
        }
        guard !ty.isEmpty else { return nil }
        let grp = groups[g]
        var start: Model
        if let m = grp.model {
            start = m
        } else {
            start = try! Model(config: config.modelConfig, seed: config.seed &+ UInt64(g))
        }
        if skip { Self.startSeasonalSkip(&start, windows: tx, seasonal: ts, targets: ty, horizon: H, seqLength: L) }
        // Distinct, reproducible shuffles per training.
        let seed = config.seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(g) &* 1_000_003 &+ UInt64(grp.trainings)
        let job = TrainingJob(groupIndex: g, version: max(grp.version, grp.versionFloor) + 1, epochs: epochs, settings: config,
                              start: start, current: grp.model, adam: grp.adam, x: tx, y: ty, s: ts, hx: hx, hy: hy, hs: hs,
                              scalers: scalers, seed: seed)
        job.origin = ObjectIdentifier(self)
        if H > 1 { job.outputWeights = Self.stepWeights(ty, horizon: H) }
        return job
    }

    /// Looks for the series' season: at every training (its history grows until two seasons
    /// fit), and before the first forecast of a series that has not been trained on.
    private func detectPeriod(_ s: Int, again: Bool = false) {
        guard config.usesSeason, again || !series[s].periodChecked else { return }
        series[s].periodChecked = true
        series[s].period = Seasonality.detectPeriod(series[s].rawValues, step: series[s].typicalStep,
                                                    minimumPoints: config.seqLength, horizon: config.horizon)
    }

    /// The seasonal skip's inputs for a window whose last value is u[last]: per step h, the value
    /// one season before its target, normalised like the window; the last value (persistence)
    /// where the series has no season or the history does not reach back far enough.
    private func seasonalContext(_ u: [Double], last: Int, period: Int?, reference: Double, scaler: Scaler,
                                 into out: inout [Float]) {
        for h in 1...config.horizon {
            let i = Seasonality.laggedIndex(last: last, step: h, period: period) ?? last
            out[h - 1] = Float((u[i] - reference) / scaler.std)
        }
    }

    /// Whether `job` was made by this engine (only then can its outcome be installed here).
    public func owns(_ job: TrainingJob) -> Bool { job.origin == ObjectIdentifier(self) }

    /// Due trainings (deferred mode), for the caller to run off the ingest path.
    public func takeTrainingJobs() -> [TrainingJob] {
        defer { jobs.removeAll() }
        return jobs
    }

    /// Installs a finished training: the new model and its scalers if accepted; otherwise the
    /// current model, optimizer state and scalers stay as they were (the rollback).
    @discardableResult
    public func install(_ outcome: TrainingOutcome) -> RetrainRecord {
        let job = outcome.job
        let g = job.groupIndex
        groups[g].inFlight = false
        trainSeconds += outcome.seconds
        var record = RetrainRecord(version: job.version, atPoint: groups[g].lastTrainPoints, windows: job.windows,
                                   epochs: job.epochs, accepted: false, reason: nil, trainLoss: outcome.trainLoss,
                                   holdoutLoss: outcome.holdoutLoss, currentHoldoutLoss: outcome.currentHoldoutLoss,
                                   seconds: outcome.seconds)
        switch outcome.verdict {
        case .accepted:
            record.accepted = true
            groups[g].install(outcome.model, adam: outcome.adam, version: job.version, predictThreads: config.predictThreads)
            for (s, scaler) in job.scalers {
                // Residuals are kept in units of the scaler's spread: re-express the window in
                // the new units, or a refit spread would widen or narrow every interval (and
                // shift every anomaly score) at once although no forecast error changed.
                if let old = series[s].scaler {
                    series[s].residuals.rescale(by: old.std / scaler.std)
                    series[s].horizon?.rescale(by: old.std / scaler.std)
                }
                series[s].scaler = scaler
            }
        case .worseOnHoldout:
            record.reason = "worse on holdout"
        case .diverged(let why):
            record.reason = "diverged: \(why)"
        }
        groups[g].retrains.append(record)
        return record
    }

    // MARK: forecasting

    /// One batched forward per model group for every series that just got a usable value.
    private func forecast(_ list: [Int]) -> [Int: Forecast] {
        guard !list.isEmpty else { return [:] }
        let t0 = DispatchTime.now().uptimeNanoseconds
        defer { predictSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        let L = config.seqLength, H = config.horizon
        let skip = config.usesSeason
        var byGroup: [Int: [Int]] = [:]
        var groupOrder: [Int] = []
        for s in list where groups[series[s].groupIndex].model != nil {
            let g = series[s].groupIndex
            if byGroup[g] == nil { groupOrder.append(g) }
            byGroup[g, default: []].append(s)
        }
        var out: [Int: Forecast] = [:]
        for g in groupOrder {
            guard let predictor = groups[g].predictor else { continue }
            var members: [(s: Int, ref: Double, scaler: Scaler)] = []
            var windows = [Float](repeating: 0, count: byGroup[g]!.count * L)
            var seasonalInputs = [Float](repeating: 0, count: skip ? byGroup[g]!.count * H : 0)
            var context = [Float](repeating: 0, count: H)
            var u: [Double] = []
            u.reserveCapacity(L + 1)
            for s in byGroup[g]! {
                if skip { detectPeriod(s) }
                let period = skip ? series[s].period : nil
                series[s].modelValues(last: max(L, period ?? 0) + 1, transform: config.transform, into: &u)
                guard u.count >= L else { continue }
                if series[s].scaler == nil {
                    // A series new to a trained shared model: normalise with its own history.
                    let hist = series[s].modelSpace(last: config.history, transform: config.transform)
                    series[s].scaler = Scaler(fitting: hist.u, skipping: config.excludeAnomaliesFromTraining ? hist.flags : nil,
                                              for: config.normalization)
                }
                let scaler = series[s].scaler!
                let ref = codec.encode(u, end: u.count, scaler: scaler, into: &windows, at: members.count * L)
                if skip {
                    seasonalContext(u, last: u.count - 1, period: period, reference: ref, scaler: scaler, into: &context)
                    for h in 0..<H { seasonalInputs[members.count * H + h] = context[h] }
                }
                members.append((s, ref, scaler))
            }
            guard !members.isEmpty else { continue }
            var y = [Float](repeating: 0, count: members.count * H)
            windows.withUnsafeBufferPointer { w in
                seasonalInputs.withUnsafeBufferPointer { sp in
                    y.withUnsafeMutableBufferPointer { yp in
                        predictor.predict(UnsafeBufferPointer(rebasing: w[0..<(members.count * L)]),
                                          seasonal: skip ? UnsafeBufferPointer(rebasing: sp[0..<(members.count * H)]) : nil,
                                          batch: members.count, seqLength: L, into: yp)
                    }
                }
            }
            for (k, m) in members.enumerated() {
                // Read in place: a copy of the series state would retain (and later copy) its windows.
                guard let previous = series[m.s].lastRaw, let time = series[m.s].lastTime else { continue }
                let t = config.transform
                let uModel = codec.decode(y[k * H], reference: m.ref, scaler: m.scaler)
                var uHat = uModel
                var blendInputs: (model: Double, persistence: Double)?
                if config.blendMemory != nil, let uPersist = t.forward(previous, previous: previous) {
                    uHat = series[m.s].blend.blend(model: uModel, persistence: uPersist)
                    blendInputs = (uModel, uPersist)
                }
                let std = m.scaler.std
                let (qLow, qHigh) = series[m.s].residuals.count >= 20
                    ? (series[m.s].residuals.quantile(zLow)!, series[m.s].residuals.quantile(zHigh)!)
                    : (-1.96 * 1.5, 1.96 * 1.5)
                // Counts, rates and percentages never go below zero: neither do their forecasts.
                let floor = config.nonNegative && series[m.s].minimum >= 0 ? 0.0 : -Double.infinity
                let step = series[m.s].typicalStep
                var f = Forecast(time: time + step,
                                 value: max(floor, t.inverse(uHat, previous: previous)),
                                 lower: max(floor, t.inverse(uHat + qLow * std, previous: previous)),
                                 upper: max(floor, t.inverse(uHat + qHigh * std, previous: previous)),
                                 modelVersion: groups[g].version)
                guard f.value.isFinite else { continue }
                if H > 1, series[m.s].horizon != nil {
                    // Steps 2...H straight from the head (level space: the transform is checked),
                    // each with its own residual quantiles.
                    var path = [PathPoint(step: 1, time: f.time, value: f.value, lower: f.lower, upper: f.upper)]
                    var uPath = [uHat]
                    path.reserveCapacity(H)
                    uPath.reserveCapacity(H)
                    for h in 2...H {
                        let uh = codec.decode(y[k * H + h - 1], reference: m.ref, scaler: m.scaler)
                        let spread = 1.96 * 1.5 * Double(h).squareRoot()
                        let (lo, hi) = series[m.s].horizon!.bounds(step: h) ?? (-spread, spread)
                        path.append(PathPoint(step: h, time: time + Double(h) * step, value: max(floor, uh),
                                              lower: max(floor, uh + lo * std), upper: max(floor, uh + hi * std)))
                        uPath.append(uh)
                    }
                    f.path = path
                    f.issuedAt = time
                    series[m.s].horizon!.issued(uPath, after: series[m.s].observations - 1)
                }
                series[m.s].pending = f
                pendingInternals[m.s] = PendingInternals(uHat: uHat, previousRaw: previous, blendInputs: blendInputs)
                out[m.s] = f
            }
        }
        return out
    }

    // MARK: restart

    var groupsForSnapshot: [ModelGroup] { groups }
    func seriesForSnapshot(_ s: Int) -> SeriesState { series[s] }

    /// Puts snapshots back (after a restart). Series named in a snapshot are created in its
    /// group; a checkpoint that does not decode, or that was made for another model shape,
    /// throws and leaves the engine as it was.
    public func restore(_ snapshots: [GroupSnapshot]) throws {
        install(try snapshots.map { g in try prepareRestore(g, series: g.series) })
    }

    /// A stored state (`SnapshotCodec` form) made ready for `install`, decoded a series at a
    /// time into the engine's own form: at steady state the `Double`s of every series at once
    /// were twice the engine's memory. Throws `ModelDoesNotFit` for a model this configuration
    /// cannot use, the decoder's error for a state that does not decode; the engine is unchanged.
    public func prepareRestore(encoded bytes: [UInt8]) throws -> RestoredGroup {
        try prepareRestore(StoredState(label: "", bytes: bytes))
    }

    /// The same from a state read a part at a time: the model is checked against the
    /// configuration before any series is read (`ModelDoesNotFit`), and each part is dropped
    /// once its series are decoded.
    public func prepareRestore(_ state: StoredState) throws -> RestoredGroup {
        var series: [RestoredSeries] = []
        var batch: [SeriesSnapshot] = []
        var group: RestoredGroup?
        // Decoding the bytes is sequential; rebuilding each series' checks from its snapshot
        // (the sorted residual window, the level-shift extremes, sealed blocks, the fitted tail) is most of the work: a batch at a
        // time, split across the forecast threads.
        func build() {
            let current = batch, config = self.config
            batch.removeAll(keepingCapacity: true)
            let steps = current.map(knownStep)
            series += parallelMap(current.count, threads: config.predictThreads) { i in
                Self.restoredSeries(current[i], config: config, step: steps[i])
            }
        }
        _ = try SnapshotCodec.decode(state, header: { group = try prepareRestore($0, series: []) }) { s in
            batch.append(s)
            if batch.count == 256 { build() }
        }
        if !batch.isEmpty { build() }
        group!.series = series
        return group!
    }

    private func prepareRestore(_ snap: GroupSnapshot, series: [SeriesSnapshot]) throws -> RestoredGroup {
        var g = RestoredGroup(header: snap, model: nil, adam: nil, series: series.map(restoredSeries))
        g.header.series = []
        guard let bytes = snap.checkpoint else { return g }
        let model = "model \(snap.key.isEmpty ? "(shared)" : snap.key)"
        let cp: Checkpoint
        do { cp = try Checkpoint(decoding: bytes) } catch { throw ModelDoesNotFit(description: "\(model): \(error)") }
        guard cp.config == config.modelConfig else {
            throw ModelDoesNotFit(description: "\(model): checkpoint has \(cp.config.hiddenSizes) \(cp.config.cell), the configuration asks for \(config.hiddenSizes) \(config.cell)")
        }
        do { g.model = try cp.makeModel() } catch { throw ModelDoesNotFit(description: "\(model): \(error)") }
        g.adam = cp.adam
        return g
    }

    private func restoredSeries(_ ss: SeriesSnapshot) -> RestoredSeries {
        Self.restoredSeries(ss, config: config, step: knownStep(ss))
    }

    /// A stored series' step, from its window (or, for a state without windows, from the series
    /// if primed already), so its checks are built as it is decoded; nil when not known yet.
    private func knownStep(_ ss: SeriesSnapshot) -> Double? {
        ss.window?.typicalStep ?? seriesIndex[ss.key].map { series[$0].typicalStep }
    }

    /// `step`: the series' step (from its window); nil when it is not known yet (its checks
    /// are built at its next value).
    private static func restoredSeries(_ ss: SeriesSnapshot, config: EngineConfig, step: Double?) -> RestoredSeries {
        var w = ResidualWindow(capacity: config.residualWindow)
        for r in ss.residuals { w.add(r) }
        var scorer = AnomalyScorer(config: config.anomaly, state: ss.anomaly)
        if let step { scorer.settleRestored(step: step) }
        return RestoredSeries(key: ss.key, scaler: ss.scalerMean.flatMap { m in ss.scalerStd.map { Scaler(kind: .zScore, mean: m, std: $0) } },
                              residuals: w, anomaly: scorer,
                              blend: ss.blend ?? PersistenceBlend(), stepResiduals: ss.stepResiduals, stepAlpha: ss.stepAlpha,
                              window: ss.window)
    }

    /// Puts prepared groups in: their series are created in their group (or take the stored
    /// state if they exist), each group gets its model, version and schedule.
    public func install(_ restored: [RestoredGroup]) {
        for r in restored {
            for ss in r.series {
                let s = seriesFor(ss.key)
                if let w = ss.window { series[s].restore(w) }
                if let scaler = ss.scaler { series[s].scaler = scaler }
                series[s].residuals = ss.residuals
                series[s].anomaly = ss.anomaly
                series[s].blend = ss.blend
                series[s].horizon?.restore(residuals: ss.stepResiduals, alpha: ss.stepAlpha)
                if let k = primedFlags[s] { series[s].anomaly.noteFlag(pointsAgo: k) }
            }
            let snap = r.header
            guard let first = r.series.first, let g = seriesIndex[first.key].map({ series[$0].groupIndex }) else { continue }
            if let model = r.model, let adam = r.adam { groups[g].install(model, adam: adam, version: snap.version, predictThreads: config.predictThreads) }
            groups[g].trainings = snap.trainings
            // Without a model the warm-up counts the points primed before, as `prime` does.
            groups[g].points = r.model == nil ? max(groups[g].points, snap.points) : snap.points
            groups[g].lastTrainPoints = snap.lastTrainPoints
            if let last = snap.lastRetrain { groups[g].retrains = [last] }
        }
        primedFlags = [:]
    }

    /// Feeds already-processed history (rows up to the persisted watermark) into the series'
    /// windows without scoring, forecasting or counting them as new points.
    /// `flagged` (index-aligned, optional) marks points the daemon flagged before: they stay out
    /// of training and scaling, and each series' cooldown goes on from its last flag.
    /// `newest`: the rows are each series' newest ones up to that many (a query's limit). A
    /// series given that many, all after the window it holds, may be missing rows between the
    /// two: its window is started again from these rows.
    public func prime(_ observations: [Observation], flagged: [Bool] = [], newest: Int? = nil) {
        var sinceFlag: [Int: Int] = [:]
        if let newest { clearWindowsBefore(observations, newest: newest) }
        // A restart's history comes a series at a time: one lookup per run of rows, not per row.
        var last: (key: String, s: Int)?
        for (i, o) in observations.enumerated() {
            guard let v = o.value, v.isFinite, config.transform.accepts(v) else { continue }
            let s: Int
            if let last, last.key == o.series { s = last.s } else { s = seriesFor(o.series); last = (o.series, s) }
            if let last = series[s].lastTime, o.time <= last { continue }
            series[s].append(v, time: o.time)
            if i < flagged.count && flagged[i] {
                series[s].markLastFlagged()
                sinceFlag[s] = 0
            } else if let k = sinceFlag[s] {
                sinceFlag[s] = k + 1
            }
        }
        for (s, k) in sinceFlag { series[s].anomaly.noteFlag(pointsAgo: k) }
        // Kept for a state installed after this history (a restart installs first, then primes).
        for (s, k) in sinceFlag { primedFlags[s] = min(primedFlags[s] ?? k, k) }
        // A model not yet trained counts its warm-up in the points its series hold: a restart or
        // a shard handed over during warm-up would otherwise wait a whole warm-up again for
        // history it already has (no state is stored before the first model).
        for g in groups.indices where groups[g].model == nil {
            groups[g].points = max(groups[g].points, groups[g].series.reduce(0) { $0 + series[$1].raw.count })
        }
    }

    private func clearWindowsBefore(_ observations: [Observation], newest: Int) {
        var given: [Int: (count: Int, first: Double)] = [:]
        for o in observations {
            guard let s = seriesIndex[o.series], series[s].lastTime != nil else { continue }
            let g = given[s]
            given[s] = (count: (g?.count ?? 0) + 1, first: min(g?.first ?? o.time, o.time))
        }
        for (s, g) in given where g.count >= newest {
            if let end = series[s].lastTime, g.first > end { series[s].clearWindow() }
        }
    }

    /// Builds the checks that a restored state could not build while it was decoded (a state
    /// without windows: the step comes from the rows primed since), now rather than at each
    /// series' next value, so a restart's memory is that of the checks, not of the stored lists.
    public func settleRestoredChecks() {
        for s in series.indices where series[s].anomaly.needsStep && series[s].lastTime != nil {
            series[s].anomaly.settleRestored(step: series[s].typicalStep)
        }
    }

    /// Each series' newest kept value (the persistence forecast a restart compares with).
    public var lastValues: [String: Double] {
        var out: [String: Double] = [:]
        out.reserveCapacity(series.count)
        for st in series { if let v = st.lastRaw { out[st.key] = v } }
        return out
    }

    /// The time after which a restart needs `key`'s rows from the source: the newest value its
    /// window holds (nil: no window, or no such series). A window shorter than this engine keeps
    /// while the series has seen more values (a state from settings that kept fewer) is
    /// forgotten here and nil returned, so the restart reads the whole window from the source.
    public func resumeAfter(series key: String) -> Double? {
        guard let s = seriesIndex[key] else { return nil }
        if series[s].raw.count < keep && series[s].observations > series[s].raw.count { series[s].clearWindow() }
        return series[s].lastTime
    }

    /// Starts the first trainings that are due without waiting for a new value: after a restart
    /// or a takeover during warm-up the history alone may complete it. A retrain due by the
    /// restored counters waits for the next value, as it always has (after a rollback the
    /// operator sees the restored weights forecast first).
    public func trainFirstModelsIfDue() { trainDueGroups(firstOnly: true) }

    /// Re-arms the forecast that was pending for `seriesKey` before a restart, so the next value
    /// is scored against what was actually published.
    public func restorePending(series seriesKey: String, forecast f: Forecast) {
        restorePending([(seriesKey, f)])
    }

    /// The same for many series at once: their forecasts are remade in one batched pass (a
    /// restart with 100,000 series would otherwise run 100,000 single forwards).
    public func restorePending(_ list: [(series: String, forecast: Forecast)]) {
        var items: [(s: Int, f: Forecast, uHat: Double, previous: Double)] = []
        items.reserveCapacity(list.count)
        for (key, f) in list {
            guard let s = seriesIndex[key], let previous = series[s].lastRaw, series[s].scaler != nil,
                  let uHat = config.transform.forward(f.value, previous: previous) else { continue }
            items.append((s, f, uHat, previous))
        }
        // The blend learns from the model's own forecast, which was not published: make it
        // again (same model, same window) and keep it if it reproduces what was published, to
        // float precision (a batch of series and a single one go through different kernels).
        let remade = forecast(items.map(\.s))
        for (s, f, uHat, previous) in items {
            let same = remade[s].map { abs($0.value - f.value) <= 1e-6 * max(1, abs(f.value)) } ?? false
            let blendInputs = same ? pendingInternals[s]?.blendInputs : nil
            series[s].pending = f
            pendingInternals[s] = PendingInternals(uHat: uHat, previousRaw: previous, blendInputs: blendInputs)
        }
    }

    /// Forecasts for every series that could have one but has none pending — after a model is
    /// installed for the first time, or after a restart — so users see a forecast without
    /// waiting for the next value to arrive.
    public func forecastMissing() -> [(series: String, forecast: Forecast)] {
        let missing = series.indices.filter { series[$0].pending == nil && groups[series[$0].groupIndex].model != nil }
        let made = forecast(missing)
        return missing.compactMap { s in made[s].map { (series[s].key, $0) } }
    }

    /// The forecast currently waiting for its actual, per series.
    public func pendingForecast(series seriesKey: String) -> Forecast? {
        seriesIndex[seriesKey].flatMap { series[$0].pending }
    }

    /// Model versions up to these (per model key: "" for a shared model) exist already; new
    /// versions are numbered above them.
    public func numberVersions(above floors: [String: Int]) {
        for (k, v) in floors { versionFloors[k] = max(versionFloors[k] ?? 0, v) }
        for g in groups.indices { groups[g].versionFloor = max(groups[g].versionFloor, versionFloors[groups[g].key] ?? 0) }
    }

    /// The installed version of every model (key "" for a shared model; 0: none yet).
    public var modelVersions: [String: Int] {
        Dictionary(groups.map { ($0.key, $0.version) }, uniquingKeysWith: max)
    }

    // MARK: inspection

    /// Retraining history of the model that serves `series`.
    public func retrains(for series: String) -> [RetrainRecord] {
        guard let s = seriesIndex[series] else { return [] }
        return groups[self.series[s].groupIndex].retrains
    }

    public var allRetrains: [RetrainRecord] { groups.flatMap(\.retrains) }

    /// Series this engine follows.
    public var seriesCount: Int { series.count }

    /// Bytes the per-series state holds (values, residuals, anomaly checks; not the models):
    /// what grows with the number of series, so `forecastd bench state` can report it per series.
    public var seriesStateBytes: Int { series.reduce(0) { $0 + $1.bytesHeld } }

    public func modelVersion(for series: String) -> Int? {
        guard let s = seriesIndex[series] else { return nil }
        let v = groups[self.series[s].groupIndex].version
        return v > 0 ? v : nil
    }
}

/// A stored group in the engine's own form (`StreamingEngine.prepareRestore`), ready to install.
public struct RestoredGroup {
    /// The group's fields; its series are in `series`.
    var header: GroupSnapshot
    var model: Model?
    var adam: Adam?
    var series: [RestoredSeries]
    public var key: String { header.key }
    public var version: Int { header.version }
}

struct RestoredSeries {
    var key: String
    var scaler: Scaler?
    var residuals: ResidualWindow
    var anomaly: AnomalyScorer
    var blend: PersistenceBlend
    var stepResiduals: [[Double]]
    var stepAlpha: [Double]
    var window: SeriesWindow?
}

/// A stored model this configuration cannot use (another shape, or weights that do not decode).
public struct ModelDoesNotFit: Error, CustomStringConvertible {
    public var description: String
}
