import ArgumentParser
import CapstanSDK
import Foundation
import PluginHost

/// `capstan conformance storage --plugin FILE.so`: prove a storage driver keeps the contract.
struct ConformanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conformance",
        abstract: "Run a plugin kind's conformance kit against a plugin file.",
        subcommands: [Storage.self])

    struct Storage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a storage provisioner: idempotency, typed errors, publish, expansion, snapshots.")

        @Option(help: "The plugin shared library (.so).") var plugin: String
        @Option(help: "The registered plugin name, when the library registers several storage plugins.") var name: String?
        @Option(help: "A folder for volumes and publish targets (default: a new temporary folder).") var scratch: String?

        func run() async throws {
            let scratchURL = URL(fileURLWithPath: scratch ?? NSTemporaryDirectory() + "capstan-conformance-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: scratchURL, withIntermediateDirectories: true)
            let path = URL(fileURLWithPath: plugin).standardizedFileURL.path
            let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: path)], stateDirectory: scratchURL.appendingPathComponent("state").path, source: "conformance")
            let host = PluginHost.load(configuration)
            guard let provisioner = host.registry.storage(named: name) else {
                let reason = host.reports.first?.failure?.message ?? host.reports.first?.plugins.compactMap(\.failure).first?.message ?? "it registers no storage plugin\(name.map { " named \"\($0)\"" } ?? "")"
                FileHandle.standardError.write(Data("capstan: cannot test \(path): \(reason)\n".utf8))
                throw ExitCode(2)
            }
            let checks = await StorageConformance.run(provisioner, scratch: scratchURL)
            for check in checks {
                print("\(check.passed ? "PASS" : "FAIL")  \(check.name)\(check.detail.map { ": \($0)" } ?? "")")
            }
            let failed = checks.filter { !$0.passed }.count
            print("\(checks.count - failed) of \(checks.count) checks passed")
            if failed > 0 { throw ExitCode(1) }
        }
    }
}
