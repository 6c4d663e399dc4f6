import CapstanAPI
import CapstanCore
import CapstanTestSupport
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// `capstan server` serves HTTPS with its own cluster CA; an agent joins with a join token and a
/// pinned CA hash, gets a certificate for its own key, and then the server's calls to it are
/// mutual TLS (issue 10, "Authentication, authorization, TLS" 1 and 3). Real binaries, loopback.
@Suite(.serialized) struct TLSTests {
    final class Processes: @unchecked Sendable {
        var running: [Process] = []
        func start(_ arguments: [String], in directory: URL, log: String) throws -> Process {
            let process = Process()
            process.executableURL = PluginsCLITests.products.appendingPathComponent("capstan")
            process.arguments = arguments
            process.currentDirectoryURL = directory
            process.environment = ProcessInfo.processInfo.environment.merging(["CAPSTAN_CONFIG": directory.appendingPathComponent("client-config").path]) { _, new in new }
            let path = directory.appendingPathComponent(log).path
            _ = FileManager.default.createFile(atPath: path, contents: nil)
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            process.standardOutput = handle
            process.standardError = handle
            try process.run()
            running.append(process)
            return process
        }
        func stopAll() {
            for process in running.reversed() where process.isRunning {
                kill(process.processIdentifier, SIGTERM)
                process.waitUntilExit()
            }
        }
    }

    @Test func aServerServesTLSAndAgentsJoinWithAPinnedCA() async throws {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-tls-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let processes = Processes()
        defer { processes.stopAll() }
        _ = try processes.start(["server", "--listen", "127.0.0.1:0", "--data-dir", "srv"], in: directory, log: "server.log")
        let addressFile = directory.appendingPathComponent("srv/server.address")
        var address = ""
        try await eventually("the server listens", timeout: 30) {
            address = ((try? String(contentsOf: addressFile, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
            return !address.isEmpty
        }
        #expect(address.hasPrefix("https://127.0.0.1:"))
        let pki = directory.appendingPathComponent("srv/pki")
        let caPEM = try String(contentsOf: pki.appendingPathComponent("ca.crt"), encoding: .utf8)
        let caHash = try String(contentsOf: pki.appendingPathComponent("ca.hash"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        for key in ["ca.key", "server.key"] {
            let mode = (try FileManager.default.attributesOfItem(atPath: pki.appendingPathComponent(key).path)[.posixPermissions] as? NSNumber)?.intValue
            #expect(mode == 0o600, "\(key)")
        }
        let admin = APIClient(server: address, token: TokenFile.read(directory.appendingPathComponent("srv/admin.token").path), caPEM: caPEM)
        _ = try await admin.list(.node)

        // Not trusting the cluster CA, a client cannot talk to it at all.
        do {
            _ = try await APIClient(server: address, token: admin.token).list(.node)
            Issue.record("a client that does not trust the cluster CA got an answer")
        } catch {
            #expect(error.status == 0)
        }
        // The CLI finds the server, its token and its CA in the config the server wrote.
        let cli = try await PluginsCLITests.run(["get", "nodes"], in: directory, environment: ["CAPSTAN_CONFIG": directory.appendingPathComponent("client-config").path])
        #expect(cli.status == 0, "\(cli.error)")

        let join = try await admin.createToken(role: "join").token
        // A wrong pin: the agent refuses the server's CA.
        let wrong = try StoreSafetyTests().runBounded(["agent", "--server", address, "--node-name", "w1", "--join-token", join,
                                                      "--ca-hash", "sha256:" + String(repeating: "0", count: 64), "--data-dir", "bad"], in: directory)
        #expect(wrong.status != 0 && wrong.error.contains("refusing to trust it"), "\(wrong.error)")

        // The right pin: it joins, gets a node token and a certificate, and registers. Given a
        // server that is down first (a cluster with one server gone), it joins through the next.
        let down = "https://127.0.0.1:\(EtcdServer.freePort())"
        _ = try processes.start(["agent", "--server", "\(down),\(address)", "--node-name", "w1", "--join-token", join, "--ca-hash", caHash,
                                 "--data-dir", "agent", "--heartbeat", "0.5"], in: directory, log: "agent.log")
        var agentAddress = ""
        try await eventually("the agent registers over TLS", timeout: 30) {
            guard case .node(let node)? = try? await admin.get(.node, "w1") else { return false }
            agentAddress = node.spec.agentAddress ?? ""
            return node.status.ready
        }
        #expect(agentAddress.hasPrefix("https://"))
        for file in ["node.key", "node.token", "node.crt", "ca.crt"] {
            #expect(FileManager.default.fileExists(atPath: directory.appendingPathComponent("agent/agent/\(file)").path), "\(file)")
        }

        // The agent's endpoint lets in only the server: not a client without a certificate, and
        // not another node's certificate of the same CA.
        do {
            _ = try await APIClient(server: agentAddress, caPEM: caPEM).plugins()
            Issue.record("the agent answered a client without a certificate")
        } catch {
            #expect(error.status == 0)
        }
        func pem(_ path: String) throws -> String { try String(contentsOf: directory.appendingPathComponent(path), encoding: .utf8) }
        let node = TLSIdentity(certificatePEM: try pem("agent/agent/node.crt"), keyPEM: try pem("agent/agent/node.key"), caPEM: caPEM)
        do {
            _ = try await APIClient(server: agentAddress, caPEM: caPEM, identity: node).plugins()
            Issue.record("the agent answered another node's certificate")
        } catch {
            #expect(error.status == 0)
        }
        let server = TLSIdentity(certificatePEM: try pem("srv/pki/server.crt"), keyPEM: try pem("srv/pki/server.key"), caPEM: caPEM)
        #expect(try await !APIClient(server: agentAddress, caPEM: caPEM, identity: server).plugins().isEmpty)

        // An instance on it: its output comes back through the server (mutual TLS to the agent).
        _ = try await admin.create(.workload(Workload(name: "hello", spec: WorkloadSpec(replicas: 1, template: InstanceTemplate(command: ["sh", "-c", "echo hello over tls; exec sleep 600"])))))
        var name = ""
        try await eventually("the instance runs", timeout: 30) {
            guard let first = try? await admin.list(.instance).items.first, case .instance(let instance) = first else { return false }
            name = instance.metadata.name
            return instance.status.phase == .running && instance.status.pid != nil
        }
        try await eventually("its output comes back through the server", timeout: 15) {
            let output = try? await admin.logs(name)
            return output.map { String(decoding: $0.data, as: UTF8.self).contains("hello over tls") } ?? false
        }
        _ = try await admin.delete(.workload, "hello")
        try await eventually("the instance is gone", timeout: 30) { (try? await admin.list(.instance).items.isEmpty) ?? false }
    }
}
