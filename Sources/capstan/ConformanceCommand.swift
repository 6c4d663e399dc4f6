import ArgumentParser
import CapstanSDK
import CapstanStorageTestKit
import Foundation
import PluginHost

/// `capstan plugins test storage PLUGIN.so [--config FILE]`: prove a storage driver keeps the
/// contract (the conformance kit, `CapstanStorageTestKit`). Exit 0 when every check passed, 1
/// when one failed (each failure names its rule), 2 when the plugin could not be tested.
struct StorageTestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Run the storage conformance kit against a plugin file.",
        discussion: """
        Checks that declared capabilities work and undeclared ones answer unimplemented, that \
        every call is idempotent, that errors carry the right codes, that create/delete and \
        publish/unpublish leave no file, mount or loop device behind, that sizes are honoured, \
        that calls on different volumes may run at once, and that data written through one \
        publish is read through another. Loop-device and mount checks need root.
        """)

    @Argument(help: "The plugin shared library (.so).") var plugin: String
    @Option(name: .shortAndLong, help: "The plugin's own settings, a YAML or JSON file (as under `config:` in capstan.yaml).") var config: String?
    @Option(help: "The registered plugin name, when the library registers several storage plugins.") var name: String?
    @Option(help: "A folder for the plugin's state, publish targets and staging paths (default: a new temporary folder, removed after).") var scratch: String?
    @Option(help: "Size of the volumes the kit creates (default 32Mi).") var size: String = "32Mi"
    @Option(help: "StorageClass parameters for createVolume, KEY=VALUE (repeatable).") var parameter: [String] = []
    @Flag(help: "Print the report as JSON.") var json = false

    func run() async throws {
        let (provisioner, scratchURL, state, removeAfter) = try load()
        defer { if removeAfter { try? FileManager.default.removeItem(at: scratchURL) } }
        let bytes: Int64
        do {
            bytes = try Quantity(parsing: size).value
        } catch {
            throw ValidationError("--size: \"\(size)\" is not a size (e.g. 32Mi)")
        }
        guard bytes >= 8 << 20, bytes <= 64 << 30 else { throw ValidationError("--size: between 8Mi and 64Gi") }
        var parameters: [String: String] = [:]
        for entry in parameter {
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else { throw ValidationError("--parameter: \"\(entry)\" is not KEY=VALUE") }
            parameters[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        let report = await StorageTestKit.run(provisioner, options: .init(scratch: scratchURL.appendingPathComponent("kit"), watchedFolders: [state], volumeSize: bytes, parameters: parameters))
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        } else {
            for check in report.checks { print(check.line) }
            let failed = report.failures.count
            print("\(report.checks.count - failed) of \(report.checks.count) checks passed" + (failed > 0 ? "; broken rules: \(report.brokenRules.joined(separator: ", "))" : ""))
        }
        if !report.passed { throw ExitCode(1) }
    }

    private func load() throws -> (any StorageProvisioner, URL, URL, Bool) {
        let scratchURL = URL(fileURLWithPath: scratch ?? NSTemporaryDirectory() + "capstan-storage-test-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: scratchURL, withIntermediateDirectories: true)
        let path = URL(fileURLWithPath: plugin).standardizedFileURL.path
        var settings: JSONValue?
        if let config {
            do {
                settings = try HostConfiguration.pluginSettings(file: config)
            } catch {
                FileHandle.standardError.write(Data("capstan: --config \(config): \(error)\n".utf8))
                throw ExitCode(2)
            }
        }
        let state = scratchURL.appendingPathComponent("state")
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: path, config: settings)], stateDirectory: state.path, source: "plugins test")
        let host = PluginHost.load(configuration)
        guard let provisioner = host.registry.storage(named: name) else {
            let reason = host.reports.first?.failure?.message ?? host.reports.first?.plugins.compactMap(\.failure).first?.message ?? "it registers no storage plugin\(name.map { " named \"\($0)\"" } ?? "")"
            FileHandle.standardError.write(Data("capstan: cannot test \(path): \(reason)\n".utf8))
            throw ExitCode(2)
        }
        return (provisioner, scratchURL, state, scratch == nil)
    }
}

/// `capstan plugins test KIND …`.
struct PluginTestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Run a plugin kind's conformance kit against a plugin file.",
        subcommands: [StorageTestCommand.self])
}

/// `capstan conformance storage --plugin FILE.so`: the kit's first spelling, kept for scripts.
struct ConformanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conformance",
        abstract: "Run a plugin kind's conformance kit (same as `capstan plugins test`).",
        shouldDisplay: false,
        subcommands: [Storage.self])

    struct Storage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Same as `capstan plugins test storage PLUGIN.so`.")
        @Option(help: "The plugin shared library (.so).") var plugin: String
        @Option(help: "The registered plugin name.") var name: String?
        @Option(help: "A folder for volumes and publish targets.") var scratch: String?

        func run() async throws {
            var arguments = [plugin]
            if let name { arguments += ["--name", name] }
            if let scratch { arguments += ["--scratch", scratch] }
            let command = try StorageTestCommand.parse(arguments)
            try await command.run()
        }
    }
}

/// `capstan plugins call storage PLUGIN.so --state DIR VERB ARGS…`: one call of a storage
/// plugin, in a process of its own — for a vendor tracing a bug, and for the crash tests (which
/// end the process in the middle of a call and run the call again).
struct StorageCallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storage",
        abstract: "Make one call of a storage plugin and print its answer as JSON.",
        discussion: """
        VERB and ARGS: create NAME SIZE [SNAPSHOT] | delete ID | expand ID SIZE | stage ID PATH | \
        unstage ID PATH | publish ID TARGET [STAGING] | unpublish ID TARGET | snapshot NAME ID | \
        delete-snapshot ID | list | capabilities. A plugin error exits 1 with its code and message.
        """)

    @Argument(help: "The plugin shared library (.so).") var plugin: String
    @Option(help: "The plugin's state directory (kept between calls).") var state: String
    @Option(name: .shortAndLong, help: "The plugin's own settings, a YAML or JSON file.") var config: String?
    @Option(help: "The node name the plugin is told.") var node: String = "local"
    @Flag(help: "Publish read-only.") var readOnly = false
    @Argument(help: "The call and its arguments.") var call: [String]

    func run() async throws {
        var settings: JSONValue?
        if let config { settings = try HostConfiguration.pluginSettings(file: config) }
        let path = URL(fileURLWithPath: plugin).standardizedFileURL.path
        let host = PluginHost.load(HostConfiguration(pluginPaths: [], plugins: [.init(path: path, config: settings)], stateDirectory: state, source: "plugins call"), nodeName: node)
        guard let storage = host.registry.storage(named: nil) else {
            let reason = host.reports.first?.failure?.message ?? host.reports.first?.plugins.compactMap(\.failure).first?.message ?? "it registers no storage plugin"
            FileHandle.standardError.write(Data("capstan: cannot load \(path): \(reason)\n".utf8))
            throw ExitCode(2)
        }
        func argument(_ index: Int, _ what: String) throws -> String {
            guard call.count > index else { throw ValidationError("\(call.first ?? "call") needs \(what)") }
            return call[index]
        }
        func bytes(_ text: String) throws -> Int64 {
            guard let quantity = try? Quantity(parsing: text), quantity.value > 0, quantity.value <= 1 << 50 else { throw ValidationError("\"\(text)\" is not a size from 1 byte to 1Pi (e.g. 64Mi)") }
            return quantity.value
        }
        var answer: [String: String] = [:]
        do {
            switch call.first ?? "" {
            case "create":
                let info = try await storage.createVolume(CreateVolumeRequest(name: try argument(1, "NAME"), sizeBytes: try bytes(try argument(2, "SIZE")), nodeName: node, sourceSnapshotID: call.count > 3 ? call[3] : nil))
                answer = ["volumeID": info.volumeID, "sizeBytes": String(info.sizeBytes)]
            case "delete":
                try await storage.deleteVolume(DeleteVolumeRequest(volumeID: try argument(1, "ID")))
            case "expand":
                let info = try await storage.expandVolume(ExpandVolumeRequest(volumeID: try argument(1, "ID"), sizeBytes: try bytes(try argument(2, "SIZE"))))
                answer = ["volumeID": info.volumeID, "sizeBytes": String(info.sizeBytes)]
            case "stage":
                let staging = try argument(2, "PATH")
                try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
                try await storage.stageVolume(StageVolumeRequest(volumeID: try argument(1, "ID"), stagingPath: staging))
            case "unstage":
                try await storage.unstageVolume(UnstageVolumeRequest(volumeID: try argument(1, "ID"), stagingPath: try argument(2, "PATH")))
            case "publish":
                let result = try await storage.publishVolume(PublishVolumeRequest(volumeID: try argument(1, "ID"), targetPath: try argument(2, "TARGET"), readOnly: readOnly, stagingPath: call.count > 3 ? call[3] : nil))
                answer = ["targetPath": result.targetPath]
            case "unpublish":
                try await storage.unpublishVolume(UnpublishVolumeRequest(volumeID: try argument(1, "ID"), targetPath: try argument(2, "TARGET")))
            case "snapshot":
                let info = try await storage.createSnapshot(CreateSnapshotRequest(name: try argument(1, "NAME"), sourceVolumeID: try argument(2, "ID")))
                answer = ["snapshotID": info.snapshotID, "sizeBytes": String(info.sizeBytes)]
            case "delete-snapshot":
                try await storage.deleteSnapshot(DeleteSnapshotRequest(snapshotID: try argument(1, "ID")))
            case "list":
                for volume in try await storage.listVolumes() { answer[volume.volumeID] = String(volume.sizeBytes) }
            case "capabilities":
                let capabilities = storage.capabilities
                answer = ["topology": capabilities.topology.rawValue, "expansion": "\(capabilities.expansion)", "snapshots": "\(capabilities.snapshots)",
                          "stageUnstage": "\(capabilities.stageUnstage)", "onlineExpansion": "\(capabilities.onlineExpansion)",
                          "enforcesSize": "\(capabilities.enforcesSize)", "restoreFromSnapshot": "\(capabilities.restoreFromSnapshot)",
                          "accessModes": capabilities.accessModes.map(\.rawValue).sorted().joined(separator: ",")]
            default:
                throw ValidationError("unknown call \"\(call.first ?? "")\"; see `capstan plugins call storage --help`")
            }
        } catch let error as PluginError {
            FileHandle.standardError.write(Data("capstan: \(call.first ?? "call") failed: PluginError.\(error.code): \(error.message)\n".utf8))
            throw ExitCode(1)
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        print(String(decoding: try encoder.encode(answer), as: UTF8.self))
    }
}

/// `capstan plugins call KIND …`.
struct PluginCallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call",
        abstract: "Make one call of a plugin, for tracing a driver.",
        subcommands: [StorageCallCommand.self])
}
