import Foundation
import Logging

/// Logs one line per event to stderr with a syslog priority prefix (`<3>` error … `<7>` debug),
/// which journald turns into the entry's priority; outside systemd the prefix is dropped and a
/// timestamp is printed instead. Secrets never reach here: callers log targets, not URLs.
struct JournalLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    /// The level lives in a shared box so that SIGHUP can change it for every logger at once.
    var logLevel: Logger.Level {
        get { levelBox.get().loggerLevel }
        set {}
    }
    let levelBox: LogLevelBox
    let label: String
    let underSystemd: Bool

    init(label: String, levelBox: LogLevelBox) {
        self.label = label
        self.levelBox = levelBox
        let env = ProcessInfo.processInfo.environment
        underSystemd = env["JOURNAL_STREAM"] != nil || env["INVOCATION_ID"] != nil
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        var line = underSystemd ? "<\(Self.priority(event.level))>" : "\(Self.timestamp()) \(event.level) "
        line += "\(event.message)"
        for (k, v) in merged.sorted(by: { $0.key < $1.key }) { line += " \(k)=\(v)" }
        line += "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    static func timestamp() -> String {
        var t = time(nil)
        var tm = tm()
        gmtime_r(&t, &tm)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                      tm.tm_hour, tm.tm_min, tm.tm_sec)
    }
}

extension LogLevel {
    var loggerLevel: Logger.Level {
        switch self {
        case .debug: return .debug
        case .info: return .info
        case .notice: return .notice
        case .warning: return .warning
        case .error: return .error
        }
    }
}

/// The current log level, shared by all handlers.
final class LogLevelBox: @unchecked Sendable {
    private let lock = NSLock()
    private var level: LogLevel
    init(_ level: LogLevel) { self.level = level }
    func get() -> LogLevel { lock.lock(); defer { lock.unlock() }; return level }
    func set(_ l: LogLevel) { lock.lock(); level = l; lock.unlock() }
}
