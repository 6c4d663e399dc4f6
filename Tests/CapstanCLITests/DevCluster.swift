import CapstanAPI
import CapstanCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A real `capstan dev` process on a free port with its own data directory, for end-to-end tests.
final class DevCluster: @unchecked Sendable {
    let dataDirectory: URL
    private(set) var process: Process?
    private(set) var address = ""
    /// More arguments for `capstan dev`.
    var extraArguments: [String] = []

    init() throws {
        dataDirectory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-e2e-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dataDirectory, withIntermediateDirectories: true)
    }

    /// The CLI config the server writes its admin token to, and the CLI reads it from: the
    /// flow a user gets, kept inside the test's folder.
    var configPath: String { dataDirectory.appendingPathComponent("client-config").path }

    /// The first admin token, as the server wrote it.
    var adminToken: String? { TokenFile.read(dataDirectory.appendingPathComponent(".capstan/admin.token").path) }

    var api: APIClient { APIClient(server: address, token: adminToken) }

    /// Starts `capstan dev` and waits until its API answers.
    func start() async throws {
        let addressFile = dataDirectory.appendingPathComponent(".capstan/server.address")
        try? FileManager.default.removeItem(at: addressFile)
        let process = Process()
        process.executableURL = PluginsCLITests.products.appendingPathComponent("capstan")
        process.arguments = ["dev", "--listen", "127.0.0.1:0", "--data-dir", ".capstan", "--node-name", "e2e"] + extraArguments
        process.currentDirectoryURL = dataDirectory
        process.environment = ProcessInfo.processInfo.environment.merging(["CAPSTAN_CONFIG": configPath]) { _, new in new }
        let log = dataDirectory.appendingPathComponent("dev.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        self.process = process
        try await eventually("the server writes its address", timeout: 30) {
            guard let text = try? String(contentsOf: addressFile, encoding: .utf8) else { return false }
            self.address = text.trimmingCharacters(in: .whitespacesAndNewlines)
            return !self.address.isEmpty
        }
        try await eventually("the local node registers", timeout: 30) {
            (try? await self.api.list(.node).items.count) == 1
        }
    }

    /// Stops it: SIGTERM (graceful) or SIGKILL.
    func stop(signal: Int32 = SIGTERM) {
        guard let process, process.isRunning else { return }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        self.process = nil
    }

    /// Stops the server and every instance it left running (tests must not leak processes).
    func tearDown() async {
        if process == nil { try? await start() }
        if let items = try? await api.list(.workload).items {
            for item in items { _ = try? await api.delete(.workload, item.name) }
            try? await eventually("instances are gone", timeout: 20) { (try? await self.api.list(.instance).items.isEmpty) ?? true }
        }
        stop()
        try? FileManager.default.removeItem(at: dataDirectory)
    }

    var log: String { (try? String(contentsOf: dataDirectory.appendingPathComponent("dev.log"), encoding: .utf8)) ?? "" }

    /// Runs the capstan CLI against this cluster.
    func capstan(_ arguments: String...) async throws -> PluginsCLITests.Result {
        try await PluginsCLITests.run(arguments, in: dataDirectory, environment: ["CAPSTAN_SERVER": address, "CAPSTAN_CONFIG": configPath])
    }

    /// Writes a manifest into the data directory; returns its path.
    func manifest(_ name: String, _ text: String) throws -> String {
        let url = dataDirectory.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func instances(of workload: String) async throws -> [Instance] {
        try await api.list(.instance, query: ["owner": "Workload/\(workload)"]).items.compactMap {
            if case .instance(let instance) = $0 { return instance }
            return nil
        }.sorted { $0.metadata.name < $1.metadata.name }
    }

    /// The instance's pid, once its agent has reported it.
    func pid(of name: String) async throws -> Int32 {
        var pid: Int32?
        try await eventually("\(name) reports its pid", timeout: 10) {
            pid = try await self.instance(name).status.pid
            return pid != nil
        }
        return pid!
    }

    func instance(_ name: String) async throws -> Instance {
        guard case .instance(let instance) = try await api.get(.instance, name) else { throw DevClusterError("\(name) is not an instance") }
        return instance
    }
}

/// Starts a cluster, runs `body`, and always tears the cluster down (its server and every
/// instance it started) before returning, also when `body` throws. At most
/// ``ClusterSlots/width`` clusters run at once (see there); a test waits for a slot before its
/// cluster starts, so the wait counts against none of its time limits.
func withDevCluster(_ cluster: DevCluster? = nil, _ body: (DevCluster) async throws -> Void) async throws {
    let cluster = try cluster ?? DevCluster()
    await ClusterSlots.shared.acquire()
    do {
        try await cluster.start()
        try await body(cluster)
    } catch {
        // The server's and agent's own account, for whoever reads a failure from CI.
        let log = cluster.log
        Issue.record("capstan dev's log, last 4,000 characters:\n\(log.suffix(4_000))")
        await cluster.tearDown()
        await ClusterSlots.shared.release()
        throw error
    }
    await cluster.tearDown()
    await ClusterSlots.shared.release()
}

/// A counting semaphore for `capstan dev` clusters. Every suite of the test process starts at
/// once on this machine's 2 cores; forty clusters starting together (each a server, an agent,
/// plugins and instances) made the waits of unrelated tests miss their bounds. Clusters never
/// nest, so a cluster's test never waits for a second slot.
actor ClusterSlots {
    static let width = 4
    static let shared = ClusterSlots()
    private var free = width
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if free > 0 {
            free -= 1
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    /// Hands the slot to the longest waiter, or frees it.
    func release() {
        if waiting.isEmpty { free += 1 } else { waiting.removeFirst().resume() }
    }
}

struct DevClusterError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` every 50 ms until it holds; throws after `timeout` seconds.
func eventually(_ what: String, timeout: Double, _ condition: () async throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(50))
    }
    throw DevClusterError("timed out after \(timeout)s waiting until \(what)")
}

/// A workload manifest whose instances run `command` (a shell line) with the process runtime.
func workloadYAML(_ name: String, replicas: Int, command: String, extra: String = "", template: String = "") -> String {
    """
    apiVersion: capstan.dev/v1
    kind: Workload
    metadata:
      name: \(name)
    spec:
      replicas: \(replicas)
      restartBackoff: {initialSeconds: 1, maxSeconds: 8, resetAfterSeconds: 60}
    \(extra)
      template:
        command: ["sh", "-c", "\(command)"]
        terminationGracePeriodSeconds: 2
    \(template)
    """
}

/// A probe (under `key`) that passes while `file` exists in the instance's working directory.
func fileProbe(_ key: String, file: String, period: Double, failureThreshold: Int) -> String {
    """
        \(key):
          exec: ["test", "-f", "\(file)"]
          periodSeconds: \(period)
          failureThreshold: \(failureThreshold)
    """
}
