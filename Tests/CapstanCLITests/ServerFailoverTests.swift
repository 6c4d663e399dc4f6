import CapstanAPI
import CapstanCore
import CapstanEtcd
import CapstanTestSupport
import Foundation
import Synchronization
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Several servers on one etcd, killed while they work (issue 13's fault tests): the real
/// binaries on loopback, etcd as three members.
/// In the networking suite, one at a time with the other tests that start many processes: on
/// two cores they would starve each other's timings.
extension NetworkingTests {
    /// Writes one Secret until it is acknowledged: an error after the request may have been
    /// applied is retried, and `alreadyExists` then means the earlier attempt was.
    static func writeSecret(_ api: APIClient, _ name: String, _ value: String) async -> Bool {
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

    @Test(.enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"), .timeLimit(.minutes(3)))
    func killingTheLeaderDuringWritesLosesNoAcknowledgedWriteAndAnotherLeadsAndSchedules() async throws {
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
                            if await Self.writeSecret(writer, name, value) { acked.values.withLock { $0[name] = value } }
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
        for index in 0..<100 where await Self.writeSecret(survivorAPI, "after-member-\(index)", "x") { more += 1 }
        #expect(more == 100)
        #expect(try await survivorAPI.list(ResourceKind.kind("Secret")!).items.filter { $0.name.hasPrefix("after-member-") }.count == 100)
        print("one etcd member of three killed: 100 of 100 further writes acknowledged and listed")

        // kill -9 a follower: the leader keeps leading and scheduling.
        // Killing a member (perhaps etcd's own leader) can make the servers' lease lapse while
        // etcd elects again: a server leads again within its lease TTL.
        var leaderNow = ""
        try await eventually("a server leads after the member's loss", timeout: 15) {
            leaderNow = try await survivorAPI.servers().first(where: \.leader)?.name ?? ""
            return !leaderNow.isEmpty
        }
        let follower = try #require(survivors.first { $0.name != leaderNow })
        follower.kill9()
        let leaderAPI = APIClient(server: try #require(survivors.first { $0.name == leaderNow }).address, token: token)
        _ = try await leaderAPI.create(.instance(Instance(name: "probe-2", spec: InstanceSpec(template: InstanceTemplate(command: ["sleep", "1"])))))
        // It is the only server left, so it leads — also if a stall of this loaded test process
        // let its 2 s lease lapse, in which case it campaigns and wins again (the bounds allow
        // for that: 15 s).
        var bound = false
        let deadline = ContinuousClock.now + .seconds(15)
        while ContinuousClock.now < deadline {
            if case .instance(let probe)? = try? await leaderAPI.get(.instance, "probe-2"), probe.spec.nodeName != nil { bound = true; break }
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(bound, "the leader schedules with a follower gone")
        try await eventually("\(leaderNow) leads", timeout: 15) { (try? await leaderAPI.servers().first(where: \.leader)?.name) == leaderNow }
    }
}

extension NetworkingTests {
    /// Services created at the same moment through two servers never share a virtual IP, nor
    /// nodes a pod subnet: each new address is reserved in etcd first.
    @Test(.enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"), .timeLimit(.minutes(3)))
    func addressesGivenByTwoServersAtOnceNeverCollide() async throws {
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
    @Test(.enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"), .timeLimit(.minutes(3)))
    func anAgentFailsOverToAnotherServer() async throws {
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
    @Test(.enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"), .timeLimit(.minutes(3)))
    func aServerWithAnotherSecretsKeyRefusesToStart() async throws {
        try await withEtcd { etcd, _ in
            let first = try ServerProcess(name: "keyed", etcd: [etcd.endpoint])
            defer { first.stop() }
            try await first.ready()
            let stranger = try ServerProcess(name: "stranger", etcd: [etcd.endpoint])
            defer { stranger.stop() }
            #expect(await exitStatus(of: stranger.process) != 0)
            #expect(stranger.log.contains("does not hold the key this cluster's Secrets are sealed with: copy secrets.keys"), "\(stranger.log)")
        }
    }

    /// etcd serving TLS and asking for client certificates: the server reaches it with
    /// `--etcd-cafile/--etcd-certfile/--etcd-keyfile`; without a certificate it cannot, and says
    /// so; a member off loopback without TLS is refused before anything is sent.
    @Test(.enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"), .timeLimit(.minutes(2)))
    func aServerReachesEtcdOverTLSWithAClientCertificate() async throws {
        let pki = try EtcdPKI()
        defer { pki.remove() }
        let etcd = try EtcdServer(pki: pki)
        defer { etcd.stop() }
        try await etcd.ready()
        let server = try ServerProcess(name: "tls", etcd: [etcd.endpoint], extra: ["--etcd-cafile", pki.caFile, "--etcd-certfile", pki.clientCertificateFile, "--etcd-keyfile", pki.clientKeyFile])
        defer { server.stop() }
        try await server.ready()
        let token = try #require(server.adminToken)
        let api = APIClient(server: server.address, token: token)
        _ = try await api.create(.secret(Secret(name: "over-tls", spec: SecretSpec(data: ["v": Array("x".utf8)]))))
        #expect(try await api.servers().first?.leader == true)
        // It is in etcd, read with the same certificate.
        let client = EtcdClient(endpoints: [etcd.endpoint], tls: etcd.clientTLS)
        #expect(try await client.prefix("/capstan/").kvs.contains { $0.keyString.hasSuffix("/over-tls") })

        // Only the CA, no client certificate: etcd refuses the handshake, the server exits naming etcd.
        let anonymous = try ServerProcess(name: "anonymous", etcd: [etcd.endpoint], secretsFrom: server.directory, extra: ["--etcd-cafile", pki.caFile])
        defer { anonymous.stop() }
        #expect(await exitStatus(of: anonymous.process) != 0)
        #expect(anonymous.log.contains("give --etcd-certfile and --etcd-keyfile"), "\(anonymous.log)")

        // Off loopback without TLS: refused at validation, naming the flags that fix it.
        let remote = try ServerProcess(name: "remote", etcd: ["http://192.0.2.1:2379"])
        defer { remote.stop() }
        #expect(await exitStatus(of: remote.process) == 2)
        #expect(remote.log.contains("--etcd-cafile") && remote.log.contains("--allow-plaintext-etcd"), "\(remote.log)")
    }

    /// The StorageClasses of capstan.yaml are the leader's: a follower with another config does
    /// not write its own (they would undo each other at every start); when it leads, its config
    /// is written, once, at the start of its term.
    @Test(.enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"), .timeLimit(.minutes(2)))
    func onlyTheLeaderWritesTheConfiguredStorageClasses() async throws {
        try await withEtcd { etcd, _ in
            let configs = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-sc-\(UUID().uuidString.prefix(8))")
            try FileManager.default.createDirectory(at: configs, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: configs) }
            try "storageClasses:\n  fast: {provisioner: hostpath, reclaimPolicy: Retain}\n".write(to: configs.appendingPathComponent("a.yaml"), atomically: true, encoding: .utf8)
            try "storageClasses:\n  fast: {provisioner: hostpath, reclaimPolicy: Delete}\n  slow: {provisioner: hostpath}\n".write(to: configs.appendingPathComponent("b.yaml"), atomically: true, encoding: .utf8)
            let first = try ServerProcess(name: "a", etcd: [etcd.endpoint], extra: ["--config", configs.appendingPathComponent("a.yaml").path])
            defer { first.stop() }
            try await first.ready()
            let token = try #require(first.adminToken)
            let api = APIClient(server: first.address, token: token)
            func classes() async throws -> [String: ReclaimPolicy] {
                var found: [String: ReclaimPolicy] = [:]
                for case .storageClass(let sc) in try await api.list(.storageClass).items { found[sc.metadata.name] = sc.spec.effectiveReclaimPolicy }
                return found
            }
            try await eventually("a leads and writes its classes", timeout: 10) { (try? await classes()) == ["fast": .retain] }
            let second = try ServerProcess(name: "b", etcd: [etcd.endpoint], secretsFrom: first.directory, extra: ["--config", configs.appendingPathComponent("b.yaml").path])
            defer { second.stop() }
            try await second.ready()
            // b follows: a's classes stay as they are.
            try await Task.sleep(for: .seconds(1))
            #expect(try await classes() == ["fast": .retain])
            // a is gone: b leads and writes its own.
            first.kill9()
            let onB = APIClient(server: second.address, token: token)
            try await eventually("b leads and writes its classes", timeout: 20) {
                var found: [String: ReclaimPolicy] = [:]
                for case .storageClass(let sc) in (try? await onB.list(.storageClass).items) ?? [] { found[sc.metadata.name] = sc.spec.effectiveReclaimPolicy }
                return found == ["fast": .delete, "slow": .delete]
            }
        }
    }
}
