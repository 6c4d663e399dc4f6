import CapstanAPI
import CapstanCore
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 11 end to end: a server and two agents on two test hosts (network namespaces on a
/// test LAN), each agent with the `cni` network plugin (Debian's CNI plugins) and the `nftables`
/// load balancer. Everything stays inside namespaces this test makes.
@Suite(.serialized) struct NetworkingTests {
    static let cniBridge = "/usr/lib/cni/bridge"
    static var nft: String? { ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"].first { FileManager.default.isExecutableFile(atPath: $0) } }
    static var busybox: String? { ["/bin/busybox", "/usr/bin/busybox"].first { FileManager.default.isExecutableFile(atPath: $0) } }
    static var ready: Bool { TestHosts.available && FileManager.default.isExecutableFile(atPath: cniBridge) && nft != nil && busybox != nil }

    /// The cluster: hosts, folders, the CLI in host 1.
    final class Cluster: @unchecked Sendable {
        let hosts: TestHosts
        let directory: URL
        let port = 7_400 + Int.random(in: 0..<500)
        var nodes: [String] { (1...hosts.count).map { "n\(hosts.id)-\($0)" } }
        var server: String { "http://\(hosts.address(1)):\(port)" }
        var capstan: String { PluginsCLITests.products.appendingPathComponent("capstan").path }
        var environment: [String: String] { ["CAPSTAN_SERVER": server, "CAPSTAN_CONFIG": directory.appendingPathComponent("client-config").path] }
        /// Each host's agent command line, to start it again.
        var agents: [Int: [String]] = [:]

        init(hosts count: Int) throws {
            hosts = try TestHosts(count: count)
            directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-net-\(hosts.id)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        }

        func write(_ name: String, _ text: String) throws -> String {
            let url = directory.appendingPathComponent(name)
            try text.write(to: url, atomically: true, encoding: .utf8)
            return url.path
        }

        /// The CLI, run in host 1.
        func cli(_ arguments: String) async throws -> (status: Int32, output: String) {
            try await hosts.run(in: 1, "\(capstan) \(arguments)", environment: environment)
        }

        func json<T: Decodable>(_ type: T.Type, _ arguments: String) async throws -> T {
            // stdout only: an empty list says so on stderr, and prints nothing here.
            let result = try await cli(arguments + " -o json 2>/dev/null")
            guard result.status == 0 else { throw DevClusterError("capstan \(arguments): \(result.output)") }
            let text = result.output.trimmingCharacters(in: .whitespacesAndNewlines)
            return try JSONDecoder().decode(T.self, from: Data((text.isEmpty ? "[]" : text).utf8))
        }

        func instances() async throws -> [Instance] { try await json([Instance].self, "get instances") }

        /// - Parameter storage: also load the hostpath storage plugin on every agent (its default).
        func start(agentArguments: [String] = [], storage: Bool = false, serverArguments: [String] = ["--node-timeout", "5"]) async throws {
            let plugins = PluginsCLITests.products.path
            _ = try write("server.yaml", """
                apiVersion: capstan.dev/v1
                kind: Config
                pluginPaths: [\(plugins)]
                stateDirectory: \(directory.path)/server-state
                plugins: [{name: CapstanSpread}]
                defaults: {scheduler: spread}
                """)
            try hosts.start(in: 1, capstan, ["server", "--listen", "\(hosts.address(1)):\(port)", "--insecure", "--data-dir", "srv", "--config", "server.yaml"] + serverArguments,
                            directory: directory, environment: environment, log: "server.log")
            try await eventually("the server answers", timeout: 30) { (try? await self.cli("get nodes"))?.status == 0 }
            for (index, node) in nodes.enumerated() {
                let host = index + 1
                let token = try await cli("token create --role node --node \(node)")
                guard token.status == 0 else { throw DevClusterError("token: \(token.output)") }
                _ = try write("agent\(host).yaml", """
                    apiVersion: capstan.dev/v1
                    kind: Config
                    pluginPaths: [\(plugins)]
                    stateDirectory: \(directory.path)/agent\(host)-state
                    plugins:
                      - {name: CapstanProcessRuntime}
                      - {name: CapstanCNI, config: {bridge: capstan0}}
                      - {name: CapstanNFTables}
                    \(storage ? "  - {name: CapstanHostPath}" : "")
                    defaults: {runtime: process, network: cni, loadbalancer: nftables\(storage ? ", storage: hostpath" : "")}
                    """)
                agents[host] = ["agent", "--server", server, "--node-name", node, "--token", token.output.trimmingCharacters(in: .whitespacesAndNewlines),
                                "--listen", "\(hosts.address(host)):0", "--data-dir", "agent\(host)", "--config", "agent\(host).yaml", "--heartbeat", "0.5"] + agentArguments
                try hosts.start(in: host, capstan, agents[host]!, directory: directory, environment: environment, log: "agent\(host).log")
            }
            try await eventually("both nodes are ready with pod subnets", timeout: 30) {
                let nodes = (try? await self.json([Node].self, "get nodes")) ?? []
                return nodes.count == self.nodes.count && nodes.allSatisfy { $0.status.ready && $0.spec.podCIDR != nil }
            }
        }

        func logs() -> String {
            ["server.log", "agent1.log", "agent2.log"].map { name in
                "--- \(name)\n" + ((try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)).map { log in
                    // A crash's reason and crashing thread come first in Swift's backtrace,
                    // before the other threads: keep them, not just the log's end.
                    if let crash = log.range(of: "Program crashed") ?? log.range(of: "Fatal error") {
                        return String(log[..<crash.lowerBound].suffix(1500)) + String(log[crash.lowerBound...].prefix(5000))
                    }
                    return String(log.suffix(4000))
                } ?? "")
            }.joined(separator: "\n")
        }

        /// Deletes every workload and service, then stops everything and removes the hosts.
        func tearDown() async {
            for name in (try? await json([Workload].self, "get workloads"))?.map(\.metadata.name) ?? [] { _ = try? await cli("delete workload \(name)") }
            try? await eventually("instances are gone", timeout: 30) { ((try? await self.instances()) ?? []).isEmpty }
            hosts.tearDown(nodes: nodes)
            try? FileManager.default.removeItem(at: directory)
        }
    }

    static let backend = """
        apiVersion: capstan.dev/v1
        kind: Workload
        metadata: {name: backend}
        spec:
          replicas: 2
          restartBackoff: {initialSeconds: 20, maxSeconds: 20, resetAfterSeconds: 60}
          template:
            labels: {app: backend}
            command: ["sh", "-c", "mkdir -p www && echo \\"$CAPSTAN_INSTANCE\\" > www/index.html && exec busybox httpd -f -p 8080 -h www"]
            ports: [{name: http, containerPort: 8080}]
            resources: {requests: {cpu: 100m, memory: 16Mi}}
            readinessProbe: {httpGet: {path: /, port: 8080}, periodSeconds: 1}
            terminationGracePeriodSeconds: 1
        ---
        apiVersion: capstan.dev/v1
        kind: Service
        metadata: {name: backend}
        spec:
          selector: {app: backend}
          ports: [{name: http, port: 8080, targetPort: http}]
          algorithm: roundrobin
        ---
        apiVersion: capstan.dev/v1
        kind: Service
        metadata: {name: peers}
        spec:
          clusterIP: None
          selector: {app: backend}
          ports: [{name: http, port: 8080, targetPort: http}]
        """

    /// Instances on two hosts reach each other by IP and by service name; the service spreads
    /// round robin; hairpin works; endpoints follow readiness at once; DNS answers services
    /// (virtual IP and headless) and forwards the rest; deleting leaves nothing behind.
    @Test(.enabled(if: NetworkingTests.ready, "needs root, Debian's containernetworking-plugins, nftables and busybox (CI installs them)"))
    func servicesCarryTrafficAcrossTwoTestHosts() async throws {
        let cluster = try Cluster(hosts: 2)
        // The upstream resolver for names that are not services: a stand-in on host 1's loopback.
        try cluster.hosts.start(in: 1, "/usr/bin/python3", ["-c", Self.fakeResolver], directory: cluster.directory, log: "resolver.log")
        do {
            try await cluster.start(agentArguments: ["--dns-upstream", "127.0.0.1:5399"])
            try await exercise(cluster)
        } catch {
            Issue.record("\(error)\n\(cluster.logs())")
        }
        await cluster.tearDown()
        // Nothing is left of the instances: no namespace files of these nodes.
        let leftovers = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns"))?.filter { name in cluster.nodes.contains { name.hasPrefix("capstan-\($0)_") } } ?? []
        #expect(leftovers.isEmpty, "\(leftovers)")
        // /run/netns is made a shared mount once, never stacked (each agent start or instance).
        let mounts = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8))?.split(separator: "\n").filter { $0.split(separator: " ").count > 4 && $0.split(separator: " ")[4] == "/run/netns" }.count ?? 0
        #expect(mounts <= 1, "/run/netns is mounted \(mounts) times")
    }

    func exercise(_ cluster: Cluster) async throws {
        let manifest = try cluster.write("backend.yaml", Self.backend)
        let applied = try await cluster.cli("apply -f \(manifest) --wait --timeout 60")
        #expect(applied.status == 0, "\(applied.output)")
        // The backend on host 1 first: the one the checks below call from.
        let backends = try await cluster.instances().filter { $0.metadata.labels["app"] == "backend" }.sorted { ($0.spec.nodeName ?? "") < ($1.spec.nodeName ?? "") }
        try #require(backends.count == 2)
        let nodesUsed = Set(backends.compactMap(\.spec.nodeName))
        try #require(nodesUsed.count == 2, "spread over both hosts: \(backends.map { "\($0.metadata.name)@\($0.spec.nodeName ?? "-")" })")
        let addresses = backends.map { $0.status.addresses.first ?? "" }
        let nodes = try await cluster.json([Node].self, "get nodes")
        for backend in backends {
            let subnet = try #require(nodes.first { $0.metadata.name == backend.spec.nodeName }?.spec.podCIDR.flatMap(IPv4Network.init))
            #expect(IPv4Address(backend.status.addresses.first ?? "").map(subnet.contains) == true, "\(backend.metadata.name) has an address of its node's subnet \(subnet)")
        }
        let first = backends[0]
        let firstHost = 1
        try #require(first.spec.nodeName == cluster.nodes[0])
        let firstNamespace = "/run/netns/capstan-\(first.spec.nodeName!)_\(first.metadata.name)"
        let busybox = Self.busybox!

        // Across hosts by IP: from the first backend's namespace to the other's address.
        let byIP = try await cluster.hosts.run(in: firstHost, "nsenter --net=\(firstNamespace) \(busybox) wget -q -O - http://\(addresses[1]):8080/")
        #expect(byIP.output.contains(backends[1].metadata.name), "instance → instance on the other host by IP: \(byIP.output)")

        // By service name, through DNS, the virtual IP and the other host: round robin answers
        // each backend in turn; the first backend reaching its own service (hairpin) included.
        let service = try await cluster.json(CapstanCore.Service.self, "get service backend")
        let clusterIP = try #require(service.spec.clusterIP)
        let client = """
            apiVersion: capstan.dev/v1
            kind: Workload
            metadata: {name: client}
            spec:
              replicas: 1
              template:
                labels: {app: client}
                command: ["sh", "-c", "for i in 1 2 3 4 5 6; do busybox wget -q -O - http://backend:8080/ || echo failed; done; echo host=$BACKEND_SERVICE_HOST; exec sleep 1000"]
            """
        #expect(try await cluster.cli("apply -f \(try cluster.write("client.yaml", client)) --wait --timeout 60").status == 0)
        var answers: [String] = []
        try await eventually("the client made its six calls", timeout: 30) {
            guard let name = try await cluster.instances().first(where: { $0.metadata.labels["app"] == "client" })?.metadata.name else { return false }
            let log = try await cluster.cli("logs \(name)").output
            answers = log.split(separator: "\n").map(String.init)
            return log.contains("host=")
        }
        let counts = Dictionary(grouping: answers.filter { !$0.hasPrefix("host=") }, by: { $0 }).mapValues(\.count)
        print("round robin over 2 backends, 6 calls by name: \(counts)")
        #expect(counts[backends[0].metadata.name] == 3 && counts[backends[1].metadata.name] == 3, "round robin: \(counts)")
        #expect(answers.contains("host=\(clusterIP)"), "BACKEND_SERVICE_HOST: \(answers)")
        let hairpin = try await cluster.hosts.run(in: firstHost, "for i in 1 2 3 4; do nsenter --net=\(firstNamespace) \(busybox) wget -q -O - http://\(clusterIP):8080/; done")
        #expect(hairpin.output.contains(first.metadata.name) && hairpin.output.contains(backends[1].metadata.name), "hairpin and the other host: \(hairpin.output)")

        // Source affinity: one client address sticks to one backend; random spreads.
        func calls(_ count: Int) async throws -> [String: Int] {
            let result = try await cluster.hosts.run(in: firstHost, "for i in $(seq \(count)); do nsenter --net=\(firstNamespace) \(busybox) wget -q -O - http://\(clusterIP):8080/; done")
            return Dictionary(grouping: result.output.split(separator: "\n").map(String.init), by: { $0 }).mapValues(\.count)
        }
        func algorithm(_ name: String) async throws {
            let changed = Self.backend.replacingOccurrences(of: "algorithm: roundrobin", with: "algorithm: \(name)")
            #expect(try await cluster.cli("apply -f \(try cluster.write("backend-\(name).yaml", changed))").status == 0)
            let rule = ["sourcehash": "jhash ip saddr mod 2", "random": "numgen random mod 2"][name]!
            try await eventually("both hosts' data planes use \(name)", timeout: 10) {
                let first = try await cluster.hosts.run(in: 1, "nft list table ip capstan").output
                let second = try await cluster.hosts.run(in: 2, "nft list table ip capstan").output
                return first.contains(rule) && second.contains(rule)
            }
        }
        try await algorithm("sourcehash")
        let sticky = try await calls(8)
        print("sourcehash, 8 calls from one address: \(sticky)")
        #expect(sticky.count == 1 && sticky.values.first == 8, "\(sticky)")
        try await algorithm("random")
        let random = try await calls(24)
        print("random, 24 calls: \(random)")
        #expect(random.count == 2, "both backends answer (all 24 to one has odds 2^-23): \(random)")

        // DNS: a service's virtual IP, a headless service's ready endpoints, other names forwarded.
        let gateway = try #require(nodes.first { $0.metadata.name == first.spec.nodeName }?.spec.podCIDR.flatMap(IPv4Network.init)?.address(at: 1))
        let lookup = try await cluster.hosts.run(in: firstHost, "\(busybox) nslookup backend.capstan.local \(gateway); \(busybox) nslookup peers.capstan.local \(gateway); \(busybox) nslookup example.test \(gateway)")
        #expect(lookup.output.contains(clusterIP), "\(lookup.output)")
        #expect(addresses.allSatisfy(lookup.output.contains), "headless: both endpoints in \(lookup.output)")
        #expect(lookup.output.contains("10.213.0.99"), "forwarded to the upstream: \(lookup.output)")

        // An agent restart: host 2's agent stops; its backend is deleted while it is away (the
        // runtime keeps running it, and the workload makes a new one of the same name); back, the
        // agent stops the orphan and collects its network before it starts anything, and
        // re-adopts what it still should run.
        let away = try #require(backends.first { $0.spec.nodeName == cluster.nodes[1] })
        let agent2 = try #require(cluster.hosts.processes.last { $0.arguments?.contains("agent2.yaml") == true })
        kill(agent2.processIdentifier, SIGTERM)
        agent2.waitUntilExit()
        #expect(try await cluster.cli("delete instance \(away.metadata.name) --force").status == 0)
        try cluster.hosts.start(in: 2, cluster.capstan, cluster.agents[2]!, directory: cluster.directory, environment: cluster.environment, log: "agent2-again.log")
        try await eventually("the orphan's process is gone", timeout: 20) { kill(away.status.pid ?? 0, 0) != 0 }
        try await eventually("the backend of that name runs again with an address", timeout: 30) {
            guard let again = try await cluster.instances().first(where: { $0.metadata.name == away.metadata.name }) else { return false }
            return again.metadata.uid != away.metadata.uid && again.status.ready && !again.status.addresses.isEmpty
        }
        let results = try FileManager.default.contentsOfDirectory(atPath: cluster.directory.appendingPathComponent("agent2-state/plugins/cni/results").path)
        let onHost2 = try await cluster.instances().filter { $0.spec.nodeName == cluster.nodes[1] }.map { "\($0.metadata.name).json" }
        #expect(Set(results) == Set(onHost2), "one CNI attachment per instance on host 2: \(results) vs \(onHost2)")
        let refreshed = try await cluster.instances().filter { $0.metadata.labels["app"] == "backend" }.sorted { $0.metadata.name < $1.metadata.name }
        try await eventually("both backends are endpoints again", timeout: 20) {
            try await cluster.json(Endpoints.self, "get endpoints backend").spec.addresses.count == 2
        }

        // Endpoints follow readiness: kill -9 a backend and it leaves the endpoints at once (it
        // restarts only after its 20 s backoff: a window a loaded test machine cannot miss).
        let victim = try #require(refreshed.first { $0.metadata.name != first.metadata.name })
        let pid = try #require(victim.status.pid)
        let killed = ContinuousClock.now
        kill(pid, SIGKILL)
        try await eventually("the killed backend leaves the endpoints", timeout: 15) {
            let endpoints = try await cluster.json(Endpoints.self, "get endpoints backend")
            return !endpoints.spec.addresses.contains { $0.instance == victim.metadata.name }
        }
        let left = ContinuousClock.now - killed
        print("killed backend left the endpoints after \(left) (polled through the CLI every 50 ms)")
        #expect(left < .seconds(15))   // by readiness, not by its restart 20 s after the kill
        // New connections go to the live one only, and none is refused.
        let after = try await cluster.hosts.run(in: firstHost, "for i in 1 2 3 4; do nsenter --net=\(firstNamespace) \(busybox) wget -q -O - http://\(clusterIP):8080/ || echo failed; done")
        #expect(!after.output.contains("failed") && !after.output.contains(victim.metadata.name), "\(after.output)")
        _ = refreshed

        // Delete everything: no veth, address lease, namespace or nftables rule stays.
        #expect(try await cluster.cli("delete -f \(manifest)").status == 0)
        #expect(try await cluster.cli("delete workload client").status == 0)
        try await eventually("the instances are gone", timeout: 30) { try await cluster.instances().isEmpty }
        for host in 1...2 {
            try await eventually("host \(host) holds nothing of them", timeout: 10) {
                let state = try await cluster.hosts.run(in: host, "ip -br link | grep -c veth; ls \(cluster.directory.path)/agent\(host)-state/plugins/cni/ipam/capstan | grep -c '^10\\.' ; nft list table ip capstan | grep -c 'chain svc-'; ls /run/netns | grep -c '^capstan-\(cluster.nodes[host - 1])_'")
                return state.output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) } == ["0", "0", "0", "0"]
            }
        }
    }

    /// A failed ADD leaves nothing half-made, and the CNI plugin's own error reaches the
    /// instance's status: here portmap refuses its config after bridge has made a veth and
    /// leased an address.
    @Test(.enabled(if: NetworkingTests.ready, "needs root, Debian's containernetworking-plugins, nftables and busybox (CI installs them)"))
    func aFailedAttachLeavesNothingAndSaysWhy() async throws {
        let cluster = try Cluster(hosts: 2)
        do {
            let conflist = try cluster.write("broken.conflist", """
                {"cniVersion": "1.0.0", "name": "broken", "plugins": [
                  {"type": "bridge", "bridge": "capstan0", "isGateway": true, "ipam": {"type": "host-local", "dataDir": "\(cluster.directory.path)/ipam"}},
                  {"type": "portmap", "capabilities": {"portMappings": true}, "snat": "not a boolean"}
                ]}
                """)
            try await cluster.start(agentArguments: [])
            // Host 2's agent gets the broken list: restart it with that config.
            let config = cluster.directory.appendingPathComponent("agent2.yaml")
            let text = try String(contentsOf: config, encoding: .utf8).replacingOccurrences(of: "{bridge: capstan0}", with: "{conflist: \(conflist)}")
            try text.write(to: config, atomically: true, encoding: .utf8)
            let agent2 = cluster.hosts.processes.last { $0.arguments?.contains("agent2.yaml") == true }
            if let agent2 { kill(agent2.processIdentifier, SIGTERM); agent2.waitUntilExit() }
            let token = try await cluster.cli("token create --role node --node \(cluster.nodes[1])")
            try cluster.hosts.start(in: 2, cluster.capstan, ["agent", "--server", cluster.server, "--node-name", cluster.nodes[1], "--token", token.output.trimmingCharacters(in: .whitespacesAndNewlines),
                                                           "--listen", "\(cluster.hosts.address(2)):0", "--data-dir", "agent2", "--config", "agent2.yaml", "--heartbeat", "0.5"],
                                    directory: cluster.directory, environment: cluster.environment, log: "agent2b.log")
            // Two replicas with one host port each: one per node (the port is a scheduling filter).
            let manifest = try cluster.write("web.yaml", workloadYAML("web", replicas: 2, command: "exec sleep 1000", template: "    ports: [{name: http, containerPort: 8080, hostPort: 18080}]"))
            #expect(try await cluster.cli("apply -f \(manifest)").status == 0)
            var failed: Instance?
            try await eventually("the instance on host 2 reports portmap's refusal", timeout: 30) {
                failed = try await cluster.instances().first { $0.spec.nodeName == cluster.nodes[1] && ($0.status.message ?? "").contains("portmap") }
                return failed != nil
            }
            #expect(failed?.status.message?.contains("CNI portmap ADD failed") == true, "\(String(describing: failed?.status))")
            let events = try await cluster.cli("get events")
            #expect(events.output.contains("portmap"), "the plugin's error is in the events too")
            let state = try await cluster.hosts.run(in: 2, "ip -br link | grep -c veth; ls \(cluster.directory.path)/ipam/broken 2>/dev/null | grep -c '^10\\.'")
            #expect(state.output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) } == ["0", "0"], "no veth, no lease: \(state.output)")
            _ = try await cluster.cli("delete workload web")
        } catch {
            Issue.record("\(error)\n\(cluster.logs())")
        }
        await cluster.tearDown()
    }

    /// Answers every A query with 10.213.0.99 (a test resolver on host 1's loopback).
    static let fakeResolver = """
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 5399))
        while True:
            q, peer = s.recvfrom(512)
            end = 12
            while q[end] != 0:
                end += q[end] + 1
            end += 5
            answer = q[:2] + b"\\x81\\x80" + q[4:6] + b"\\x00\\x01\\x00\\x00\\x00\\x00" + q[12:end]
            if q[end - 4:end - 2] == b"\\x00\\x01":
                answer = answer[:6] + b"\\x00\\x01" + answer[8:] + b"\\xc0\\x0c\\x00\\x01\\x00\\x01\\x00\\x00\\x00\\x05\\x00\\x04" + bytes([10, 213, 0, 99])
            else:
                answer = answer[:6] + b"\\x00\\x00" + answer[8:]
            s.sendto(answer, peer)
        """
}
