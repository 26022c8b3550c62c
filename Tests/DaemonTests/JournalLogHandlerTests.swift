@testable import Daemon
import XCTest

final class JournalLogHandlerTests: XCTestCase {
    /// A series id cannot forge a journal entry or recolour a terminal: one event is one line.
    func testControlCharactersAreEscaped() {
        XCTAssertEqual(JournalLogHandler.escape("series s1\n<0>forged entry"), "series s1\\n<0>forged entry")
        XCTAssertEqual(JournalLogHandler.escape("a\u{1b}[31mred\u{7f}\tb\r"), "a\\x1b[31mred\\x7f\\tb\\r")
        XCTAssertEqual(JournalLogHandler.escape("back\\slash"), "back\\\\slash", "escapes stay unambiguous")
        XCTAssertEqual(JournalLogHandler.escape("plain: ünïcode ok"), "plain: ünïcode ok")
        XCTAssertFalse(JournalLogHandler.escape("x\u{2028}y").contains("\u{2028}"))
    }
}
