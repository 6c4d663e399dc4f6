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

    @Test(.enabled(if: oldRuntime != nil, "set CAPSTAN_OLD_SDK_RUNTIME to the .so that .ci/old-sdk-fixture.sh builds (CI does)"))
    func aRuntimeBuiltAgainstAnOlderSDKRunsAndRestartsInstances() async throws {
        let library = try #require(Self.oldRuntime)
        let cluster = try DevCluster()
        let config = cluster.dataDirectory.appendingPathComponent("capstan.yaml")
        try """
        apiVersion: capstan.dev/v1
        kind: Config
        pluginPaths: [\(PluginsCLITests.products.path)]
        plugins:
          - path: \(library)
          - name: CapstanBinpack
        defaults:
          runtime: process
        """.write(to: config, atomically: true, encoding: .utf8)
        cluster.extraArguments = ["--config", config.path]
        try await withDevCluster(cluster) { cluster in
            let listed = try await cluster.capstan("plugins", "list", "--config", config.path)
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
}
