import CapstanAPI
import CapstanCore
import CapstanEtcd
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// A `capstan server --store etcd://…` process (the real binary), in a folder of its own.
final class ServerProcess: @unchecked Sendable {
    static let products: URL = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("capstan").path), url.path != "/" { url.deleteLastPathComponent() }
        return url
    }()

    let name: String
    let directory: URL
    let process = Process()
    private(set) var address = ""

    /// - Parameter secretsFrom: a data directory whose `secrets.keys` this server shares.
    init(name: String, etcd: [String], secretsFrom: URL? = nil, extra: [String] = []) throws {
        self.name = name
        directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-\(name)-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("data"), withIntermediateDirectories: true)
        if let secretsFrom {
            try FileManager.default.copyItem(at: secretsFrom.appendingPathComponent("data/secrets.keys"), to: directory.appendingPathComponent("data/secrets.keys"))
        }
        process.executableURL = Self.products.appendingPathComponent("capstan")
        process.arguments = ["server", "--store", "etcd://" + etcd.map { $0.replacingOccurrences(of: "http://", with: "") }.joined(separator: ","),
                             "--name", name, "--listen", "127.0.0.1:0", "--insecure", "--data-dir", directory.appendingPathComponent("data").path,
                             "--node-timeout", "86400"] + extra
        process.environment = ProcessInfo.processInfo.environment.merging(["CAPSTAN_CONFIG": directory.appendingPathComponent("client-config").path]) { _, new in new }
        let log = directory.appendingPathComponent("server.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: log)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
    }

    var dataDirectory: URL { directory.appendingPathComponent("data") }
    var adminToken: String? { try? String(contentsOf: dataDirectory.appendingPathComponent("admin.token"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) }
    var log: String { (try? String(contentsOf: directory.appendingPathComponent("server.log"), encoding: .utf8)) ?? "" }

    /// Waits until it listens and is ready.
    func ready() async throws {
        let file = dataDirectory.appendingPathComponent("server.address")
        for _ in 0..<300 {
            if let text = try? String(contentsOf: file, encoding: .utf8), !text.isEmpty {
                address = text.trimmingCharacters(in: .whitespacesAndNewlines)
                if (try? await APIClient(server: address).text("/readyz")) != nil { return }
            }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw EtcdError.unavailable("server \(name) did not start:\n\(log)")
    }

    func kill9() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    func stop() {
        kill9()
        try? FileManager.default.removeItem(at: directory)
    }
}

/// Acknowledged writes, name → value.
final class Acked: Sendable {
    let values = Mutex<[String: String]>([:])
}

/// Several servers on one etcd, killed while they work (issue 13's fault tests): the real
/// binaries on loopback, etcd as three members.
@Suite(.serialized, .timeLimit(.minutes(4)), .enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"))
struct ServerFailoverTests {
    /// Writes one Secret until it is acknowledged: an error after the request may have been
    /// applied is retried, and `alreadyExists` then means the earlier attempt was.
    static func write(_ api: APIClient, _ name: String, _ value: String) async -> Bool {
        for _ in 0..<200 {
            do {
                _ = try await api.create(.secret(Secret(name: name, spec: SecretSpec(data: ["v": Array(value.utf8)]))))
                return true
            } catch {
                if error.status == 409 { return true }
                try? await Task.sleep(for: .milliseconds(50))
            }
        }
        return false
    }

    @Test func killingTheLeaderDuringWritesLosesNoAcknowledgedWriteAndAnotherLeadsAndSchedules() async throws {
        let members = try await etcdCluster(of: 3)
        defer { for member in members { member.stop() } }
        let endpoints = members.map(\.endpoint)
        let first = try ServerProcess(name: "s0", etcd: endpoints)
        var servers = [first]
        defer { for server in servers { server.stop() } }
        try await first.ready()
        for index in 1...2 { servers.append(try ServerProcess(name: "s\(index)", etcd: endpoints, secretsFrom: first.directory)) }
        for server in servers.dropFirst() { try await server.ready() }
        let token = try #require(first.adminToken)
        let all = servers.map(\.address).joined(separator: ",")
        let api = APIClient(server: all, token: token, timeout: .seconds(5))

        // One leader among three.
        var leaderName = ""
        for _ in 0..<100 {
            let listed = try await api.servers()
            if listed.count == 3, let leader = listed.first(where: \.leader) { leaderName = leader.name; break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(!leaderName.isEmpty)
        // A node to schedule on (registered as an agent would; no processes).
        let nodeToken = try await api.createToken(role: "node", node: "hollow").token
        let capacity: ResourceList = ["cpu": "64", "memory": "256Gi"]
        _ = try await APIClient(server: all, token: nodeToken).create(.node(Node(name: "hollow", spec: NodeSpec(), status: NodeStatus(capacity: capacity, allocatable: capacity, ready: true, lastHeartbeat: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)))))

        // 4 clients, 250 writes each, each starting at another server.
        let acked = Acked()
        let addresses = servers.map(\.address)
        let clients = Task {
            await withTaskGroup(of: Void.self) { group in
                for client in 0..<4 {
                    let order = (0..<addresses.count).map { addresses[($0 + client) % addresses.count] }.joined(separator: ",")
                    let writer = APIClient(server: order, token: token, timeout: .seconds(5))
                    group.addTask {
                        for index in 0..<250 {
                            let name = "w-\(client)-\(index)", value = "value \(client)/\(index)"
                            if await Self.write(writer, name, value) { acked.values.withLock { $0[name] = value } }
                        }
                    }
                }
            }
        }
        // kill -9 the leader once a third of the writes are in.
        for _ in 0..<600 where acked.values.withLock({ $0.count }) < 300 { try await Task.sleep(for: .milliseconds(20)) }
        let victim = try #require(servers.first { $0.name == leaderName })
        victim.kill9()
        let killed = ContinuousClock.now
        let survivors = servers.filter { $0.name != leaderName }
        let survivorAPI = APIClient(server: survivors.map(\.address).joined(separator: ","), token: token, timeout: .seconds(5))
        var newLeader: String?
        var electedAfter = Duration.zero
        for _ in 0..<200 {
            if let leader = try? await survivorAPI.servers().first(where: \.leader), leader.name != leaderName {
                newLeader = leader.name
                electedAfter = ContinuousClock.now - killed
                break
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        // The new leader schedules: an instance created now is bound.
        _ = try await survivorAPI.create(.instance(Instance(name: "probe", spec: InstanceSpec(template: InstanceTemplate(command: ["sleep", "1"])))))
        var boundAfter: Duration?
        for _ in 0..<400 {
            if case .instance(let probe) = try await survivorAPI.get(.instance, "probe"), probe.spec.nodeName == "hollow" {
                boundAfter = ContinuousClock.now - killed
                break
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        await clients.value
        let written = acked.values.withLock { $0 }
        print("leader \(leaderName) killed after \(written.count >= 300 ? "≥300" : "\(written.count)") acknowledged writes; \(newLeader ?? "nobody") led after \(electedAfter), the next instance was bound after \(boundAfter.map { "\($0)" } ?? "never")")
        #expect(newLeader != nil)
        #expect(boundAfter.map { $0 < .seconds(10) } == true)
        #expect(written.count == 1000, "every write was acknowledged in the end")
        // Nothing acknowledged is lost; nothing is there twice or with another value.
        let stored = try await survivorAPI.list(ResourceKind.kind("Secret")!).items.filter { $0.name.hasPrefix("w-") }
        #expect(stored.count == written.count)
        #expect(Set(stored.map(\.name)).count == stored.count)
        for case .secret(let secret) in stored {
            #expect(secret.spec.data["v"].map { String(decoding: $0, as: UTF8.self) } == written[secret.metadata.name])
        }

        // kill -9 one etcd member of three: the servers go on (their clients know every member).
        members[0].stop()
        var more = 0
        for index in 0..<100 where await Self.write(survivorAPI, "after-member-\(index)", "x") { more += 1 }
        #expect(more == 100)
        #expect(try await survivorAPI.list(ResourceKind.kind("Secret")!).items.filter { $0.name.hasPrefix("after-member-") }.count == 100)
        print("one etcd member of three killed: 100 of 100 further writes acknowledged and listed")

        // kill -9 a follower: the leader keeps leading and scheduling.
        let leaderNow = try #require(try await survivorAPI.servers().first(where: \.leader)?.name)
        let follower = try #require(survivors.first { $0.name != leaderNow })
        follower.kill9()
        let leaderAPI = APIClient(server: try #require(survivors.first { $0.name == leaderNow }).address, token: token)
        _ = try await leaderAPI.create(.instance(Instance(name: "probe-2", spec: InstanceSpec(template: InstanceTemplate(command: ["sleep", "1"])))))
        var bound = false
        for _ in 0..<300 {
            if case .instance(let probe) = try await leaderAPI.get(.instance, "probe-2"), probe.spec.nodeName != nil { bound = true; break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(bound, "the leader schedules with a follower gone")
        #expect(try await leaderAPI.servers().first(where: \.leader)?.name == leaderNow)
    }
}
