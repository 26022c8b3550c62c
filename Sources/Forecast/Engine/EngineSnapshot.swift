import CKernels
import Foundation

#if _endian(big)
#error("the engine state is written little-endian straight from memory")
#endif

/// What a restart needs to go on where the engine stopped, without retraining from scratch:
/// per model group its weights and optimizer state (a `Checkpoint`) and schedule, per series
/// its normalisation, residuals, anomaly history and window (from version 8: before, every
/// window was read back from the source, which at steady state was most of a restart). Rows
/// after a series' window are the source's, fed back through `prime(_:)`.
public struct GroupSnapshot: Sendable, Codable, Equatable {
    public var key: String
    public var version: Int
    public var trainings: Int
    public var points: Int
    public var lastTrainPoints: Int
    /// `Checkpoint.encoded()` of the model and its Adam state; nil before the first model.
    public var checkpoint: [UInt8]?
    public var series: [SeriesSnapshot]
    public var lastRetrain: RetrainRecord?
}

public struct SeriesSnapshot: Sendable, Codable, Equatable {
    public var key: String
    public var scalerMean: Double?
    public var scalerStd: Double?
    public var residuals: [Double]
    public var anomaly: AnomalyScorer.State
    /// Nil in states written before the blend existed (version 2): the blend starts afresh.
    public var blend: PersistenceBlend? = nil
    /// A horizon model's residuals of steps 2...H and their adapted miscoverage levels (empty for
    /// a next-step model, and in states before version 5: the per-step intervals start afresh).
    public var stepResiduals: [[Double]] = []
    public var stepAlpha: [Double] = []
    /// The series' kept values (nil in states before version 8, and before its first value).
    public var window: SeriesWindow? = nil
}

/// A series' kept raw values, oldest first, and what the engine knows of their times.
public struct SeriesWindow: Sendable, Codable, Equatable {
    public var values: [Double]
    /// Index-aligned with `values`: points judged anomalous (out of training and scaling).
    public var flagged: [Bool]
    /// The time of the newest value: the source's rows after it are the ones a restart reads.
    public var lastTime: Double
    /// The last steps between values (at most 16), for the time of the next forecast.
    public var steps: [Double]
    public var observations: Int
    public var minimum: Double

    /// The step the series' forecasts take (the median of `steps`).
    public var typicalStep: Double { SeriesState.typicalStep(steps) }
}


extension StreamingEngine {
    /// Snapshots of every model group (series that share a model come together).
    public func snapshot() -> [GroupSnapshot] {
        groupsForSnapshot.map { g in
            var snap = header(g)
            snap.series = g.series.map(seriesSnapshot)
            return snap
        }
    }

    /// Every group's snapshot encoded (`SnapshotCodec`), with the group's fields but no series:
    /// what a checkpoint writes. Each series is snapshotted as the encoder reaches it, so a
    /// checkpoint holds the encoded bytes and one series' state at a time, not every series'
    /// state a second time in `Double`s (at steady state that was twice the engine's memory).
    public func encodedSnapshots() -> [(group: GroupSnapshot, bytes: [UInt8])] {
        groupsForSnapshot.map { g in
            var w = StateWriter(header: header(g), series: g.series.map(seriesForSnapshot), threads: config.predictThreads)
            return (w.header, w.nextPart(limit: .max)!)
        }
    }

    func header(_ g: ModelGroup) -> GroupSnapshot {
        GroupSnapshot(key: g.key, version: g.version, trainings: g.trainings, points: g.points,
                      lastTrainPoints: g.lastTrainPoints,
                      checkpoint: g.model.map { Checkpoint(model: $0, adam: g.adam).encoded() },
                      series: [], lastRetrain: g.retrains.last)
    }

    private func seriesSnapshot(_ s: Int) -> SeriesSnapshot { Self.snapshot(of: seriesForSnapshot(s)) }

    static func snapshot(of st: SeriesState) -> SeriesSnapshot {
        SeriesSnapshot(key: st.key, scalerMean: st.scaler?.mean, scalerStd: st.scaler?.std,
                              residuals: st.residuals.values, anomaly: st.anomaly.state, blend: st.blend,
                              stepResiduals: st.horizon?.windows.map(\.values) ?? [],
                              stepAlpha: st.horizon?.alpha ?? [], window: st.window)
    }
}

extension AnomalyScorer {
    /// The scorer's memory, oldest first.
    public struct State: Sendable, Codable, Equatable {
        public var recent: [Double]
        public var history: [Double]
        public var sinceFlag: Int
        public var previousRed = false
        public var valueMin = Double.infinity
        public var valueMax = -Double.infinity
        public var valueCount = 0
        /// The level-shift checks (day-long and short windows).
        public var shift = LevelShiftDetector.State()
        public var shortShift = LevelShiftDetector.State()
        /// The contextual check (empty in states before version 6: it starts afresh).
        public var context = SeasonalContextDetector.State()
    }
}

/// Compact binary form of a group snapshot for forecast.models.engine_state: thousands of series
/// with hundreds of residuals each must not turn every checkpoint into megabytes of JSON.
/// Residual and score histories are stored as Float32 (they only feed quantiles and means).
public enum SnapshotCodec {
    static let magic: [UInt8] = Array("FCSTDENG".utf8)
    /// 3 adds each series' persistence blend, 4 the short level-shift check and both checks'
    /// windows; version 2 and 3 states still decode (the short check then starts afresh and
    /// the day check takes the window the settings and the series' step give).
    /// 5 adds a horizon model's per-step residuals and levels, 6 the contextual check, 7 packs
    /// what the engine holds in two bytes (the checks' histories and the contextual check's
    /// values) in two bytes here too, where that is lossless. 8 adds each series' window, 9 the
    /// contextual check's slots (its values are slot means) and its last window of deviations.
    static let version: UInt32 = 9

    public static func encode(_ g: GroupSnapshot) -> [UInt8] {
        encode(g, seriesCount: g.series.count) { g.series[$0] }
    }

    /// The form an earlier version wrote (6: every list as Float32, 7: no windows), for the
    /// tests that old states still restore.
    static func encode(_ g: GroupSnapshot, version: UInt32) -> [UInt8] {
        precondition((6...Self.version).contains(version), "only versions 6 to 9 are written")
        return encode(g, seriesCount: g.series.count, version: version) { g.series[$0] }
    }

    /// Encodes a group whose series come one at a time from `series` (0..<seriesCount); the
    /// fields of `g` other than `series` are the group's.
    /// `threads` > 1 encodes series side by side: `series` is then called from several threads.
    public static func encode(_ g: GroupSnapshot, seriesCount: Int, threads: Int = 1, series: (Int) -> SeriesSnapshot) -> [UInt8] {
        encode(g, seriesCount: seriesCount, version: version, threads: threads, series: series)
    }

    private static func encode(_ g: GroupSnapshot, seriesCount: Int, version: UInt32, threads: Int = 1,
                               series: (Int) -> SeriesSnapshot) -> [UInt8] {
        var parts = PartEncoder(g, seriesCount: seriesCount, version: version, threads: threads)
        // Sized from the first series: one allocation, not a doubling (and a copy) at each
        // power of two, which at steady state briefly held the state up to three times.
        parts.add(count: seriesCount, reserving: seriesCount, series)
        return parts.finish()
    }

    /// A group's state encoded a part at a time: the header, the series as they are added,
    /// then the checksum. The parts joined are the bytes `encode` gives, so a checkpoint can
    /// write each part as it is made and hold one part at a time, not the whole state.
    public struct PartEncoder: Sendable {
        private var w = Writer()
        private var crc = CRC32.Running()
        private let threads: Int
        /// Bytes of the header (the first part, until something is taken).
        public let headerBytes: Int
        public private(set) var seriesAdded = 0
        private let seriesCount: Int

        public init(_ g: GroupSnapshot, seriesCount: Int, threads: Int = 1) {
            self.init(g, seriesCount: seriesCount, version: SnapshotCodec.version, threads: threads)
        }

        init(_ g: GroupSnapshot, seriesCount: Int, version: UInt32, threads: Int) {
            self.threads = threads
            self.seriesCount = seriesCount
            w.packed = version >= 7
            w.windows = version >= 8
            w.slots = version >= 9
            w.bytes += magic
            w.u32(version)
            w.string(g.key)
            w.i64(g.version); w.i64(g.trainings); w.i64(g.points); w.i64(g.lastTrainPoints)
            w.blob(g.checkpoint)
            // Keys sorted: the same state gives the same bytes (and checksum) every time.
            let json = JSONEncoder()
            json.outputFormatting = .sortedKeys
            if let r = g.lastRetrain, let text = try? json.encode(r) { w.blob([UInt8](text)) } else { w.blob(nil) }
            w.i64(seriesCount)
            headerBytes = w.bytes.count
        }

        /// Bytes made and not taken yet.
        public var pending: Int { w.bytes.count }
        /// Bytes made so far, taken or not, the header's included.
        public var made: Int { taken + w.bytes.count }
        private var taken = 0
        public var isComplete: Bool { seriesAdded == seriesCount }

        /// Adds the next `count` series, `series(k)` giving the k-th of them. `threads` > 1
        /// encodes them side by side (`series` is then called from several threads), a batch at
        /// a time, each into a buffer of its own, appended in order: the bytes are those of one
        /// thread. `reserving`: series the part will hold, to size it from the first one.
        public mutating func add(count: Int, reserving: Int = 0, _ series: (Int) -> SeriesSnapshot) {
            precondition(seriesAdded + count <= seriesCount, "more series than the header announced")
            var done = 0
            while done < count {
                let batch = min(count - done, done == 0 ? 1 : 256)
                let first = done, packed = w.packed, windows = w.windows, slots = w.slots
                let parts = parallelMap(batch, threads: threads) { k in
                    var part = Writer()
                    part.packed = packed
                    part.windows = windows
                    part.slots = slots
                    part.series(series(first + k))
                    return part.bytes
                }
                let before = w.bytes.count
                for p in parts { w.bytes += p }
                if done == 0 && reserving > 1 {
                    w.bytes.reserveCapacity(w.bytes.count + (w.bytes.count - before) * (reserving - 1) * 21 / 20 + 4)
                }
                done += batch
            }
            seriesAdded += count
        }

        /// The bytes made so far (at most the first `limit` of them), for writing; the checksum
        /// counts them as they are taken.
        public mutating func take(upTo limit: Int = .max) -> [UInt8] {
            let n = min(limit, w.bytes.count)
            let out = n == w.bytes.count ? w.bytes : Array(w.bytes[..<n])
            w.bytes = n == w.bytes.count ? [] : Array(w.bytes[n...])
            out.withUnsafeBufferPointer { crc.update($0) }
            taken += n
            return out
        }

        /// The last part: what was not taken, and the checksum of all the parts.
        public mutating func finish() -> [UInt8] {
            precondition(isComplete, "\(seriesCount - seriesAdded) of the group's series were not added")
            var last = take()
            withUnsafeBytes(of: crc.value.littleEndian) { last += $0 }
            return last
        }
    }

    public static func decode(_ bytes: [UInt8]) throws -> GroupSnapshot {
        var series: [SeriesSnapshot] = []
        var g = try decode(bytes) { series.append($0) }
        g.series = series
        return g
    }

    /// The group's fields (with no series) after each series was handed to `body` as it was
    /// decoded: a restart holds one series' state in `Double`s at a time, not all of them
    /// (at steady state that was twice the engine's memory, on top of the stored bytes).
    public static func decode(_ bytes: [UInt8], eachSeries body: (SeriesSnapshot) throws -> Void) throws -> GroupSnapshot {
        try decode(StoredState(label: "", bytes: bytes), eachSeries: body)
    }

    /// The same from a state read a part at a time (`StoredState`): the parts are checked
    /// (the trailing CRC) as they arrive, so a state that turns out corrupted is reported only
    /// after its series were handed on; a caller keeps them aside until this returns. `header`
    /// sees the group's fields before any series (a model that does not fit is known before
    /// its series are read).
    private static func bad(_ why: String) -> ForecastError { .invalidSetting("engine state: \(why)") }

    public static func decode(_ state: StoredState, header: (GroupSnapshot) throws -> Void = { _ in },
                              eachSeries body: (SeriesSnapshot) throws -> Void) throws -> GroupSnapshot {
        guard state.count >= magic.count + 8 else { throw bad("not a forecastd engine state") }
        var r = Reader(state)
        do {
            return try decode(&r, header: header, eachSeries: body)
        } catch let e as ForecastError {
            // A state whose bytes were damaged fails to decode somewhere; say that, not where.
            if (try? r.finish()) == false { throw bad("checksum mismatch (corrupted)") }
            throw e
        }
    }

    private static func decode(_ r: inout Reader, header: (GroupSnapshot) throws -> Void,
                               eachSeries body: (SeriesSnapshot) throws -> Void) throws -> GroupSnapshot {
        let p = try r.take(magic.count)
        guard Array(r.buffer[p..<(p + magic.count)]) == magic else { throw bad("not a forecastd engine state") }
        let stored = try r.u32()
        guard (2...version).contains(stored) else { throw bad("unsupported version \(stored)") }
        let key = try r.string()
        let v = try r.i64(), t = try r.i64(), p2 = try r.i64(), l = try r.i64()
        let cp = try r.blob()
        let retrain = try r.blob().flatMap { try? JSONDecoder().decode(RetrainRecord.self, from: Data($0)) }
        let group = GroupSnapshot(key: key, version: v, trainings: t, points: p2, lastTrainPoints: l, checkpoint: cp,
                                  series: [], lastRetrain: retrain)
        try header(group)
        let n = try r.i64()
        guard n >= 0 && n < 10_000_000 else { throw bad("bad series count") }
        for _ in 0..<n {
            let k = try r.string()
            let m = try r.f64(), sd = try r.f64()
            let res = try r.floats(), rec = try r.floats(), hist = stored >= 7 ? try r.halves() : try r.floats()
            let since = try r.i64()
            let bits = try r.u32()
            let vMin = try r.f64(), vMax = try r.f64(), vCount = try r.i64()
            let shiftValues = try r.floats(), shiftHistory = stored >= 7 ? try r.halves() : try r.floats()
            let sinceShift = try r.i64()
            var blend: PersistenceBlend?
            if stored >= 3 {
                let errors = try (0..<PersistenceBlend.weights.count).map { _ in try r.f64() }
                blend = PersistenceBlend(errors: errors, scored: try r.i64())
            }
            var shortShift = LevelShiftDetector.State(), shiftWindow = 0
            if stored >= 4 {
                shiftWindow = max(0, try r.i64())
                let window = max(0, try r.i64())
                let values = try r.floats(), history = stored >= 7 ? try r.halves() : try r.floats(), since = try r.i64()
                shortShift = .init(window: window, values: values, history: history, red: bits & 4 != 0,
                                   sinceFlag: since < 0 ? Int.max : since)
            }
            var stepResiduals: [[Double]] = [], stepAlpha: [Double] = []
            if stored >= 5 {
                let steps = try r.i64()
                guard steps >= 0 && steps <= 10_000 else { throw bad("bad step count") }
                for _ in 0..<steps { stepResiduals.append(try r.floats()) }
                stepAlpha = try r.floats()
            }
            var context = SeasonalContextDetector.State()
            if stored >= 6 {
                let period = max(0, try r.i64())
                let (form, values) = stored >= 7 ? try r.blocks() : (nil, try r.floats())
                let history = stored >= 7 ? try r.halves() : try r.floats(), since = try r.i64()
                let review = max(0, try r.i64()), fit = try r.i64()
                context = .init(period: period, values: values, history: history, red: bits & 8 != 0,
                                sinceFlag: since < 0 ? Int.max : since, sinceReview: review, sinceFit: fit < 0 ? Int.max : fit)
                if let form { context.sealed = form }
                if stored >= 9 {
                    context.slot = max(0, try r.i64()); context.slotSum = try r.f64(); context.slotCount = max(0, try r.i64())
                    let k = try r.i64()
                    guard k >= 0 && k <= 100_000 else { throw bad("bad deviation count") }
                    context.deviations = try (0..<k).map { _ in try r.f64() }
                    context.deviationHead = max(0, try r.i64()); context.deviationSum = try r.f64()
                }
            }
            let window = stored >= 8 ? try r.window() : nil
            let anomaly = AnomalyScorer.State(recent: rec, history: hist, sinceFlag: since < 0 ? Int.max : since,
                                              previousRed: bits & 1 != 0, valueMin: vMin, valueMax: vMax,
                                              valueCount: max(0, vCount),
                                              shift: .init(window: shiftWindow, values: shiftValues, history: shiftHistory, red: bits & 2 != 0,
                                                           sinceFlag: sinceShift < 0 ? Int.max : sinceShift),
                                              shortShift: shortShift, context: context)
            try body(SeriesSnapshot(key: k, scalerMean: m.isNaN ? nil : m, scalerStd: sd.isNaN ? nil : sd, residuals: res,
                                    anomaly: anomaly, blend: blend, stepResiduals: stepResiduals, stepAlpha: stepAlpha,
                                    window: window))
        }
        guard try r.finish() else { throw bad("checksum mismatch (corrupted)") }
        return group
    }

    private struct Writer: Sendable {
        var bytes: [UInt8] = []

        /// One series' fields, in the order `decode` reads them.
        mutating func series(_ s: SeriesSnapshot) {
            string(s.key)
            f64(s.scalerMean ?? .nan); f64(s.scalerStd ?? .nan)
            floats(s.residuals); floats(s.anomaly.recent); halves(s.anomaly.history)
            i64(s.anomaly.sinceFlag == Int.max ? -1 : s.anomaly.sinceFlag)
            let a = s.anomaly
            u32((a.previousRed ? 1 : 0) | (a.shift.red ? 2 : 0) | (a.shortShift.red ? 4 : 0) | (a.context.red ? 8 : 0))
            f64(a.valueMin); f64(a.valueMax); i64(a.valueCount)
            floats(a.shift.values); halves(a.shift.history)
            i64(a.shift.sinceFlag == Int.max ? -1 : a.shift.sinceFlag)
            let b = s.blend ?? PersistenceBlend()
            for e in b.errors { f64(e) }
            i64(b.scored)
            i64(a.shift.window); i64(a.shortShift.window)
            floats(a.shortShift.values); halves(a.shortShift.history)
            i64(a.shortShift.sinceFlag == Int.max ? -1 : a.shortShift.sinceFlag)
            i64(s.stepResiduals.count)
            for r in s.stepResiduals { floats(r) }
            floats(s.stepAlpha)
            i64(a.context.period)
            blocks(a.context); halves(a.context.history)
            i64(a.context.sinceFlag == Int.max ? -1 : a.context.sinceFlag)
            i64(a.context.sinceReview); i64(a.context.sinceFit == Int.max ? -1 : a.context.sinceFit)
            if slots {
                i64(a.context.slot); f64(a.context.slotSum); i64(a.context.slotCount)
                i64(a.context.deviations.count)
                for d in a.context.deviations { f64(d) }
                i64(a.context.deviationHead); f64(a.context.deviationSum)
            }
            if windows { window(s.window) }
        }

        /// Values as they are (a window's values are the source's, kept exactly), flags one bit each.
        mutating func window(_ w: SeriesWindow?) {
            guard let w else { i64(-1); return }
            i64(w.values.count)
            bytes.reserveCapacity(bytes.count + w.values.count * 8 + w.values.count / 8 + 64)
            w.values.withUnsafeBytes { bytes += $0 }
            var byte: UInt8 = 0
            for (i, f) in w.flagged.enumerated() {
                if f { byte |= 1 << UInt8(i & 7) }
                if i & 7 == 7 { bytes.append(byte); byte = 0 }
            }
            if w.flagged.count & 7 != 0 { bytes.append(byte) }
            f64(w.lastTime)
            i64(w.steps.count)
            for d in w.steps { f64(d) }
            i64(w.observations)
            f64(w.minimum)
        }

        /// False writes the versions before 8, without windows.
        var windows = true
        /// False writes the versions before 9, whose contextual values are points.
        var slots = true

        /// Version 7's two-byte lists; false writes version 6's Float32 ones.
        var packed = true
        mutating func u32(_ x: UInt32) { withUnsafeBytes(of: x.littleEndian) { bytes += $0 } }
        mutating func i64(_ x: Int) { withUnsafeBytes(of: Int64(x).littleEndian) { bytes += $0 } }
        mutating func f64(_ x: Double) { withUnsafeBytes(of: x.bitPattern.littleEndian) { bytes += $0 } }
        mutating func string(_ s: String) { blob(Array(s.utf8)) }
        mutating func blob(_ b: [UInt8]?) {
            guard let b else { i64(-1); return }
            i64(b.count)
            bytes += b
        }
        mutating func floats(_ xs: [Double]) {
            i64(xs.count)
            let fs = xs.map { Float($0) }
            fs.withUnsafeBytes { bytes += $0 }  // little-endian (checked at the top of the file)
        }
        mutating func u16(_ x: UInt16) { withUnsafeBytes(of: x.littleEndian) { bytes += $0 } }

        /// Values that are Float16 multiples of one power of two (`HalfStats`, the residual
        /// check's scores) in two bytes each; anything else as `floats`. Lossless either way.
        mutating func halves(_ xs: [Double]) {
            guard packed else { floats(xs); return }
            let largest = xs.reduce(0.0) { max($0, abs($1)) }
            let e = largest > 0 && largest.isFinite ? largest.exponent - 14 : 0
            let unit = Double(sign: .plus, exponent: e, significand: 1)
            var codes = [UInt16](repeating: 0, count: xs.count)
            guard fk_halves_pack(xs, xs.count, unit, &codes) == 1 else {
                bytes.append(0)
                floats(xs)
                return
            }
            bytes.append(1)
            i64(e)
            i64(xs.count)
            codes.withUnsafeBytes { bytes += $0 }
        }

        /// The contextual check's values: each full block of `HalfRing.blockSize` as the ring
        /// sealed it (median, scale, two-byte offsets), and the open block as Float32. Values
        /// not in the ring's form (an older state's) are sealed here, each block kept so when
        /// that gives its values back exactly, otherwise written as Float32.
        mutating func blocks(_ c: SeasonalContextDetector.State) {
            guard packed, let form = c.sealed else { blocks(c.values); return }
            let b = HalfRing.blockSize
            i64(form.count)
            bytes.reserveCapacity(bytes.count + form.medians.count * (9 + 2 * b) + 4 * form.open.count)
            for k in form.medians.indices {
                bytes.append(1)
                u32(form.medians[k].bitPattern)
                u32(form.scales[k].bitPattern)
                form.codes[(k * b)..<((k + 1) * b)].withUnsafeBytes { bytes += $0 }
            }
            for x in form.open { u32(x.bitPattern) }
        }

        mutating func blocks(_ xs: [Double]) {
            guard packed else { floats(xs); return }
            let b = HalfRing.blockSize
            i64(xs.count)
            var start = 0
            while start + b <= xs.count {
                let block = xs[start..<(start + b)].map { Float($0) }
                let (median, scale, codes) = HalfRing.seal(block)
                if zip(codes, block).allSatisfy({ HalfRing.decode($0, median: median, scale: scale) == $1 }) {
                    bytes.append(1)
                    u32(median.bitPattern)
                    u32(scale.bitPattern)
                    for c in codes { u16(c.bitPattern) }
                } else {
                    bytes.append(0)
                    for v in block { u32(v.bitPattern) }
                }
                start += b
            }
            for x in xs[start...] { u32(Float(x).bitPattern) }
        }
    }

    /// Reads a state's fields in order, pulling its parts as they are needed and checking them
    /// as they arrive. Offsets (`pos`, `end`) count from the state's first byte; `buffer`
    /// holds the bytes from `base` on (the part being read and what is left of the one before).
    private struct Reader {
        private(set) var buffer: [UInt8] = []
        private var base = 0
        var pos = 0
        /// Where the trailing checksum begins.
        let end: Int
        private let count: Int
        private let parts: StoredState.Parts
        private var received = 0
        private var crc = CRC32.Running()
        private var trailer: [UInt8] = []

        init(_ state: StoredState) {
            count = state.count
            parts = state.parts()
            end = state.count - 4
        }

        /// The buffer index of the next `n` bytes, which are then read.
        mutating func take(_ n: Int) throws -> Int {
            // `n <= end - pos`, not `pos + n <= end`: a huge stored length must not overflow.
            guard n >= 0, n <= end - pos else { throw ForecastError.invalidSetting("engine state: truncated (a length of \(n) bytes at offset \(pos))") }
            if pos + n > received { try fill(pos + n) }
            defer { pos += n }
            return pos - base
        }

        /// Pulls parts until the bytes up to `upTo` are held, dropping those read already.
        private mutating func fill(_ upTo: Int) throws {
            buffer.removeSubrange(0..<(pos - base))
            base = pos
            while received < upTo {
                guard let part = try parts.next() else {
                    throw ForecastError.invalidSetting("engine state: truncated (\(received) of \(count) bytes)")
                }
                absorb(part)
            }
        }

        private mutating func absorb(_ part: [UInt8]) {
            let checked = max(0, min(part.count, end - received))
            part.withUnsafeBufferPointer { crc.update(UnsafeBufferPointer(rebasing: $0[..<checked])) }
            trailer += part[checked...]
            if buffer.isEmpty { buffer = part } else { buffer += part }
            received += part.count
        }

        /// After the last field: pulls what is left (the trailing checksum) and tells whether
        /// the bytes match it and are exactly as many as stated.
        mutating func finish() throws -> Bool {
            buffer = []
            base = pos
            while let part = try parts.next() { absorb(part); buffer = [] }
            guard received == count, trailer.count == 4 else { return false }
            let stored = (0..<4).reduce(UInt32(0)) { $0 | UInt32(trailer[$1]) << (8 * UInt32($1)) }
            return stored == crc.value
        }

        mutating func u32() throws -> UInt32 {
            let p = try take(4)
            return (0..<4).reduce(0) { $0 | UInt32(buffer[p + $1]) << (8 * UInt32($1)) }
        }
        mutating func u64() throws -> UInt64 {
            let p = try take(8)
            return (0..<8).reduce(0) { $0 | UInt64(buffer[p + $1]) << (8 * UInt64($1)) }
        }
        mutating func i64() throws -> Int { Int(Int64(bitPattern: try u64())) }
        mutating func f64() throws -> Double { Double(bitPattern: try u64()) }
        mutating func blob() throws -> [UInt8]? {
            let n = try i64()
            if n < 0 { return nil }
            let p = try take(n)
            return Array(buffer[p..<(p + n)])
        }
        mutating func string() throws -> String {
            guard let b = try blob() else { throw ForecastError.invalidSetting("engine state: missing name") }
            return String(decoding: b, as: UTF8.self)
        }
        mutating func floats() throws -> [Double] {
            let n = try i64()
            guard n >= 0, n <= (end - pos) / 4 else { throw ForecastError.invalidSetting("engine state: bad length \(n) at offset \(pos)") }
            return try load(n, as: UInt32.self).map { Double(Float(bitPattern: $0)) }
        }
        /// `n` little-endian integers of type `T`, read in one pass.
        mutating func load<T: FixedWidthInteger>(_ n: Int, as: T.Type) throws -> [T] {
            let p = try take(n * MemoryLayout<T>.size)
            return buffer.withUnsafeBytes { b in
                (0..<n).map { T(littleEndian: b.loadUnaligned(fromByteOffset: p + MemoryLayout<T>.size * $0, as: T.self)) }
            }
        }
        mutating func window() throws -> SeriesWindow? {
            let n = try i64()
            if n == -1 { return nil }
            guard n >= 0, n <= (end - pos) / 8 else { throw ForecastError.invalidSetting("engine state: bad window length \(n) at offset \(pos)") }
            let values = try load(n, as: UInt64.self).map(Double.init(bitPattern:))
            let q = try take((n + 7) / 8)
            let flagged = (0..<n).map { i in buffer[q + i >> 3] & (1 << UInt8(i & 7)) != 0 }
            let last = try f64()
            let k = try i64()
            guard (0...16).contains(k) else { throw ForecastError.invalidSetting("engine state: bad step count \(k) at offset \(pos)") }
            let steps = try (0..<k).map { _ in try f64() }
            let observations = try i64(), minimum = try f64()
            return SeriesWindow(values: values, flagged: flagged, lastTime: last, steps: steps,
                                observations: max(0, observations), minimum: minimum)
        }
        mutating func u8() throws -> UInt8 { let p = try take(1); return buffer[p] }
        mutating func u16() throws -> UInt16 {
            let p = try take(2)
            return UInt16(buffer[p]) | UInt16(buffer[p + 1]) << 8
        }
        mutating func halves() throws -> [Double] {
            switch try u8() {
            case 0: return try floats()
            case 1:
                let e = try i64()
                guard (-1100...1100).contains(e) else { throw ForecastError.invalidSetting("engine state: bad unit 2^\(e) at offset \(pos)") }
                let n = try i64()
                guard n >= 0, n <= (end - pos) / 2 else { throw ForecastError.invalidSetting("engine state: bad length \(n) at offset \(pos)") }
                let unit = Double(sign: .plus, exponent: e, significand: 1)
                let codes = try load(n, as: UInt16.self)
                guard n > 0 else { return [] }
                return [Double](unsafeUninitializedCapacity: n) { out, initialized in
                    fk_halves_unpack(codes, n, unit, out.baseAddress!)
                    initialized = n
                }
            case let tag: throw ForecastError.invalidSetting("engine state: unknown packing \(tag) at offset \(pos - 1)")
            }
        }
        /// The contextual check's values: in the ring's own form when every full block was
        /// stored sealed (the usual case), else as values.
        mutating func blocks() throws -> (HalfRing.Sealed?, [Double]) {
            let n = try i64()
            guard n >= 0, n <= (end - pos) / 2 else { throw ForecastError.invalidSetting("engine state: bad length \(n) at offset \(pos)") }
            let b = HalfRing.blockSize
            var form = HalfRing.Sealed()
            // Sized once: these arrays become the restored ring's own.
            form.medians.reserveCapacity(n / b)
            form.scales.reserveCapacity(n / b)
            form.codes.reserveCapacity(n / b * b)
            form.open.reserveCapacity(b)
            var plain: [Double]?
            var done = 0
            while done + b <= n {
                switch try u8() {
                case 0:
                    if plain == nil { plain = form.values.map(Double.init) }
                    for _ in 0..<b { plain!.append(Double(Float(bitPattern: try u32()))) }
                case 1:
                    let median = Float(bitPattern: try u32()), scale = Float(bitPattern: try u32())
                    let codes = try load(b, as: UInt16.self).map(Float16.init(bitPattern:))
                    if plain != nil {
                        for c in codes { plain!.append(Double(HalfRing.decode(c, median: median, scale: scale))) }
                    } else {
                        form.medians.append(median)
                        form.scales.append(scale)
                        form.codes += codes
                    }
                case let tag: throw ForecastError.invalidSetting("engine state: unknown packing \(tag) at offset \(pos - 1)")
                }
                done += b
            }
            while done < n {
                let v = Float(bitPattern: try u32())
                if plain != nil { plain!.append(Double(v)) } else { form.open.append(v) }
                done += 1
            }
            return plain.map { (nil, $0) } ?? (form, [])
        }
    }
}
