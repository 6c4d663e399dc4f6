import CapstanCore
import Foundation
import Testing

/// Access modes across machines: two test hosts (network namespaces joined by veths), a server
/// and an agent on each, the spread scheduler (which, left alone, puts replicas on both).
/// In the networking suite, which runs its two-host tests one at a time (test hosts are
/// CPU-heavy on two cores, and its timings must not suffer from a neighbour).
extension NetworkingTests {
    /// A ReadWriteOnce claim of node-local storage serves one node: all four replicas that mount
    /// it land on the node its volume was provisioned on — also those placed in the same
    /// scheduling pass as the first, before the volume existed — while replicas without a
    /// volume spread over both nodes.
    @Test(.enabled(if: NetworkingTests.ready, "needs root, Debian's containernetworking-plugins, nftables and busybox (CI installs them)"))
    func aReadWriteOnceVolumeNeverServesTwoNodes() async throws {
        let cluster = try NetworkingTests.Cluster(hosts: 2)
        do {
            try await cluster.start(storage: true)
            // First, replicas without a volume: the same scheduler uses both nodes.
            let free = try cluster.write("free.yaml", """
                apiVersion: capstan.dev/v1
                kind: Workload
                metadata: {name: free}
                spec:
                  replicas: 4
                  template:
                    command: ["sh", "-c", "exec sleep 1000"]
                    resources: {requests: {cpu: 100m, memory: 16Mi}}
                    terminationGracePeriodSeconds: 1
                """)
            #expect(try await cluster.cli("apply -f \(free) --wait --timeout 60").status == 0)
            let spread = try await cluster.instances().filter { $0.metadata.owner == "Workload/free" }
            #expect(Set(spread.compactMap(\.spec.nodeName)).count == 2, "\(spread.compactMap(\.spec.nodeName))")
            let manifests = try cluster.write("rwo.yaml", """
                apiVersion: capstan.dev/v1
                kind: VolumeClaim
                metadata: {name: shared}
                spec: {size: 8Mi, accessModes: [ReadWriteOnce]}
                ---
                apiVersion: capstan.dev/v1
                kind: Workload
                metadata: {name: pinned}
                spec:
                  replicas: 4
                  template:
                    command: ["sh", "-c", "echo $CAPSTAN_INSTANCE >> $CAPSTAN_VOLUME_SHARED/log; grep -q $CAPSTAN_INSTANCE /mnt/log && echo sees-it-at-its-mount-path; exec sleep 1000"]
                    resources: {requests: {cpu: 100m, memory: 16Mi}}
                    volumeMounts: [{claim: shared, mountPath: /mnt}]
                    terminationGracePeriodSeconds: 1
                """)
            let applied = try await cluster.cli("apply -f \(manifests) --wait --timeout 60")
            #expect(applied.status == 0, "\(applied.output)\n\(cluster.logs())")
            let instances = try await cluster.instances()
            let pinned = instances.filter { $0.metadata.owner == "Workload/pinned" }
            #expect(pinned.count == 4)
            #expect(pinned.allSatisfy { $0.status.phase == .running }, "\(pinned.map { "\($0.metadata.name) \($0.status.phase) \($0.status.message ?? "")" })")
            let volumes = try await cluster.json([Volume].self, "get volumes")
            let volume = try #require(volumes.first)
            #expect(volumes.count == 1, "one claim, one volume: \(volumes.map(\.metadata.name))")
            let node = try #require(volume.spec.nodeName)
            #expect(Set(pinned.compactMap(\.spec.nodeName)) == [node], "RWO volume on \(node), instances on \(pinned.compactMap(\.spec.nodeName))")
            // A process in its own mount namespace (cni) also sees the volume at its mountPath
            // (/mnt is a folder on the node), as a container would.
            for instance in pinned {
                try await eventually("\(instance.metadata.name) sees the volume at /mnt", timeout: 10) {
                    try await cluster.cli("logs \(instance.metadata.name)").output.contains("sees-it-at-its-mount-path")
                }
            }
            // All four wrote to the one volume.
            let claims = try await cluster.json([VolumeClaim].self, "get volumeclaims")
            #expect(claims.first?.status.phase == .bound && claims.first?.spec.volumeName == volume.metadata.name)
        } catch {
            Issue.record("\(error)\n\(cluster.logs())")
        }
        _ = try? await cluster.cli("delete volumeclaim shared")
        await cluster.tearDown()
    }
}
