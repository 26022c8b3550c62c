import CSystemd
import Foundation

/// The sd_notify protocol: READY, STATUS, WATCHDOG, RELOADING, STOPPING. Without NOTIFY_SOCKET
/// (not under systemd) every call is a no-op, so the daemon runs the same by hand.
struct SystemdNotifier: Sendable {
    /// The watchdog interval systemd asked for (WatchdogSec=), if any.
    let watchdogInterval: Double?

    init() {
        var usec: UInt64 = 0
        watchdogInterval = sd_watchdog_enabled(0, &usec) > 0 && usec > 0 ? Double(usec) / 1e6 : nil
    }

    var enabled: Bool { ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil }

    func ready(status: String) { send("READY=1\nSTATUS=\(status)") }
    func status(_ text: String) { send("STATUS=\(text)") }
    func watchdog() { send("WATCHDOG=1") }
    func stopping(status: String) { send("STOPPING=1\nSTATUS=\(status)") }

    /// RELOADING=1 must carry the monotonic time for Type=notify-reload; plain Type=notify
    /// ignores it.
    func reloading() {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        let usec = UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
        send("RELOADING=1\nMONOTONIC_USEC=\(usec)")
    }

    private func send(_ state: String) {
        guard enabled else { return }
        _ = sd_notify(0, state)
    }
}
