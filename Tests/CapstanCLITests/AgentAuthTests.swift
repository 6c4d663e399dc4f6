import CapstanAPI
import CapstanCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Agents join with node tokens and act only as their own node (issue 10), through the real
/// `capstan agent` binary.
@Suite(.serialized) struct AgentAuthTests {
    @Test func anAgentJoinsWithItsNodeTokenAndOnlyAsThatNode() async throws {
        try await withDevCluster { cluster in
            let agentDirectory = cluster.dataDirectory.appendingPathComponent("agent-w2")
            let token = try await cluster.api.createToken(role: "node", node: "w2").token

            // No token: refused before it starts, with what to do.
            let none = try StoreSafetyTests().runBounded(["agent", "--server", cluster.address, "--node-name", "w2", "--data-dir", agentDirectory.path], in: cluster.dataDirectory)
            #expect(none.status != 0 && none.error.contains("capstan token create --role node --node w2"), "\(none.error)")

            // Another node's token: the server refuses it, and the agent stops with the reason.
            let other = try StoreSafetyTests().runBounded(["agent", "--server", cluster.address, "--node-name", "w9", "--token", token, "--data-dir", agentDirectory.path], in: cluster.dataDirectory)
            #expect(other.status != 0 && other.error.contains("node w2 may not"), "\(other.error)")
            #expect((try? await cluster.api.get(.node, "w9")) == nil)

            // Its own token: it registers and heartbeats.
            let agent = Process()
            agent.executableURL = PluginsCLITests.products.appendingPathComponent("capstan")
            agent.arguments = ["agent", "--server", cluster.address, "--node-name", "w2", "--token", token, "--data-dir", agentDirectory.path, "--heartbeat", "0.5"]
            agent.standardOutput = FileHandle.nullDevice
            agent.standardError = FileHandle.nullDevice
            try agent.run()
            defer {
                kill(agent.processIdentifier, SIGTERM)
                agent.waitUntilExit()
            }
            try await eventually("node w2 registers", timeout: 20) {
                guard case .node(let node)? = try? await cluster.api.get(.node, "w2") else { return false }
                return node.status.ready && node.spec.agentAddress != nil
            }
        }
    }
}
