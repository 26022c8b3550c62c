/// The series that share one model, with that model's optimizer state and retraining schedule.
struct ModelGroup {
    let key: String
    var series: [Int] = []
    var model: Model?
    var predictor: Predictor?
    var adam: Adam
    /// Accepted trainings so far; the model's version.
    var version = 0
    /// Versions up to this one exist already (stored by an earlier configuration, or a
    /// rollback): new versions are numbered above it, so no version is ever reused.
    var versionFloor = 0
    /// Trainings started (accepted or not), for per-training seeds.
    var trainings = 0
    /// Usable observations of the group so far.
    var points = 0
    var lastTrainPoints = 0
    var inFlight = false
    var retrains: [RetrainRecord] = []

    init(key: String, learningRate: Float) {
        self.key = key
        adam = Adam(learningRate: learningRate)
    }

    mutating func install(_ model: Model, adam: Adam, version: Int, predictThreads: Int) {
        self.model = model
        self.adam = adam
        self.version = version
        predictor = Predictor(model: model, threads: predictThreads)
    }
}
