import CapstanAPI
import CapstanCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// The promise of docs/versioning.md, checked on real binaries: a runtime plugin built against
/// an older minor SDK (the process runtime as of SDK 1.1, built out of tree by
/// `.ci/old-sdk-fixture.sh`) loads on this host and runs, restarts and stops instances. It has
/// no `RuntimeWait` (SDK 1.3), so the agent falls back to asking its status.
@Suite(.serialized) struct SDKCompatibilityTests {
    static let oldRuntime = ProcessInfo.processInfo.environment["CAPSTAN_OLD_SDK_RUNTIME"]

    /// A `capstan dev` whose config loads `library` (built against the old SDK) beside the
    /// in-tree plugins named, with those defaults.
    static func cluster(loading library: String, with plugins: [String], defaults: [String: String]) throws -> (DevCluster, String) {
        let cluster = try DevCluster()
        let config = cluster.dataDirectory.appendingPathComponent("capstan.yaml")
        let entries = ([library].map { "  - path: \($0)" } + plugins.map { "  - name: \($0)" }).joined(separator: "\n")
        let kinds = defaults.sorted { $0.key < $1.key }.map { "  \($0.key): \($0.value)" }.joined(separator: "\n")
        try "apiVersion: capstan.dev/v1\nkind: Config\npluginPaths: [\(PluginsCLITests.products.path)]\nplugins:\n\(entries)\ndefaults:\n\(kinds)\n"
            .write(to: config, atomically: true, encoding: .utf8)
        cluster.extraArguments = ["--config", config.path]
        return (cluster, config.path)
    }

    @Test(.enabled(if: oldRuntime != nil, "set CAPSTAN_OLD_SDK_RUNTIME to the .so that .ci/old-sdk-fixture.sh builds (CI does)"))
    func aRuntimeBuiltAgainstAnOlderSDKRunsAndRestartsInstances() async throws {
        let (cluster, config) = try Self.cluster(loading: try #require(Self.oldRuntime), with: ["CapstanBinpack"], defaults: ["runtime": "process"])
        try await withDevCluster(cluster) { cluster in
            let listed = try await cluster.capstan("plugins", "list", "--config", config)
            #expect(listed.output.contains("1.1"), "the fixture reports SDK 1.1: \(listed.output)")
            _ = try await cluster.capstan("apply", "-f", try cluster.manifest("old.yaml", workloadYAML("old", replicas: 1, command: "sleep 300")))
            try await eventually("the instance runs under the old runtime", timeout: 30) {
                try await cluster.instances(of: "old").first?.status.pid != nil
            }
            let first = try #require(try await cluster.instances(of: "old").first)
            kill(try #require(first.status.pid), SIGKILL)
            try await eventually("the agent sees the exit (by polling the old runtime) and restarts it", timeout: 30) {
                guard let now = try await cluster.instances(of: "old").first else { return false }
                return now.status.restarts == 1 && now.status.pid != nil && now.status.pid != first.status.pid
            }
        }
    }

    /// The hostpath storage plugin as of SDK 1.1, beside the old runtime: it has no
    /// `stageVolume` (SDK 1.5) and no new capabilities, so the agent publishes without staging
    /// and the SDK's defaults answer for what it lacks. Claims bind, data persists, and reclaim
    /// policy Delete still deletes through its `deleteVolume`.
    @Test(.enabled(if: oldRuntime != nil, "set CAPSTAN_OLD_SDK_RUNTIME to the .so that .ci/old-sdk-fixture.sh builds (CI does)"))
    func aStoragePluginBuiltAgainstAnOlderSDKProvisionsPublishesAndReclaims() async throws {
        let library = URL(fileURLWithPath: try #require(Self.oldRuntime)).deletingLastPathComponent().appendingPathComponent("libOldHostPath.so").path
        let (cluster, config) = try Self.cluster(loading: library, with: ["CapstanBinpack", "CapstanProcessRuntime"], defaults: ["runtime": "process", "storage": "hostpath"])
        try await withDevCluster(cluster) { cluster in
            let listed = try await cluster.capstan("plugins", "list", "--config", config)
            #expect(listed.output.contains("hostpath") && listed.output.contains("1.1"), "the fixture reports SDK 1.1: \(listed.output)")
            let claim = """
            apiVersion: capstan.dev/v1
            kind: VolumeClaim
            metadata: {name: old-data}
            spec: {size: 8Mi}
            """
            let command = #"n=$(cat \"$CAPSTAN_VOLUME_OLD_DATA/count\" 2>/dev/null || echo 0); n=$((n+1)); echo $n > \"$CAPSTAN_VOLUME_OLD_DATA/count\"; echo run $n; exec sleep 1000"#
            let workload = workloadYAML("old", replicas: 1, command: command, template: "    volumeMounts:\n      - {claim: old-data, mountPath: /data}")
            #expect(try await cluster.capstan("apply", "-f", try cluster.manifest("old.yaml", claim + "\n---\n" + workload), "--wait", "--timeout", "30").status == 0)
            let first = try #require(try await cluster.instances(of: "old").first).metadata.name
            try await eventually("the old plugin's volume holds the count", timeout: 10) { try await cluster.capstan("logs", first).output.contains("run 1") }
            kill(try await cluster.pid(of: first), SIGKILL)
            try await eventually("the restarted run finds it", timeout: 20) { try await cluster.capstan("logs", first).output.contains("run 2") }
            guard case .volumeClaim(let bound) = try await cluster.api.get(.volumeClaim, "old-data") else { Issue.record("no claim"); return }
            let volumeName = try #require(bound.spec.volumeName)
            #expect(bound.status.phase == .bound)
            let folder = cluster.dataDirectory.appendingPathComponent(".capstan/plugins/hostpath/volumes/\(volumeName)").path
            #expect(FileManager.default.fileExists(atPath: folder))
            #expect(try await cluster.capstan("delete", "workload", "old").status == 0)
            try await eventually("the instance is gone", timeout: 20) { try await cluster.instances(of: "old").isEmpty }
            #expect(try await cluster.capstan("delete", "volumeclaim", "old-data").status == 0)
            try await eventually("reclaim policy Delete deletes the volume through the old plugin", timeout: 20) { (try? await cluster.api.get(.volume, volumeName)) == nil }
            #expect(!FileManager.default.fileExists(atPath: folder))
        }
    }
}
