import Foundation
import PackagePlugin

/// Compiles `sql/NNN_*.sql` into the Ingest module, so the binary carries its own migrations
/// (nothing to install under /usr/share) and the schema version is derived from them.
@main
struct EmbedMigrations: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let sql = context.package.directoryURL.appending(path: "sql")
        let files = try FileManager.default.contentsOfDirectory(at: sql, includingPropertiesForKeys: nil)
            .filter { $0.pathExtension == "sql" }
            .sorted { $0.lastPathComponent < $1.lastPathComponent }
        let output = context.pluginWorkDirectoryURL.appending(path: "EmbeddedMigrations.swift")
        // The directory is an input too, and the tool lists it when it runs: SwiftPM does not
        // always ask the plugin again when a file is added, but the directory's mtime changes.
        return [.buildCommand(
            displayName: "Embedding \(files.count) SQL migrations",
            executable: try context.tool(named: "EmbedMigrationsTool").url,
            arguments: [output.path, sql.path],
            inputFiles: files + [sql],
            outputFiles: [output])]
    }
}
