import CapstanAPI
import CapstanCore
import Foundation
import Testing

/// Issue 9: heartbeats are lease writes, node plugins come from Node status, and waiting for a
/// rollout follows a watch and says why it timed out.
@Suite(.serialized) struct HeartbeatAndRolloutTests {
    @Test func heartbeatsRenewALeaseAndLeaveTheNodeAlone() async throws {
        let cluster = try DevCluster()
        cluster.extraArguments = ["--heartbeat", "0.3"]
        try await withDevCluster(cluster) { cluster in
            let api = cluster.api
            func lease() async throws -> Lease? {
                guard case .lease(let lease)? = try await api.fetch(kind: "Lease", name: "e2e") else { return nil }
                return lease
            }
            // 45 s: twice in full runs of the suite the agent's first lease write did not land
            // within 10 s of its registration, with nothing in its log (no error: a request
            // that waited). Not understood yet; a request's own limit is 30 s, so this still
            // fails if renewals never succeed.
            try await eventually("the agent holds its node's lease", timeout: 45) { try await lease()?.spec.renewTime != nil }
            let first = try #require(try await lease())
            #expect(first.spec.holderIdentity == "node/e2e")
            let node = try await api.get(.node, "e2e")
            try await eventually("the lease is renewed", timeout: 20) {
                (try await lease()?.spec.renewTime?.secondsSinceEpoch ?? 0) > (first.spec.renewTime?.secondsSinceEpoch ?? 0) + 0.5
            }
            // Renewals did not rewrite the Node: its revision is where registration left it.
            #expect(try await api.get(.node, "e2e").metadata.revision == node.metadata.revision)
            // The node's plugins, as its agent reported them at registration: no call to the agent.
            guard case .node(let registered) = node else { return }
            #expect(registered.status.plugins.contains { $0.kind == "runtime" && $0.name == "process" && $0.isDefault })
            let plugins = try await api.plugins()
            #expect(plugins.contains { $0.loadedBy == "node/e2e" && $0.name == "process" })
        }
    }

    @Test func rolloutStatusFollowsTheWatchAndSaysWhyItTimedOut() async throws {
        try await withDevCluster { cluster in
            // Rolls out: done as soon as the controller has seen generation 1 and it is Ready.
            let good = try cluster.manifest("good.yaml", workloadYAML("good", replicas: 2, command: "sleep 300"))
            let applied = try await cluster.capstan("apply", "-f", good, "--wait", "--timeout", "30")
            #expect(applied.status == 0, "\(applied.error)")
            #expect(applied.output.contains("successfully rolled out: 2/2 ready"))
            guard case .workload(let workload) = try await cluster.api.get(.workload, "good") else { return }
            #expect(workload.metadata.generation == 1 && workload.status.observedGeneration == 1)

            // Crash-looping (never Ready: its readiness probe never passes): the timeout names
            // the instances and why.
            let crashing = try cluster.manifest("crashing.yaml", workloadYAML("crashing", replicas: 1, command: "echo bye; exit 3",
                                                                               template: fileProbe("readinessProbe", file: "never", period: 1, failureThreshold: 1)))
            let crashed = try await cluster.capstan("apply", "-f", crashing, "--wait", "--timeout", "4")
            #expect(crashed.status == 4, "exit 4 on timeout: \(crashed)")
            #expect(crashed.error.contains("timed out after 4s"), "\(crashed.error)")
            #expect(crashed.error.contains("crashing-") && crashed.error.contains("exited with code 3"), "\(crashed.error)")

            // Unschedulable: the scheduler's reasons.
            let huge = try cluster.manifest("huge.yaml", workloadYAML("huge", replicas: 1, command: "sleep 300", template: "    resources: {requests: {cpu: \"9000\"}}"))
            let stuck = try await cluster.capstan("rollout", "status", "huge", "--timeout", "2")
            #expect(stuck.status != 0)
            _ = try await cluster.capstan("apply", "-f", huge)
            let unschedulable = try await cluster.capstan("rollout", "status", "huge", "--timeout", "3")
            #expect(unschedulable.status == 4, "\(unschedulable)")
            #expect(unschedulable.error.contains("Unschedulable"), "\(unschedulable.error)")
        }
    }
}
