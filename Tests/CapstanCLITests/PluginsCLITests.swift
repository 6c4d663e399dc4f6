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
        #expect(result.output.contains("plugin:    hostpath (storage, config NodeLocalStorageConfiguration): loaded"))
        #expect(result.output.contains("status:    loaded"))
    }

    @Test func inspectRefusesANonPlugin() async throws {
        let result = try await capstan("plugins", "inspect", Self.products.appendingPathComponent("capstan").path)
        #expect(result.status == 1)
        #expect(result.output.contains("refused at check dlopen") && result.output.contains("cannot dynamically load position-independent executable"))
    }

    @Test func storageKitPassesHostPath() async throws {
        let result = try await capstan("plugins", "test", "storage", Self.products.appendingPathComponent("libCapstanHostPath.so").path, "--scratch", directory.appendingPathComponent("scratch").path)
        #expect(result.status == 0, "\(result.output)\(result.error)")
        #expect(!result.output.contains("FAIL"))
        #expect(result.output.contains("PASS  [error-codes] create of a taken name with another size is alreadyExists"))
        #expect(result.output.contains("PASS  [cleanup] nothing left behind"))
    }

    @Test(.enabled(if: StorageHost.loopbackWorks, "needs root, /dev/loop-control and Debian's e2fsprogs (mkfs.ext4, resize2fs)"))
    func storageKitPassesLoopback() async throws {
        let config = directory.appendingPathComponent("loopback.yaml")
        try "capacity: 1Gi\n".write(to: config, atomically: true, encoding: .utf8)
        let result = try await capstan("plugin", "test", "storage", Self.products.appendingPathComponent("libCapstanLoopback.so").path, "--config", config.path)
        #expect(result.status == 0, "\(result.output)\(result.error)")
        #expect(result.output.contains("PASS  [size] writes past the size fail with ENOSPC"))
        #expect(result.output.contains("PASS  [snapshots] a snapshot is idempotent and restores the data it saw"))
        #expect(result.output.contains("18 of 18 checks passed"))
    }

    @Test func storageKitFailsTheBrokenDriverNamingEachRule() async throws {
        let result = try await capstan("plugins", "test", "storage", Self.products.appendingPathComponent("libCapstanBrokenStorageFixture.so").path)
        #expect(result.status == 1)
        #expect(result.output.contains("FAIL  [idempotent] create again with the same arguments returns the same volume: got volume"))
        #expect(result.output.contains("FAIL  [cleanup] nothing left behind: files, mounts, loop devices: left behind: file"))
        #expect(result.output.contains("/trash"))
        #expect(result.output.contains("FAIL  [capabilities] expand grows the volume (and its file system): declares expansion, but listVolumes still says"))
        #expect(result.output.contains("broken rules: capabilities, cleanup, idempotent"))
    }

    @Test func storageKitWritesJSON() async throws {
        let result = try await capstan("plugins", "test", "storage", Self.products.appendingPathComponent("libCapstanBrokenStorageFixture.so").path, "--json")
        #expect(result.status == 1)
        let report = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as? [String: Any]
        let checks = report?["checks"] as? [[String: Any]] ?? []
        #expect(checks.count >= 15)
        #expect(checks.contains { $0["rule"] as? String == "cleanup" && $0["passed"] as? Bool == false })
    }

    @Test func storageKitRefusesANonStoragePluginAndBadOptions() async throws {
        let result = try await capstan("plugins", "test", "storage", Self.products.appendingPathComponent("libCapstanBinpack.so").path)
        #expect(result.status == 2)
        #expect(result.error.contains("it registers no storage plugin"))
        let badConfig = try await capstan("plugins", "test", "storage", Self.products.appendingPathComponent("libCapstanHostPath.so").path, "--config", "/nonexistent.yaml")
        #expect(badConfig.status == 2)
        #expect(badConfig.error.contains("/nonexistent.yaml") && badConfig.error.contains("cannot be read"))
        let badSize = try await capstan("plugins", "test", "storage", Self.products.appendingPathComponent("libCapstanHostPath.so").path, "--size", "1Ki")
        #expect(badSize.status != 0)
        #expect(badSize.error.contains("--size: between 8Mi and 64Gi"))
    }

    @Test func theFirstSpellingOfTheKitStillWorks() async throws {
        let result = try await capstan("conformance", "storage", "--plugin", Self.products.appendingPathComponent("libCapstanHostPath.so").path, "--scratch", directory.appendingPathComponent("scratch2").path)
        #expect(result.status == 0, "\(result.output)\(result.error)")
    }
}

/// Whether the loopback storage plugin can run here.
enum StorageHost {
    static var loopbackWorks: Bool {
        geteuid() == 0 && access("/dev/loop-control", R_OK | W_OK) == 0
            && ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    }
}
