import Foundation

/// Progress of a long replay on stderr.
///
/// On a terminal: one line redrawn in place, at most ~10 times a second,
/// `[#########-----------] 45% 7,812/17,420 points  1,234 pts/s  ETA 0:08`.
/// Otherwise (a log file, journald, CI): a plain line every 5 seconds, or on crossing a 10 % mark
/// if a second has passed, so logs show progress without a line per point. `finish()` always prints a
/// final line.
///
/// Meant for one producer calling `advance`/`update` from any thread; the lock makes it safe to
/// call from a different thread than the one that created it.
public final class ProgressBar: @unchecked Sendable {
    // @unchecked: all mutable state is behind `lock`. (Synchronization.Mutex would avoid
    // this, but needs macOS 15 and the package still supports macOS 14.)
    private let lock = NSLock()
    private let total: Int
    private let unit: String
    private let label: String?
    private let interactive: Bool
    private let write: @Sendable (String) -> Void
    private let now: @Sendable () -> Double

    private let start: Double
    private var completed = 0
    private var lastDraw = -Double.infinity
    private var lastDecile = 0
    private var finished = false

    /// - Parameters:
    ///   - total: expected count; 0 or less when unknown (no bar, percentage or ETA).
    ///   - interactive: redraw in place; defaults to whether stderr is a terminal.
    ///   - write: where lines go (tests capture them); defaults to stderr.
    ///   - now: a monotonic clock in seconds (tests drive it by hand).
    public init(total: Int, unit: String = "points", label: String? = nil, interactive: Bool? = nil,
                write: (@Sendable (String) -> Void)? = nil, now: (@Sendable () -> Double)? = nil) {
        self.total = total
        self.unit = unit
        self.label = label
        self.interactive = interactive ?? (isatty(STDERR_FILENO) == 1)
        self.write = write ?? { FileHandle.standardError.write(Data($0.utf8)) }
        self.now = now ?? { ProcessInfo.processInfo.systemUptime }
        start = self.now()
    }

    public func advance(by n: Int = 1) {
        lock.lock()
        defer { lock.unlock() }
        guard !finished else { return }
        completed += n
        drawIfDue()
    }

    public func update(completed value: Int) {
        lock.lock()
        defer { lock.unlock() }
        guard !finished else { return }
        completed = value
        drawIfDue()
    }

    /// Prints the final line; later calls to anything are ignored.
    public func finish() {
        lock.lock()
        defer { lock.unlock() }
        guard !finished else { return }
        finished = true
        let elapsed = now() - start
        let line = Self.format(completed: completed, total: total, unit: unit, elapsed: elapsed, done: true, bar: interactive)
        write(interactive ? "\r\(prefix)\(line)\u{1B}[K\n" : "\(prefix)\(line)\n")
    }

    private var prefix: String { label.map { "\($0): " } ?? "" }

    private func drawIfDue() {
        let t = now()
        if interactive {
            guard t - lastDraw >= 0.1 else { return }
        } else {
            let decile = total > 0 ? min(10, completed * 10 / total) : 0
            let sincePrint = t - max(lastDraw, start)
            // A 10 % step prints only if a second has passed, so a fast replay does not print
            // ten lines in a row just before its final one.
            guard sincePrint >= 5 || (decile > lastDecile && sincePrint >= 1) else { return }
            lastDecile = decile
        }
        lastDraw = t
        let line = Self.format(completed: completed, total: total, unit: unit, elapsed: t - start, done: false, bar: interactive)
        write(interactive ? "\r\(prefix)\(line)\u{1B}[K" : "\(prefix)\(line)\n")
    }

    /// One progress line without terminal control characters.
    public static func format(completed: Int, total: Int, unit: String, elapsed: Double, done: Bool, bar: Bool, barWidth: Int = 20) -> String {
        var parts: [String] = []
        if total > 0 {
            let fraction = min(1, max(0, Double(completed) / Double(total)))
            if bar {
                let filled = Int((fraction * Double(barWidth)).rounded(.down))
                parts.append("[" + String(repeating: "#", count: filled) + String(repeating: "-", count: barWidth - filled) + "]")
            }
            parts.append("\(Int((fraction * 100).rounded(.down)))% \(groupThousands(completed))/\(groupThousands(total)) \(unit)")
        } else {
            parts.append("\(groupThousands(completed)) \(unit)")
        }
        var line = parts.joined(separator: " ")
        let rate = elapsed > 0 ? Double(completed) / elapsed : 0
        if elapsed > 0.05 && completed > 0 {
            line += "  \(groupThousands(Int(rate.rounded()))) \(unit == "points" ? "pts" : unit)/s"
        }
        if done {
            line += "  done in \(duration(elapsed))"
        } else if total > 0 && rate > 0 {
            line += "  ETA \(duration(Double(max(0, total - completed)) / rate))"
        } else if total > 0 {
            line += "  ETA -:--"
        }
        return line
    }

    /// 8 → "0:08", 3725 → "1:02:05".
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "-:--" }
        let s = Int(max(0, seconds).rounded())
        let two = { (v: Int) in v < 10 ? "0\(v)" : "\(v)" }
        if s >= 3600 { return "\(s / 3600):\(two(s / 60 % 60)):\(two(s % 60))" }
        return "\(s / 60):\(two(s % 60))"
    }
}
