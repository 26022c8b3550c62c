@testable import Daemon
import Forecast
import XCTest

/// The one settings table: every engine setting can be set from the file and as a flag, both
/// reach the engine, and messages name the setting as the user wrote it.
final class SettingsTests: XCTestCase {
    let source = "[[source]]\ntable = \"public.r\"\nseries_column = \"s\"\ntime_column = \"t\"\nvalue_column = \"v\"\n"

    /// A valid value other than the default, as TOML text and as flag text.
    func otherValue(_ s: Setting) -> (toml: String, flag: String) {
        let d = s.get(DaemonConfig.defaults)
        switch (s.kind, d) {
        case (.int, .int(let n)?): return ("\(n + 1)", "\(n + 1)")
        case (.int, nil): return ("96", "96")
        case (.number, .number(let x)?):
            let v = x == 0 ? 0.1 : x / 2
            return ("\(v)", "\(v)")
        case (.number, nil): return ("0.5", "0.5")
        case (.bool, .bool(let b)?): return ("\(!b)", "\(!b)")
        case (.sizes, _): return ("[16, 8]", "16,8")
        case (.choice(let names), .string(let current)?):
            let other = names.first { $0 != current }!
            return ("\"\(other)\"", other)
        default:
            XCTFail("no other value for \(s.path)")
            return ("", "")
        }
    }

    func testEverySettingCanBeSetInTheFileAndAsAFlagWithTheSameEffect() throws {
        for s in Settings.all where s.flag != nil {
            let v = otherValue(s)
            let file = try DaemonConfig.parse(source + "[\(s.table)]\n\(s.key) = \(v.toml)\n", file: "t.toml")
            var flagged = DaemonConfig.defaults
            try Settings.apply(flags: ["--\(s.flag!)", v.flag], to: &flagged)
            XCTAssertNotEqual(s.describe(file), s.defaultDescription, s.path)
            XCTAssertEqual(s.describe(file), s.describe(flagged), s.path)
            XCTAssertNotEqual(file.engine, DaemonConfig.defaults.engine, "\(s.path) reaches the engine")
            XCTAssertEqual(file.engine, flagged.engine, s.path)
            // --flag=value reads the same.
            var equals = DaemonConfig.defaults
            try Settings.apply(flags: ["--\(s.flag!)=\(v.flag)"], to: &equals)
            XCTAssertEqual(equals.engine, flagged.engine, s.path)
        }
    }

    /// Every field of the engine's configuration is reached by some setting: a new field without
    /// a row in the table fails here.
    func testEveryEngineFieldHasASetting() throws {
        func fields(_ e: EngineConfig) -> [String: String] {
            var out: [String: String] = [:]
            for c in Mirror(reflecting: e).children {
                if c.label == "anomaly" {
                    for a in Mirror(reflecting: c.value).children { out["anomaly." + a.label!] = "\(a.value)" }
                } else {
                    out[c.label!] = "\(c.value)"
                }
            }
            return out
        }
        let base = fields(DaemonConfig.defaults.engine)
        var reached = Set<String>()
        for s in Settings.all where s.flag != nil {
            var c = DaemonConfig.defaults
            try Settings.apply(flags: ["--\(s.flag!)", otherValue(s).flag], to: &c)
            for (k, v) in fields(c.engine) where base[k] != v { reached.insert(k) }
        }
        XCTAssertEqual(Set(base.keys).subtracting(reached), [], "engine fields no setting changes")
    }

    func testDefaultsAreTheDaemonsAndFlagsAndKeysAreUnique() {
        let d = DaemonConfig.defaults
        XCTAssertEqual(d.engine.scope, .shared)
        XCTAssertEqual(d.engine.predictThreads, 2)
        XCTAssertEqual(d.trainingMode, .background)
        XCTAssertEqual(Set(Settings.all.map(\.path)).count, Settings.all.count)
        XCTAssertEqual(Set(Settings.all.compactMap(\.flag)).count, Settings.all.compactMap(\.flag).count)
        for s in Settings.all { XCTAssertTrue(Settings.tables.contains(s.table), s.path) }
        XCTAssertTrue(Settings.flagHelp.contains("--anomaly-min-history <n>"), Settings.flagHelp)
    }

    func testFlagErrorsNameTheFlagAsTyped() {
        func message(_ args: [String]) -> String {
            var c = DaemonConfig.defaults
            do {
                try Settings.apply(flags: args, to: &c)
                try c.engine.validate()
                return "no error"
            } catch let e as SettingError {
                return e.message
            } catch {
                return Settings.flagMessage("\(error)")
            }
        }
        XCTAssertEqual(message(["--seq-length", "x"]), "--seq-length: must be an integer, not \"x\"")
        XCTAssertTrue(message(["--scope", "global"]).hasPrefix("--scope: must be one of \"series\", \"shared\""))
        XCTAssertTrue(message(["--hiden", "8"]).hasPrefix("unknown option --hiden"))
        XCTAssertEqual(message(["--warmup"]), "--warmup needs a value (n)")
        XCTAssertTrue(message(["--anomaly-cooldown", "-1"]).hasPrefix("--anomaly-cooldown: must not be negative"), message(["--anomaly-cooldown", "-1"]))
        XCTAssertTrue(message(["--warmup", "10"]).hasPrefix("--warmup: must be greater than seq_length"))
        XCTAssertTrue(message(["--layers", "3", "--hidden", "8,4"]).isEmpty == false)
        XCTAssertEqual(message(["--hidden", "8,4", "--layers", "3"]), "--layers: disagrees with the 2 sizes in hidden")
    }

    func testTheSameSettingsParseFromCRLFText() throws {
        let lf = source + "[model]\nhidden = 8\nlayers = 1\n"
        let crlf = lf.replacingOccurrences(of: "\n", with: "\r\n")
        XCTAssertEqual(try DaemonConfig.parse(crlf, file: "crlf.toml"), try DaemonConfig.parse(lf, file: "crlf.toml").withFile("crlf.toml"))
    }

    /// A reload is judged against what the daemon started with: two reloads in a row still say a
    /// restart is needed, and live settings never do.
    func testNeedsRestartIsJudgedAgainstTheStartedConfiguration() throws {
        let started = try DaemonConfig.parse(source, file: "a")
        let changed = try DaemonConfig.parse(source + "[model]\nhidden = 32\n[ingest]\npoll_interval = 1\n", file: "a")
        XCTAssertEqual(ReloadService.needsRestart(started: started, fresh: changed), ["model.hidden"])
        XCTAssertEqual(ReloadService.needsRestart(started: started, fresh: changed), ["model.hidden"], "the second reload too")
        let liveOnly = try DaemonConfig.parse(source + "[ingest]\npoll_interval = 1\nbatch_rows = 7\n[logging]\nlevel = \"debug\"\n", file: "a")
        XCTAssertEqual(ReloadService.needsRestart(started: started, fresh: liveOnly), [])
        let mode = try DaemonConfig.parse(source + "[training]\nmode = \"inline\"\n", file: "a")
        XCTAssertEqual(ReloadService.needsRestart(started: started, fresh: mode), ["training.mode"])
    }
}

extension DaemonConfig {
    func withFile(_ f: String) -> DaemonConfig {
        var c = self
        c.file = f
        return c
    }
}
