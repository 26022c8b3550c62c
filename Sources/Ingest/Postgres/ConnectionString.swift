import Foundation
import CLibPQ

/// What libpq makes of a connection string, used to say where a connection goes without
/// repeating the password.
public struct ConnectionTarget: Sendable, CustomStringConvertible {
    public var host: String?
    public var port: String?
    public var database: String?
    public var user: String?
    var password: String?

    /// Parses a URL or key=value string with libpq's own parser (so it accepts exactly what
    /// libpq accepts), filling unset fields from PG* environment variables as libpq would.
    public init(parsing conninfo: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        guard let options = PQconninfoParse(conninfo, &err) else {
            let text = err.map { String(cString: $0) } ?? "out of memory"
            if let err { PQfreemem(err) }
            throw PostgresError(.badConnectionString,
                                "invalid database URL: \(Self.redact(text.trimmed, secret: nil, in: conninfo))")
        }
        defer { PQconninfoFree(options) }
        var values: [String: String] = [:]
        var p = options
        while let keyword = p.pointee.keyword {
            if let v = p.pointee.val { values[String(cString: keyword)] = String(cString: v) }
            p += 1
        }
        let env = { (name: String) -> String? in
            getenv(name).map { String(cString: $0) }
        }
        host = values["host"] ?? values["hostaddr"] ?? env("PGHOST")
        port = values["port"] ?? env("PGPORT")
        database = values["dbname"] ?? env("PGDATABASE")
        user = values["user"] ?? env("PGUSER")
        password = values["password"]
    }

    public var description: String {
        let h = host.flatMap { $0.isEmpty ? nil : $0 } ?? "/var/run/postgresql (default socket)"
        var s = h.hasPrefix("/") ? "socket \(h)" : "host \(h)"
        s += " port \(port ?? "5432")"
        if let database { s += " database \(database)" }
        if let user { s += " user \(user)" }
        return s
    }

    /// Removes the password (and a URL's userinfo password) from text that libpq may echo back.
    static func redact(_ text: String, secret: String?, in conninfo: String) -> String {
        var out = text
        if let secret, !secret.isEmpty { out = out.replacingAll(secret, with: "***") }
        // Best effort for strings libpq could not parse: hide anything after "password=" and the
        // password part of "scheme://user:password@".
        if let r = conninfo.range(of: "password=") {
            let rest = conninfo[r.upperBound...].prefix { $0 != " " && $0 != "&" }
            if !rest.isEmpty { out = out.replacingAll(String(rest), with: "***") }
        }
        if let scheme = conninfo.range(of: "://"),
           let at = conninfo[scheme.upperBound...].firstIndex(of: "@") {
            let userinfo = conninfo[scheme.upperBound..<at]
            if let colon = userinfo.firstIndex(of: ":") {
                let pw = String(userinfo[userinfo.index(after: colon)...])
                if !pw.isEmpty { out = out.replacingAll(pw, with: "***") }
            }
        }
        return out
    }
}

extension String {
    var trimmed: String {
        var s = Substring(self)
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        return String(s)
    }

    func replacingAll(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var result = ""
        var rest = Substring(self)
        while let r = rest.range(of: target) {
            result += rest[..<r.lowerBound]
            result += replacement
            rest = rest[r.upperBound...]
        }
        return result + rest
    }
}
