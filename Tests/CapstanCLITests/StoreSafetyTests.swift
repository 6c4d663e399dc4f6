import CapstanAPI
import CapstanCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The real binaries against a store that lost its WAL (issue 10: "182 of 371 objects came
/// back" without a word), and `capstan store backup/restore`.
@Suite(.serialized) struct StoreSafetyTests {
    func workload(_ name: String) -> AnyResource {
        .workload(Workload(name: name, spec: WorkloadSpec(replicas: 0, template: InstanceTemplate(command: ["sleep", "1"]))))
    }

    @Test func aLostWALStopsTheServerUntilRestoredOrAccepted() async throws {
        let cluster = try DevCluster()
        try await withDevCluster(cluster) { cluster in
            for index in 0..<20 { _ = try await cluster.api.create(workload("before-\(index)")) }
            // An online backup while the server runs.
            let backup = cluster.dataDirectory.appendingPathComponent("backup.db").path
            let backedUp = try await cluster.capstan("store", "backup", "--data-dir", ".capstan", "--to", backup)
            #expect(backedUp.status == 0, "\(backedUp.error)")
            #expect(backedUp.output.contains("at revision"))
            for index in 0..<10 { _ = try await cluster.api.create(workload("after-\(index)")) }

            // kill -9, then the WAL goes missing: acknowledged writes lived only there.
            cluster.stop(signal: SIGKILL)
            let database = cluster.dataDirectory.appendingPathComponent(".capstan/capstan.db").path
            #expect(FileManager.default.fileExists(atPath: database + "-wal"))
            for file in [database + "-wal", database + "-shm"] { try FileManager.default.removeItem(atPath: file) }

            let refused = try runBounded(["dev", "--listen", "127.0.0.1:0", "--data-dir", ".capstan", "--node-name", "e2e"], in: cluster.dataDirectory)
            #expect(refused.status != 0)
            #expect(refused.error.contains("acknowledged writes are missing") && refused.error.contains("capstan.db-wal") && refused.error.contains("--accept-rollback"), "\(refused.error)")

            // Restoring the backup brings back what it held, and the server starts.
            let restored = try await cluster.capstan("store", "restore", "--data-dir", ".capstan", "--from", backup)
            #expect(restored.status == 0, "\(restored.error)")
            try await cluster.start()
            let names = Set(try await cluster.api.list(.workload).items.map(\.name))
            #expect(names == Set((0..<20).map { "before-\($0)" }))
        }
    }

    @Test func acceptRollbackStartsOnTheOlderState() async throws {
        let cluster = try DevCluster()
        try await withDevCluster(cluster) { cluster in
            for index in 0..<5 { _ = try await cluster.api.create(workload("w-\(index)")) }
            cluster.stop(signal: SIGKILL)
            let database = cluster.dataDirectory.appendingPathComponent(".capstan/capstan.db").path
            for file in [database + "-wal", database + "-shm"] { try FileManager.default.removeItem(atPath: file) }
            cluster.extraArguments = ["--accept-rollback"]
            try await cluster.start()
            #expect(try await cluster.api.list(.workload).items.count < 5)
            // Accepted once: the marker now matches, and a plain restart works.
            cluster.stop()
            cluster.extraArguments = []
            try await cluster.start()
        }
    }

    /// Runs capstan and kills it after `seconds`: a server that wrongly starts cannot hang the test.
    func runBounded(_ arguments: [String], in directory: URL, seconds: Double = 20) throws -> PluginsCLITests.Result {
        let process = Process()
        process.executableURL = PluginsCLITests.products.appendingPathComponent("capstan")
        process.arguments = arguments
        process.currentDirectoryURL = directory
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return PluginsCLITests.Result(status: process.terminationStatus,
                                      output: String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
                                      error: String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }
}
