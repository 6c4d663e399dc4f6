import Foundation
import Testing

/// `capstan plugins …` and `capstan conformance …`, run as a user runs them: the real binary.
@Suite struct PluginsCLITests {
    static let products: URL = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("capstan").path), url.path != "/" { url.deleteLastPathComponent() }
        return url
    }()

    let directory: URL = {
        let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-cli-\(UUID().uuidString.prefix(8))")
        try! FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()

    struct Result {
        var status: Int32
        var output: String
        var error: String
    }

    func capstan(_ arguments: String...) async throws -> Result {
        try await Self.run(arguments, in: directory)
    }

    /// Runs the built `capstan` binary to the end; `environment` entries are added to this process's.
    /// A shell line's standard output.
    static func runShell(_ line: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", line]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: output, as: UTF8.self)
    }

    /// Runs the built `capstan` binary to the end, waiting on a thread of its own: the blocking
    /// reads and `waitUntilExit` must not hold one of the few threads that every test's async
    /// code (and the runtimes under test) share.
    static func run(_ arguments: [String], in directory: URL, environment: [String: String] = [:]) async throws -> Result {
        try await withCheckedThrowingContinuation { continuation in
            // A thread of its own, not Dispatch's global queue: its workers are shared with the
            // code under test (a runtime's helpers), which must not wait behind a CLI run.
            Thread {
                continuation.resume(with: Swift.Result<PluginsCLITests.Result, any Error> { try runBlocking(arguments, in: directory, environment: environment) })
            }.start()
        }
    }

    static func runBlocking(_ arguments: [String], in directory: URL, environment: [String: String] = [:]) throws -> Result {
        let process = Process()
        process.executableURL = products.appendingPathComponent("capstan")
        process.arguments = arguments
        process.currentDirectoryURL = directory
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let error = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(status: process.terminationStatus, output: String(decoding: output, as: UTF8.self), error: String(decoding: error, as: UTF8.self))
    }

    func writeConfig(_ text: String) throws -> String {
        let path = directory.appendingPathComponent("capstan.yaml").path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func listShowsEveryInTreePluginWithVersionsAndHash() async throws {
        let result = try await capstan("plugins", "list")
        #expect(result.status == 0)
        let lines = result.output.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("PLUGIN") == true)
        for name in ["binpack", "spread", "hostpath", "host", "roundrobin", "leastconn", "process"] {
            #expect(lines.contains { $0.hasPrefix(name + " ") && $0.contains("1.0") && $0.contains("loaded") }, "\(name) missing in\n\(result.output)")
        }
        #expect(lines.contains { $0.hasPrefix("binpack ") && $0.hasSuffix("loaded (default)") })
    }

    @Test func verifyPassesAGoodConfig() async throws {
        let config = try writeConfig("""
        pluginPaths: [\(Self.products.path)]
        plugins:
          - name: CapstanSpread
            config: {resources: {memory: 2}}
        defaults: {scheduler: spread}
        """)
        let result = try await capstan("plugins", "verify", "--config", config)
        #expect(result.status == 0, "\(result.error)")
        #expect(result.output.contains("spread") && result.output.contains("loaded (default)"))
    }

    @Test func verifyFailsAndSaysWhy() async throws {
        let config = try writeConfig("""
        pluginPaths: [\(Self.products.path)]
        plugins:
          - name: CapstanBinpack
            sha256: \(String(repeating: "0", count: 64))
          - name: CapstanSpread
            config: {resources: {cpu: -1}}
        defaults: {scheduler: binpack}
        """)
        let result = try await capstan("plugins", "verify", "--config", config)
        #expect(result.status == 1)
        #expect(result.output.contains("refused (sha256)"))
        #expect(result.output.contains("SHA-256 mismatch"))
        #expect(result.output.contains("plugins[1].config.resources.cpu: weight -1 is outside 0...100"))
        #expect(result.output.contains("defaults.scheduler: \"binpack\" is not loaded"))
    }

    @Test func badConfigKeyIsNamed() async throws {
        let config = try writeConfig("plugins:\n  - nmae: CapstanBinpack\n")
        let result = try await capstan("plugins", "verify", "--config", config)
        #expect(result.status != 0)
        #expect(result.error.contains("plugins[0].nmae: unknown key"))
    }

    @Test func inspectShowsTheHandshake() async throws {
        let result = try await capstan("plugins", "inspect", Self.products.appendingPathComponent("libCapstanHostPath.so").path)
        #expect(result.status == 0)
        #expect(result.output.contains("library:   hostpath 1.0.0"))
        #expect(result.output.contains("plugin:    hostpath (storage, config HostPathConfiguration): loaded"))
        #expect(result.output.contains("status:    loaded"))
    }

    @Test func inspectRefusesANonPlugin() async throws {
        let result = try await capstan("plugins", "inspect", Self.products.appendingPathComponent("capstan").path)
        #expect(result.status == 1)
        #expect(result.output.contains("refused at check dlopen") && result.output.contains("cannot dynamically load position-independent executable"))
    }

    @Test func conformanceKitPassesHostPath() async throws {
        let result = try await capstan("conformance", "storage", "--plugin", Self.products.appendingPathComponent("libCapstanHostPath.so").path, "--scratch", directory.appendingPathComponent("scratch").path)
        #expect(result.status == 0, "\(result.output)\(result.error)")
        #expect(!result.output.contains("FAIL"))
        #expect(result.output.contains("PASS  create again with another size is alreadyExists"))
    }

    @Test func conformanceKitRefusesANonStoragePlugin() async throws {
        let result = try await capstan("conformance", "storage", "--plugin", Self.products.appendingPathComponent("libCapstanBinpack.so").path)
        #expect(result.status == 2)
        #expect(result.error.contains("it registers no storage plugin"))
    }
}
