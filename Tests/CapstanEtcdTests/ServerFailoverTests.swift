import CapstanAPI
import CapstanCore
import CapstanEtcd
import CapstanStore
import Foundation
import ServiceLifecycle
import Synchronization
import Testing
@testable import CapstanServer
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
        // A token made through one server works on the others; revoked through another, it is
        // refused everywhere within a watch event.
        let viewer = try await APIClient(server: servers[0].address, token: token).createToken(role: "viewer").token
        let viewerOn1 = APIClient(server: servers[1].address, token: viewer)
        // At once: s1 reads a token it has not heard of from etcd before refusing it.
        let accepted = (try? await viewerOn1.list(.node)) != nil
        #expect(accepted, "a token made through s0 works on s1 at once")
        let id = String(viewer.prefix { $0 != "." })
        try await APIClient(server: servers[2].address, token: token).revokeToken(id: id)
        var refused = false
        for _ in 0..<100 where !refused {
            do { _ = try await viewerOn1.list(.node) } catch { refused = error.status == 401 }
            if !refused { try await Task.sleep(for: .milliseconds(20)) }
        }
        #expect(refused, "revoked through s2, refused by s1")
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

extension ServerFailoverTests {
    /// Services created at the same moment through two servers never share a virtual IP, nor
    /// nodes a pod subnet: each new address is reserved in etcd first.
    @Test func addressesGivenByTwoServersAtOnceNeverCollide() async throws {
        try await withEtcd { etcd, _ in
            let first = try ServerProcess(name: "alloc-a", etcd: [etcd.endpoint])
            defer { first.stop() }
            try await first.ready()
            let second = try ServerProcess(name: "alloc-b", etcd: [etcd.endpoint], secretsFrom: first.directory)
            defer { second.stop() }
            try await second.ready()
            let token = try #require(first.adminToken)
            let clients = [APIClient(server: first.address, token: token), APIClient(server: second.address, token: token)]
            let port = ServicePort(name: "http", port: 80, targetPort: 8080)
            let results = try await withThrowingTaskGroup(of: String?.self) { group in
                for index in 0..<20 {
                    group.addTask {
                        let created = try await clients[index % 2].create(.service(CapstanCore.Service(name: "svc-\(index)", spec: ServiceSpec(selector: ["app": "a"], ports: [port]))))
                        guard case .service(let service) = created else { return nil }
                        return service.spec.clusterIP
                    }
                }
                var all: [String?] = []
                for try await address in group { all.append(address) }
                return all
            }
            let addresses = results.compactMap { $0 }
            #expect(addresses.count == 20)
            #expect(Set(addresses).count == 20, "duplicate virtual IPs: \(addresses.sorted())")
            let subnets = try await withThrowingTaskGroup(of: String?.self) { group in
                for index in 0..<10 {
                    group.addTask {
                        let nodeToken = try await clients[0].createToken(role: "node", node: "n\(index)").token
                        let api = APIClient(server: (index % 2 == 0 ? first : second).address, token: nodeToken)
                        guard case .node(let node) = try await api.create(.node(Node(name: "n\(index)", spec: NodeSpec(), status: NodeStatus()))) else { return nil }
                        return node.spec.podCIDR
                    }
                }
                var all: [String?] = []
                for try await subnet in group { all.append(subnet) }
                return all.compactMap { $0 }
            }
            #expect(subnets.count == 10 && Set(subnets).count == 10, "duplicate pod subnets: \(subnets.sorted())")
        }
    }

    /// A real agent given two servers keeps working when the one it talks to is killed: its
    /// instances keep running (not restarted), and what the new leader schedules it starts.
    @Test func anAgentFailsOverToAnotherServer() async throws {
        try await withEtcd { etcd, _ in
            let first = try ServerProcess(name: "agent-a", etcd: [etcd.endpoint])
            var servers = [first]
            defer { for server in servers { server.stop() } }
            try await first.ready()
            servers.append(try ServerProcess(name: "agent-b", etcd: [etcd.endpoint], secretsFrom: first.directory))
            try await servers[1].ready()
            let token = try #require(first.adminToken)
            let all = servers.map(\.address).joined(separator: ",")
            let api = APIClient(server: all, token: token, timeout: .seconds(5))
            let nodeToken = try await api.createToken(role: "node", node: "n1").token
            let agent = Process()
            agent.executableURL = ServerProcess.products.appendingPathComponent("capstan")
            agent.arguments = ["agent", "--server", all, "--token", nodeToken, "--node-name", "n1", "--heartbeat", "1", "--data-dir", first.directory.appendingPathComponent("agent").path]
            agent.environment = ProcessInfo.processInfo.environment.merging(["CAPSTAN_CONFIG": first.directory.appendingPathComponent("agent-config").path]) { _, new in new }
            let log = first.directory.appendingPathComponent("agent.log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            agent.standardOutput = try FileHandle(forWritingTo: log)
            agent.standardError = try FileHandle(forWritingTo: log)
            try agent.run()
            defer {
                kill(agent.processIdentifier, SIGKILL)
                agent.waitUntilExit()
            }
            func running() async -> [String: Int32] {
                var found: [String: Int32] = [:]
                for case .instance(let instance) in (try? await api.list(.instance).items) ?? [] where instance.status.phase == .running {
                    found[instance.metadata.name] = instance.status.pid ?? 0
                }
                return found
            }
            _ = try await api.create(.workload(Workload(name: "sleeper", spec: WorkloadSpec(replicas: 1, template: InstanceTemplate(command: ["sleep", "300"])))))
            var before: [String: Int32] = [:]
            for _ in 0..<300 where before.count < 1 {
                before = await running()
                if before.count < 1 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(before.count == 1, "the first instance runs: \((try? String(contentsOf: log, encoding: .utf8)) ?? "")")
            // Kill the server listed first (the one the agent talks to).
            first.kill9()
            let survivor = APIClient(server: servers[1].address, token: token, timeout: .seconds(5))
            guard case .workload(var workload) = try await survivor.get(.workload, "sleeper") else { Issue.record("no workload"); return }
            workload.spec.replicas = 2
            _ = try await survivor.update(.workload(workload))
            var after: [String: Int32] = [:]
            for _ in 0..<400 where after.count < 2 {
                after = [:]
                for case .instance(let instance) in (try? await survivor.list(.instance).items) ?? [] where instance.status.phase == .running {
                    after[instance.metadata.name] = instance.status.pid ?? 0
                }
                if after.count < 2 { try await Task.sleep(for: .milliseconds(50)) }
            }
            #expect(after.count == 2, "the agent started the second instance through the other server")
            for (name, pid) in before { #expect(after[name] == pid, "\(name) kept running, not restarted") }
            for pid in after.values where pid > 0 { kill(pid, SIGKILL) }
        }
    }

    /// A server whose secrets.keys is not the cluster's refuses to start, saying what to copy.
    @Test func aServerWithAnotherSecretsKeyRefusesToStart() async throws {
        try await withEtcd { etcd, _ in
            let first = try ServerProcess(name: "keyed", etcd: [etcd.endpoint])
            defer { first.stop() }
            try await first.ready()
            let stranger = try ServerProcess(name: "stranger", etcd: [etcd.endpoint])
            defer { stranger.stop() }
            stranger.process.waitUntilExit()
            #expect(stranger.process.terminationStatus != 0)
            #expect(stranger.log.contains("does not hold the key this cluster's Secrets are sealed with: copy secrets.keys"), "\(stranger.log)")
        }
    }
}

/// `capstan store migrate` from a real SQLite store into a real etcd, run again and again.
@Suite(.serialized, .timeLimit(.minutes(2)), .enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"))
struct StoreMigrationTests {
    static func migrate(_ from: URL, _ endpoint: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = ServerProcess.products.appendingPathComponent("capstan")
        process.arguments = ["store", "migrate", "--from", "sqlite:" + from.path, "--to", "etcd://" + endpoint.replacingOccurrences(of: "http://", with: "")]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    @Test func migrationCopiesObjectsAndTokensIsSafeToRepeatAndNeverOverwritesWhatEtcdGotOtherwise() async throws {
        try await withEtcd { etcd, client in
            let root = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-migrate-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: root) }
            let data = root.appendingPathComponent("data")
            let store = try ResourceStore(path: data.appendingPathComponent("capstan.db").path, bus: EventBus())
            let workload = try store.create(.workload(Workload(name: "web", spec: WorkloadSpec(replicas: 2, template: InstanceTemplate(command: ["sleep", "1"])))))
            _ = try store.create(.secret(Secret(name: "db", spec: SecretSpec(data: ["password": Array("hunter2".utf8)]))))
            let viewer = try store.createToken(role: "viewer", description: "made before the migration")

            var run = try Self.migrate(data, etcd.endpoint)
            #expect(run.status == 0, "\(run.output)")
            #expect(run.output.contains("2 objects added, 0 updated, 0 already there, 0 kept as etcd has them") && run.output.contains("; 1 API token(s) added"), "\(run.output)")
            // Again: nothing new.
            run = try Self.migrate(data, etcd.endpoint)
            #expect(run.status == 0 && run.output.contains("0 objects added, 0 updated, 2 already there, 0 kept as etcd has them") && run.output.contains("; 0 API token(s) added"), "\(run.output)")
            // Changed in SQLite since: brought up to date.
            guard case .secret(var secret)? = try store.get(kind: "Secret", name: "db") else { Issue.record("no secret"); return }
            secret.spec.data["password"] = Array("hunter3".utf8)
            _ = try store.update(.secret(secret))
            run = try Self.migrate(data, etcd.endpoint)
            #expect(run.status == 0 && run.output.contains("0 objects added, 1 updated, 1 already there"), "\(run.output)")
            // Changed in etcd since (as a server would) and in SQLite too: etcd's is kept. A
            // token revoked in etcd since stays revoked.
            let objects = EtcdObjectStore(client: client, cipher: try SecretCipher(path: data.appendingPathComponent("secrets.keys").path))
            guard case .workload(var inEtcd)? = try await objects.get(kind: "Workload", name: "web") else { Issue.record("web missing"); return }
            inEtcd.spec.replicas = 5
            _ = try await objects.update(.workload(inEtcd))
            guard case .workload(var inSQLite)? = try store.get(kind: "Workload", name: "web") else { Issue.record("web missing"); return }
            inSQLite.spec.replicas = 7
            _ = try store.update(.workload(inSQLite))
            let doomed = try store.createToken(role: "viewer", description: "revoked after the migration")
            run = try Self.migrate(data, etcd.endpoint)
            #expect(run.output.contains("; 1 API token(s) added"), "\(run.output)")
            _ = try await EtcdTokens(client: client).revoke(id: doomed.record.id)
            run = try Self.migrate(data, etcd.endpoint)
            #expect(run.status == 0 && run.output.contains("0 updated, 1 already there, 1 kept as etcd has them") && run.output.contains("; 0 API token(s) added"), "\(run.output)")
            guard case .workload(let kept)? = try await objects.get(kind: "Workload", name: "web") else { Issue.record("web missing"); return }
            #expect(kept.spec.replicas == 5)
            #expect(try await client.range(Array("/capstan/tokens/\(doomed.record.id)".utf8)).kvs.isEmpty)
            // An object etcd got by other means is left alone, named, and the run fails.
            _ = try await objects.create(.workload(Workload(name: "api", spec: WorkloadSpec(replicas: 1, template: InstanceTemplate(command: ["etcd-side"])))))
            _ = try store.create(.workload(Workload(name: "api", spec: WorkloadSpec(replicas: 1, template: InstanceTemplate(command: ["sqlite-side"])))))
            run = try Self.migrate(data, etcd.endpoint)
            #expect(run.status == 1 && run.output.contains("Workload \"api\": etcd holds another object of that name"), "\(run.output)")
            guard case .workload(let other)? = try await objects.get(kind: "Workload", name: "api") else { Issue.record("api gone"); return }
            #expect(other.spec.template.command == ["etcd-side"])
            store.close()

            // A server on etcd with that data directory serves what was migrated: same uid, the
            // old token, the secret opened with the shared key.
            let server = try ServerProcess(name: "migrated", etcd: [etcd.endpoint], secretsFrom: root)
            defer { server.stop() }
            try await server.ready()
            let api = APIClient(server: server.address, token: viewer.token)
            #expect(try await api.get(.workload, "web").metadata.uid == workload.metadata.uid)
            let admin = APIClient(server: server.address, token: server.adminToken)
            guard case .secret(let migrated) = try await admin.get(ResourceKind.kind("Secret")!, "db") else { Issue.record("no secret"); return }
            #expect(migrated.spec.data["password"] == Array("hunter3".utf8))
        }
    }
}

/// A leader's loop that ends on its own: the server gives up the lead and leads again with a
/// fresh set of loops (a new term), instead of leading without it.
@Suite(.timeLimit(.minutes(1)), .enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"))
struct LeadershipLoopTests {
    /// Fails the first time it runs, then runs until cancelled.
    final class FailsOnce: ServiceLifecycle.Service, Sendable {
        let runs = Mutex(0)
        struct Broke: Error {}
        func run() async throws {
            let run = runs.withLock { $0 += 1; return $0 }
            if run == 1 {
                try await Task.sleep(for: .milliseconds(200))
                throw Broke()
            }
            while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(50)) }
        }
    }

    @Test func aLoopThatFailsMakesTheLeaderResignAndLeadAgainWithFreshLoops() async throws {
        try await withEtcd { etcd, client in
            let directory = NSTemporaryDirectory() + "capstan-leadership-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let cluster = try await EtcdCluster(client: client, cipher: try SecretCipher(path: directory + "/secrets.keys"), bus: EventBus())
            let writer = StoreWriter(etcd: cluster)
            let informer = SharedInformer(writer: writer)
            let state = LeadershipState(server: "solo", leading: false)
            let loop = FailsOnce()
            let leadership = Leadership(election: LeaderElection(client: client, identity: "solo", ttl: 2), state: state, informer: informer,
                                        writer: writer, cluster: cluster, compactionInterval: .seconds(300), log: { _ in }, makeLoops: { _ in [(loop, nil)] })
            let running = Task { try await leadership.run() }
            defer { running.cancel() }
            var firstTerm: Int64?
            var secondTerm: Int64?
            for _ in 0..<200 where secondTerm == nil {
                let now = state.snapshot
                if now.leading, let term = now.term {
                    if firstTerm == nil { firstTerm = term } else if term != firstTerm { secondTerm = term }
                }
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(firstTerm != nil, "it led")
            #expect(secondTerm != nil && secondTerm != firstTerm, "it led again, in a new term, after the loop failed")
            #expect(loop.runs.withLock { $0 } == 2, "the loop ran again")
            #expect(state.snapshot.transitions >= 3)
        }
    }
}
