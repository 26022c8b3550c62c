import ArgumentParser
import Foundation

/// An error meant for the person at the terminal: printed as one line, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Runs a command body and turns any error into one line on stderr and a non-zero exit, instead
/// of a stack trace or ArgumentParser's generic wording.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let e as ExitCode {
        throw e
    } catch {
        printError("forecastd: \(error)")
        throw ExitCode(1)
    }
}

func printError(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}
