import Foundation
import Ingest
import TestSupport
import XCTest

/// The daemon vacuums forecast.ingest_queue after every 10,000 rows it reads, so the rows it
/// deleted do not slow its reads down until autovacuum comes (here: never, it is turned off).
final class QueueVacuumDaemonTests: XCTestCase {
    func testTheDaemonVacuumsTheQueueAfterTenThousandRows() throws {
        let h = try DaemonHarness()
        try h.writeConfig(DaemonHarness.smallModel, batchRows: 2000)
        try h.start()
        try h.admin.execute("ALTER TABLE forecast.ingest_queue SET (autovacuum_enabled = false)")
        let vacuums = "SELECT vacuum_count FROM pg_stat_all_tables WHERE relid = 'forecast.ingest_queue'::regclass"
        let before = try h.count(vacuums)
        try h.admin.execute("""
            INSERT INTO \(h.table) (sensor, ts, reading)
            SELECT 's' || (g % 200), to_timestamp(\(DaemonHarness.t0) + (g / 200) * 60), 10 + sin(g) FROM generate_series(0, 11999) g
            """)
        h.waitFor("SELECT sum(observations) FROM forecast.status") { $0 == "12000" }
        h.waitFor(vacuums) { (Int($0 ?? "") ?? 0) > before }
        XCTAssertGreaterThan(try h.count(vacuums), before, h.log.suffix(2000).description)
        XCTAssertEqual(try h.count("SELECT count(*) FROM forecast.ingest_queue"), 0)
        XCTAssertEqual(h.stop(), 0)
    }
}
