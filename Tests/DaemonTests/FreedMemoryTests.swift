@testable import Daemon
import ServiceLifecycle
import Logging
import XCTest

final class FreedMemoryTests: XCTestCase {
    /// Memory freed in pieces below the mmap threshold stays resident until the trim: the
    /// series rings and checkpoint buffers the daemon frees are of that kind.
    func testReleaseReturnsFreedHeapPagesToTheKernel() {
        let pieces = 4096, size = 64 << 10   // 256 MB in 64 KB blocks (below glibc's mmap threshold)
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<pieces {
            let p = malloc(size)!
            memset(p, 1, size)   // touch every page
            blocks.append(p)
        }
        // Keep the last block so the heap cannot simply shrink from its top.
        let kept = blocks.removeLast()
        for p in blocks { free(p) }
        let (before, after) = FreedMemory.release()
        free(kept)
        XCTAssertGreaterThan(before - after, 128 << 20, "resident \(before >> 20) MB before the trim, \(after >> 20) MB after")
    }

    /// The service sleeps between trims; a graceful shutdown must not wait out that sleep.
    func testTheServiceEndsAtOnceOnGracefulShutdown() async throws {
        let service = FreedMemoryService(logger: Logger(label: "test"), interval: .seconds(600))
        var config = ServiceGroupConfiguration(services: [.init(service: service)], logger: Logger(label: "test"))
        config.gracefulShutdownSignals = []
        let group = ServiceGroup(configuration: config)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(200))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        XCTAssertLessThan(ContinuousClock.now - started, .seconds(10))
    }
}
