import Foundation

/// What a restart needs to go on where the engine stopped, without retraining from scratch:
/// per model group its weights and optimizer state (a `Checkpoint`) and schedule, per series
/// its normalisation, residuals and anomaly history. Windows are not in it: they are the
/// source's own recent rows, which the caller feeds back through `prime(_:)`.
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
}


extension StreamingEngine {
    /// Snapshots of every model group (series that share a model come together).
    public func snapshot() -> [GroupSnapshot] {
        groupsForSnapshot.map { g in
            GroupSnapshot(
                key: g.key, version: g.version, trainings: g.trainings, points: g.points,
                lastTrainPoints: g.lastTrainPoints,
                checkpoint: g.model.map { Checkpoint(model: $0, adam: g.adam).encoded() },
                series: g.series.map { s in
                    let st = seriesForSnapshot(s)
                    return SeriesSnapshot(key: st.key, scalerMean: st.scaler?.mean, scalerStd: st.scaler?.std,
                                          residuals: st.residuals.values, anomaly: st.anomaly.state)
                },
                lastRetrain: g.retrains.last)
        }
    }
}

extension AnomalyScorer {
    /// The scorer's memory, oldest first.
    public struct State: Sendable, Codable, Equatable {
        public var recent: [Double]
        public var history: [Double]
        public var sinceFlag: Int
    }
}
