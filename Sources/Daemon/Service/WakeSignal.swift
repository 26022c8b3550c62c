import Foundation

/// A self-pipe that ends a blocking wait at once: a stop, a reload or a finished training
/// writes to it, and the ingest loop's poll() on the database socket also watches it. No
/// sleeping in small steps to notice that something happened.
final class WakeSignal: @unchecked Sendable {
    private let readFD: Int32
    private let writeFD: Int32

    init() {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { fatalError("pipe() failed: \(String(cString: strerror(errno)))") }
        readFD = fds[0]
        writeFD = fds[1]
        for fd in fds { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    }

    deinit {
        close(readFD)
        close(writeFD)
    }

    /// The descriptor that becomes readable when signalled.
    var fd: Int32 { readFD }

    func signal() {
        var b: UInt8 = 1
        _ = write(writeFD, &b, 1)  // a full pipe already wakes the reader
    }

    /// Empties the pipe; true if it had been signalled.
    @discardableResult
    func drain() -> Bool {
        var buf = [UInt8](repeating: 0, count: 64)
        var any = false
        while read(readFD, &buf, buf.count) > 0 { any = true }
        return any
    }

    /// Waits until signalled or `seconds` pass (the signal is left for the caller to drain).
    func wait(seconds: Double) {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let left = deadline.timeIntervalSinceNow
            if left <= 0 { return }
            var p = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
            let r = poll(&p, 1, Int32(min(left, 3600) * 1000))
            if r > 0 || (r < 0 && errno != EINTR) { return }
        }
    }
}
