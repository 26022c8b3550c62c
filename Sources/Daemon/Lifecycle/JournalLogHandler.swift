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
        line += Self.escape("\(event.message)")
        for (k, v) in merged.sorted(by: { $0.key < $1.key }) { line += " \(Self.escape(k))=\(Self.escape("\(v)"))" }
        line += "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// One event is one line: control characters (a newline in a series id, an escape
    /// sequence) are written as \n, \r, \t or \xNN, and a backslash as \\, so text from a
    /// source can neither start a forged journal entry (`\n<0>...`) nor recolour a terminal.
    static func escape(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7f || $0 == "\\" || $0 == "\u{2028}" || $0 == "\u{2029}" })
        else { return text }
        var out = ""
        for u in text.unicodeScalars {
            switch u {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\\": out += "\\\\"
            case "\u{2028}", "\u{2029}": out += String(format: "\\u%04x", u.value)
            default:
                if u.value < 0x20 || u.value == 0x7f { out += String(format: "\\x%02x", u.value) } else { out.unicodeScalars.append(u) }
            }
        }
        return out
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
