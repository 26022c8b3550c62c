/// One flag per incident for a check over a window of points: after a flag the check rests
/// while the incident is inside its window (`rest` points) and until its score has fallen well
/// below the threshold, so a change that stays in view pages once.
struct IncidentGate: Sendable {
    var red = false
    var sinceFlag = Int.max

    /// Counts one more point since the last flag.
    mutating func tick() {
        if sinceFlag < Int.max { sinceFlag += 1 }
    }

    /// Whether this score raises a flag.
    mutating func flags(_ score: Double, threshold: Double, rest: Int) -> Bool {
        if score >= threshold && !red && sinceFlag > rest {
            red = true
            sinceFlag = 0
            return true
        }
        if score < 0.6 * threshold { red = false }
        return false
    }
}
