import CapstanCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A node cut off from the server (its test host's link down — a partition, not a crash): its
/// agent stops its instances before the server replaces them elsewhere, so no instance ever runs
/// twice; when the link heals, what was replaced stays stopped (issue 13).
/// In the networking suite, which runs its two-host tests one at a time (test hosts are
/// CPU-heavy on two cores, and its timings must not suffer from a neighbour).
extension NetworkingTests {
    @Test(.enabled(if: NetworkingTests.ready, "needs root, Debian's containernetworking-plugins, nftables and busybox (CI installs them)"))
    func aPartitionedNodeStopsItsInstancesBeforeTheyAreReplaced() async throws {
        let cluster = try NetworkingTests.Cluster(hosts: 2)
        do {
            // NotReady after 1 s without a lease renewal, replaced 2 s later: agents fence at 2 s.
            try await cluster.start(serverArguments: ["--node-timeout", "1", "--eviction-timeout", "2"])
            let manifest = try cluster.write("fenced.yaml", """
                apiVersion: capstan.dev/v1
                kind: Workload
                metadata: {name: fenced}
                spec:
                  replicas: 2
                  template:
                    command: ["sh", "-c", "exec sleep 1000"]
                    resources: {requests: {cpu: 100m, memory: 16Mi}}
                    terminationGracePeriodSeconds: 1
                """)
            #expect(try await cluster.cli("apply -f \(manifest) --wait --timeout 60").status == 0)
            let before = try await cluster.instances()
            let cutNode = cluster.nodes[1]
            let cut = try #require(before.first { $0.spec.nodeName == cutNode }, "spread put one replica on each node: \(before.map { $0.spec.nodeName ?? "-" })")
            let cutPID = try #require(cut.status.pid)
            // Cut host 2 off the LAN.
            _ = try TestHosts.shell("ip -n \(cluster.hosts.lan) link set v\(cluster.hosts.id)2 down")
            let started = ContinuousClock.now
            var fencedAfter: Duration?
            var replacedAfter: Duration?
            var overlap = false
            while ContinuousClock.now - started < .seconds(30) {
                let alive = kill(cutPID, 0) == 0
                if !alive, fencedAfter == nil { fencedAfter = ContinuousClock.now - started }
                let now = (try? await cluster.instances()) ?? []
                // The workload controller reuses the name: a replacement is a new object (uid).
                let replacement = now.first { !before.map(\.metadata.uid).contains($0.metadata.uid) && $0.spec.nodeName != cutNode && $0.status.phase == .running }
                if replacement != nil {
                    if replacedAfter == nil { replacedAfter = ContinuousClock.now - started }
                    if alive { overlap = true }
                }
                if fencedAfter != nil && replacedAfter != nil { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            print("node fencing: the cut-off agent stopped its instance after \(fencedAfter.map { "\($0)" } ?? "never"), the server's replacement ran after \(replacedAfter.map { "\($0)" } ?? "never")")
            let fenced = try #require(fencedAfter, "the cut-off node's instance kept running")
            let state = (try? await cluster.cli("get instances -o wide"))?.output ?? ""
            let recent = (try? await cluster.cli("get events"))?.output ?? ""
            let replaced = try #require(replacedAfter, "the instance was not replaced on the other node:\n\(state)\n\(recent)")
            #expect(fenced < replaced && !overlap, "both copies ran at once")
            // Heal: the replaced instance stays stopped; two instances, each running once.
            _ = try TestHosts.shell("ip -n \(cluster.hosts.lan) link set v\(cluster.hosts.id)2 up")
            try await eventually("node 2 is Ready again", timeout: 20) {
                let nodes = (try? await cluster.json([Node].self, "get nodes")) ?? []
                return nodes.count == 2 && nodes.allSatisfy(\.status.ready)
            }
            try await Task.sleep(for: .seconds(2))
            let after = try await cluster.instances()
            #expect(after.count == 2 && after.allSatisfy { $0.status.phase == .running }, "\(after.map { "\($0.metadata.name) \($0.spec.nodeName ?? "-") \($0.status.phase)" })")
            #expect(!after.contains { $0.metadata.uid == cut.metadata.uid } && !after.contains { $0.spec.nodeName == cutNode && $0.metadata.name == cut.metadata.name })
            #expect(kill(cutPID, 0) != 0, "the replaced instance came back")
            let pids = after.compactMap(\.status.pid)
            #expect(Set(pids).count == 2 && pids.allSatisfy { kill($0, 0) == 0 })
        } catch {
            Issue.record("\(error)\n\(cluster.logs())")
        }
        await cluster.tearDown()
    }
}
