import CapstanAgent
import CapstanAPI
import CapstanCore
import CapstanSDK
import Foundation
import PluginHost
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Issue 11's benchmarks (root; Debian's nftables, containernetworking-plugins and wrk). Every
/// address lives in network namespaces made here: a test LAN with host 1 (the "node", where this
/// benchmark runs itself again, inside) and host 2 (the backends).
///
/// - data-plane scale: 1,000 services × 10 endpoints in one `synchronize`, then one endpoint
///   change at that size (the nftables plugin through its .so);
/// - per-connection latency through a ClusterIP at 1 service and at 1,000 (connect, request,
///   answer, close), and throughput with wrk through the ClusterIP vs straight to the backend;
/// - CNI attach: a namespace made as the agent makes it + the cni plugin's ADD chain, vs the
///   host plugin's attach;
/// - network programming latency: a server and two agents; an instance's readiness written to
///   the API → the nftables change seen on both nodes (`nft monitor`, an event stream).
enum NetworkBenchmark {
    static let lan = "capb-lan", node = "capb-h1", backendHost = "capb-h2"
    static let nodeAddress = "10.213.9.1", backendAddress = "10.213.9.2", backendPort = 8080

    static func run(products: String) async {
        guard getuid() == 0, let nft = find("nft"), FileManager.default.isExecutableFile(atPath: "/usr/lib/cni/bridge") else {
            print("network: skipped (needs root, nftables and containernetworking-plugins)\n")
            return
        }
        _ = nft
        do {
            try shell(setup)
            defer { _ = try? shell(teardown) }
            // Everything else runs inside host 1.
            let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
            let child = Process()
            child.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            child.arguments = ["--net=/run/netns/\(node)", "--", exe, "network-inside"]
            try child.run()
            child.waitUntilExit()
        } catch {
            print("network: failed: \(error)\n")
        }
    }

    static let setup = """
        ip netns add \(lan); ip -n \(lan) link set lo up; ip -n \(lan) link add br0 type bridge; ip -n \(lan) link set br0 up
        for h in 1 2; do
          ip netns add capb-h$h; ip -n capb-h$h link set lo up
          ip -n \(lan) link add vcapb$h type veth peer name eth0 netns capb-h$h
          ip -n \(lan) link set vcapb$h master br0 up
          ip -n capb-h$h addr add 10.213.9.$h/24 dev eth0; ip -n capb-h$h link set eth0 up
          # What the cni plugin sets up on a node: virtual IPs route to lo, DNAT takes them from there.
          ip -n capb-h$h route add 10.96.0.0/16 dev lo
        done
        """
    static let teardown = """
        for f in /run/netns/capstan-capb*; do [ -e "$f" ] || continue; umount -l "$f"; rm -f "$f"; done
        ip netns del capb-h1; ip netns del capb-h2; ip netns del \(lan); true
        """

    /// In host 1.
    static func inside(products: String) async {
        print("## Networking (release; host 1 = this process's namespace, backends on host 2)\n")
        let only = ProcessInfo.processInfo.environment["CAPSTAN_BENCH_ONLY"]
        do {
            let server = try BackendServer(namespace: "/run/netns/\(backendHost)", address: backendAddress, port: backendPort)
            server.start()
            if only == nil || only == "dataplane" { try await dataPlane(products: products) }
            if only == nil || only == "cni" { try await cniAttach(products: products) }
            if only == nil || only == "programming" { try await programmingLatency(products: products) }
        } catch {
            print("network: failed: \(error)\n")
        }
    }

    // MARK: Data plane

    static func balancer(_ products: String, table: String) throws -> any LoadBalancerPlugin {
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: products + "/libCapstanNFTables.so", config: .object(["table": .string(table)]))],
                                              stateDirectory: NSTemporaryDirectory() + "capstan-bench-nft")
        guard let plugin = PluginHost.load(configuration).registry.loadBalancer(named: "nftables") else { throw BenchError("the nftables plugin did not load") }
        return plugin
    }

    static func services(_ count: Int, endpoints: Int) -> [ProgramServiceRequest] {
        (0..<count).map { index in
            let ip = "10.96.\(index / 250).\(index % 250 + 1)"
            var backends = (0..<endpoints).map { Backend(id: "s\(index)-e\($0)", address: "10.244.\($0 / 250).\($0 % 250 + 2)", port: 8080) }
            // Service 0's first endpoint is the real backend on host 2; the rest go nowhere.
            if index == 0 { backends = [Backend(id: "real", address: backendAddress, port: backendPort)] }
            return ProgramServiceRequest(service: "svc\(index):http/tcp", frontendAddress: ip, frontendPort: 80, backends: backends)
        }
    }

    static func dataPlane(products: String) async throws {
        let plugin = try balancer(products, table: "capbench")
        // 1 service: the baseline for per-connection latency.
        try await plugin.synchronize(services(1, endpoints: 10))
        let oneService = try connectionLatencies(to: "10.96.0.1", port: 80, count: 2000)
        var syncs: [Double] = []
        for _ in 0..<3 {
            let all = services(1000, endpoints: 10)
            syncs.append(try await measure { try await plugin.synchronize(all) })
        }
        var all = services(1000, endpoints: 10)
        var changes: [Double] = []
        for round in 0..<50 {
            // One endpoint of one service moves.
            let index = 1 + round % 999
            all[index].backends[round % 10].address = "10.244.9.\(round % 200 + 1)"
            let changed = all[index]
            changes.append(try await measure { try await plugin.program(changed) })
        }
        let thousand = try connectionLatencies(to: "10.96.0.1", port: 80, count: 2000)
        let sortedChanges = changes.sorted()
        print("| nftables data plane | value |\n|---|---|")
        print("| synchronize 1,000 services × 10 endpoints (3 runs) | median \(format(median(syncs) * 1000, 1)) ms, range \(format(syncs.min()! * 1000, 1))–\(format(syncs.max()! * 1000, 1)) ms |")
        print("| one endpoint change at that size (50 changes) | p50 \(format(percentile(sortedChanges, 0.5) * 1000, 2)) ms, p99 \(format(percentile(sortedChanges, 0.99) * 1000, 2)) ms |")
        print("| per-connection latency via ClusterIP, 1 service (2,000 connections) | p50 \(format(percentile(oneService, 0.5) * 1e6, 0)) µs, p99 \(format(percentile(oneService, 0.99) * 1e6, 0)) µs |")
        print("| per-connection latency via ClusterIP, 1,000 services (2,000 connections) | p50 \(format(percentile(thousand, 0.5) * 1e6, 0)) µs, p99 \(format(percentile(thousand, 0.99) * 1e6, 0)) µs (p50 ratio \(format(percentile(thousand, 0.5) / percentile(oneService, 0.5), 3))) |")
        let direct = try connectionLatencies(to: backendAddress, port: backendPort, count: 2000)
        print("| per-connection latency straight to the backend (2,000) | p50 \(format(percentile(direct, 0.5) * 1e6, 0)) µs, p99 \(format(percentile(direct, 0.99) * 1e6, 0)) µs |")
        if let wrk = find("wrk") {
            var viaService: [Double] = []
            var straight: [Double] = []
            for _ in 0..<5 {
                viaService.append(try wrkRate(wrk, "http://10.96.0.1:80/"))
                straight.append(try wrkRate(wrk, "http://\(backendAddress):\(backendPort)/"))
            }
            print("| wrk -t2 -c16 -d3s through the ClusterIP (5 runs alternating with the next row, 1,000 services programmed) | median \(format(median(viaService), 0)) req/s, range \(format(viaService.min()!, 0))–\(format(viaService.max()!, 0)) |")
            print("| wrk straight to the backend (5 runs, same run) | median \(format(median(straight), 0)) req/s, range \(format(straight.min()!, 0))–\(format(straight.max()!, 0)); ratio \(format(median(viaService) / median(straight), 3)) |")
        } else {
            print("| wrk | not installed: throughput skipped |")
        }
        try await plugin.synchronize([])
        try shell("nft delete table ip capbench")
        print("")
    }

    /// Seconds per connection: connect, send a request, read the answer, close.
    static func connectionLatencies(to host: String, port: Int, count: Int) throws -> [Double] {
        var results: [Double] = []
        results.reserveCapacity(count)
        let request = Array("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".utf8)
        var buffer = [UInt8](repeating: 0, count: 512)
        for _ in 0..<count {
            let start = ContinuousClock.now
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw BenchError("socket") }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = UInt16(port).bigEndian
            address.sin_addr.s_addr = (IPv4Address(host)?.value ?? 0).bigEndian
            let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard connected == 0 else { close(fd); throw BenchError("connect to \(host):\(port): \(String(cString: strerror(errno)))") }
            _ = send(fd, request, request.count, 0)
            _ = recv(fd, &buffer, buffer.count, 0)
            close(fd)
            let elapsed = ContinuousClock.now - start
            results.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
        }
        return results.sorted()
    }

    static func wrkRate(_ wrk: String, _ url: String) throws -> Double {
        let output = try shell("\(wrk) -t2 -c16 -d3s \(url)")
        guard let line = output.split(separator: "\n").first(where: { $0.hasPrefix("Requests/sec:") }),
              let value = Double(line.split(separator: " ").last ?? "") else { throw BenchError("wrk said: \(output)") }
        return value
    }

    // MARK: CNI attach

    static func cniAttach(products: String) async throws {
        let state = NSTemporaryDirectory() + "capstan-bench-cni-\(getpid())"
        let configuration = HostConfiguration(pluginPaths: [], plugins: [
            .init(path: products + "/libCapstanCNI.so", config: .object(["bridge": .string("capbench0")])),
            .init(path: products + "/libCapstanHostNetwork.so"),
        ], stateDirectory: state)
        let host = PluginHost.load(configuration)
        guard let cni = host.registry.network(named: "cni") as? any NetworkTopology, let hostNetwork = host.registry.network(named: "host") else { throw BenchError("network plugins did not load: \(host.problems)") }
        try await cni.configure(ClusterNetwork(nodeName: "capb", podCIDR: "10.244.40.0/24", clusterCIDR: "10.244.0.0/16", serviceCIDR: "10.96.0.0/16"))
        let namespaces = NetworkNamespaces(nodeName: "capb")
        var isolated: [Double] = []
        var shared: [Double] = []
        for index in 0..<60 {
            let id = "bench-\(index)"
            isolated.append(try await measure {
                let path = try await namespaces.create(for: id)
                _ = try await cni.attach(NetworkAttachRequest(instanceID: id, namespacePath: path, ports: []))
            })
            shared.append(try await measure {
                _ = try await hostNetwork.attach(NetworkAttachRequest(instanceID: id, ports: [PortSpec(containerPort: 8080)]))
            })
            try await cni.detach(NetworkDetachRequest(instanceID: id, namespacePath: namespaces.path(for: id)))
            namespaces.remove(for: id)
            try await hostNetwork.detach(NetworkDetachRequest(instanceID: id))
        }
        // The first attach makes the bridge: reported apart.
        let first = isolated.removeFirst()
        shared.removeFirst()
        isolated.sort()
        shared.sort()
        print("| instance network attach (59 instances, after a first that makes the bridge: \(format(first * 1000, 1)) ms) | value |\n|---|---|")
        print("| namespace + cni ADD (loopback, bridge, portmap) | p50 \(format(percentile(isolated, 0.5) * 1000, 1)) ms, p99 \(format(percentile(isolated, 0.99) * 1000, 1)) ms |")
        print("| host network attach | p50 \(format(percentile(shared, 0.5) * 1000, 2)) ms, p99 \(format(percentile(shared, 0.99) * 1000, 2)) ms |")
        print("| added by cni over host networking | p99 \(format((percentile(isolated, 0.99) - percentile(shared, 0.99)) * 1000, 1)) ms |\n")
        _ = try? shell("ip link del capbench0")
        try? FileManager.default.removeItem(atPath: state)
    }

    // MARK: Programming latency (a server and two agents)

    static func programmingLatency(products: String) async throws {
        let directory = NSTemporaryDirectory() + "capstan-bench-net-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let capstan = products + "/capstan"
        let port = 7_931
        let serverURL = "http://\(nodeAddress):\(port)"
        var processes: [Process] = []
        defer {
            for process in processes where process.isRunning {
                // `nft monitor` does not end on SIGTERM.
                kill(process.processIdentifier, process.arguments?.contains("monitor") == true ? SIGKILL : SIGTERM)
                process.waitUntilExit()
            }
        }
        func start(_ namespace: String, _ executable: String, _ arguments: [String], log: String) throws -> (Process, Pipe?) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/nsenter")
            process.arguments = ["--net=/run/netns/\(namespace)", "--", executable] + arguments
            process.currentDirectoryURL = URL(fileURLWithPath: directory)
            process.environment = ["CAPSTAN_CONFIG": directory + "/client-config", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
            var pipe: Pipe?
            if log.isEmpty {
                pipe = Pipe()
                process.standardOutput = pipe
            } else {
                _ = FileManager.default.createFile(atPath: directory + "/" + log, contents: nil)
                let handle = FileHandle(forWritingAtPath: directory + "/" + log)
                process.standardOutput = handle
                process.standardError = handle
            }
            try process.run()
            processes.append(process)
            return (process, pipe)
        }
        _ = try start(node, capstan, ["server", "--listen", "\(nodeAddress):\(port)", "--insecure", "--data-dir", "srv"], log: "server.log")
        var api = APIClient(server: serverURL)
        for _ in 0..<300 {
            if let token = try? String(contentsOfFile: directory + "/srv/admin.token", encoding: .utf8) {
                api = APIClient(server: serverURL, token: token.trimmingCharacters(in: .whitespacesAndNewlines))
                if (try? await api.list(.node)) != nil { break }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        for (index, host) in [node, backendHost].enumerated() {
            let name = "capb-n\(index + 1)"
            let token = try await api.createToken(role: "node", node: name).token
            let config = """
                apiVersion: capstan.dev/v1
                kind: Config
                pluginPaths: [\(products)]
                stateDirectory: \(directory)/agent\(index + 1)
                plugins: [{name: CapstanProcessRuntime}, {name: CapstanHostNetwork}, {name: CapstanNFTables}]
                defaults: {runtime: process, network: host, loadbalancer: nftables}
                """
            try config.write(toFile: "\(directory)/agent\(index + 1).yaml", atomically: true, encoding: .utf8)
            _ = try start(host, capstan, ["agent", "--server", serverURL, "--node-name", name, "--token", token, "--listen", "10.213.9.\(index + 1):0",
                                          "--data-dir", "agent\(index + 1)", "--config", "agent\(index + 1).yaml", "--heartbeat", "1"], log: "agent\(index + 1).log")
        }
        for _ in 0..<300 {
            if let nodes = try? await api.list(.node).items, nodes.count == 2 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        // Four instances with a readiness probe on a file the benchmark flips: each flip
        // changes the service's Endpoints in the store (seen here through a watch: t0), and
        // then both nodes' nftables (seen through `nft monitor`: t1).
        var spec = ServiceSpec(selector: ["app": "bench"], ports: [ServicePort(name: "http", port: 80, targetPort: 8080)])
        spec.algorithm = "random"
        _ = try await api.create(.service(CapstanCore.Service(name: "bench", spec: spec)))
        let flags = directory + "/ready"
        try FileManager.default.createDirectory(atPath: flags, withIntermediateDirectories: true)
        for index in 0..<4 { _ = FileManager.default.createFile(atPath: "\(flags)/\(index)", contents: nil) }
        var template = InstanceTemplate(command: ["sh", "-c", "exec sleep 100000"], labels: ["app": "bench"], ports: [PortSpec(name: "http", containerPort: 8080)])
        template.readinessProbe = Probe(exec: ["sh", "-c", "test -f \(flags)/${CAPSTAN_INSTANCE##*-}"], periodSeconds: 0.2)
        template.terminationGracePeriodSeconds = 1
        _ = try await api.create(.workload(Workload(name: "bench", spec: WorkloadSpec(replicas: 4, template: template))))
        for _ in 0..<600 {
            if case .endpoints(let endpoints)? = try? await api.get(ResourceKind.kind("Endpoints")!, "bench"), endpoints.spec.addresses.count == 4 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        let endpointChanges = Arrivals()
        let list = try await api.list(ResourceKind.kind("Endpoints")!)
        let watch = try await api.watch(ResourceKind.kind("Endpoints")!, after: list.revision)
        let watcher = Task {
            for try await event in watch where event.object?.name == "bench" {
                let now = ContinuousClock.now
                endpointChanges.times.withLock { $0.append(now) }
            }
        }
        defer { watcher.cancel() }
        // nft monitor on both nodes: every ruleset change as it happens.
        let monitors = try [node, backendHost].map { try start($0, "/usr/sbin/nft", ["monitor", "ruleset"], log: "").1! }
        let seen = [Arrivals(), Arrivals()]
        for (index, pipe) in monitors.enumerated() {
            let handle = pipe.fileHandleForReading
            let record = seen[index]
            let thread = Thread {
                var pending = ""
                while true {
                    let data = handle.availableData
                    if data.isEmpty { return }
                    let now = ContinuousClock.now
                    pending += String(decoding: data, as: UTF8.self)
                    while let newline = pending.firstIndex(of: "\n") {
                        pending = String(pending[pending.index(after: newline)...])
                        record.times.withLock { $0.append(now) }
                    }
                }
            }
            thread.start()
        }
        try await Task.sleep(for: .milliseconds(500))
        var latencies: [Double] = []
        for round in 0..<40 {
            let flag = "\(flags)/\(round % 4)"
            for record in seen { record.times.withLock { $0.removeAll() } }
            endpointChanges.times.withLock { $0.removeAll() }
            if FileManager.default.fileExists(atPath: flag) { try FileManager.default.removeItem(atPath: flag) } else { _ = FileManager.default.createFile(atPath: flag, contents: nil) }
            var t0: ContinuousClock.Instant?
            var firsts: [ContinuousClock.Instant?] = [nil, nil]
            for _ in 0..<1500 {
                t0 = endpointChanges.times.withLock { $0.first }
                firsts = seen.map { $0.times.withLock { $0.first } }
                if t0 != nil && firsts.allSatisfy({ $0 != nil }) { break }
                try await Task.sleep(for: .milliseconds(2))
            }
            guard let t0, firsts.allSatisfy({ $0 != nil }), let last = firsts.compactMap({ $0 }).max() else {
                print("| programming latency | round \(round): no change seen within 3 s |")
                continue
            }
            let elapsed = last - t0
            latencies.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            try await Task.sleep(for: .milliseconds(300))
        }
        latencies.sort()
        print("| network programming latency, 2 nodes | value |\n|---|---|")
        print("| Endpoints changed in the store (watch) → nftables changed on both nodes (`nft monitor`), \(latencies.count) changes | p50 \(format(percentile(latencies, 0.5) * 1000, 1)) ms, p99 \(format(percentile(latencies, 0.99) * 1000, 1)) ms, max \(format((latencies.last ?? 0) * 1000, 1)) ms |\n")
        _ = try? await api.delete(ResourceKind.kind("Service")!, "bench")
        _ = try? await api.delete(.workload, "bench")
        for _ in 0..<200 {
            if (try? await api.list(.instance).items.isEmpty) == true { break }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    // MARK: Helpers

    /// Unbuffered: the benchmark runs as a child whose output must survive a timeout.
    static func print(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    /// The nearest-rank percentile of sorted values.
    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        let rank = Int((Double(sorted.count) * p).rounded(.up))
        return sorted[max(0, min(sorted.count - 1, rank - 1))]
    }

    static func find(_ name: String) -> String? {
        ["/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"].map { $0 + name }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @discardableResult
    static func shell(_ script: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        guard process.terminationStatus == 0 else { throw BenchError("\(script.prefix(80))…: \(text)") }
        return text
    }
}

/// When lines or events arrived, shared between a reading thread and the benchmark.
final class Arrivals: Sendable {
    let times = Mutex<[ContinuousClock.Instant]>([])
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// A minimal HTTP/1.1 server in another network namespace: thread per connection, keep-alive,
/// answers every request with "ok" — so the benchmark measures the path, not the server.
final class BackendServer: Sendable {
    let fd: Int32

    init(namespace: String, address: String, port: Int) throws {
        // The socket belongs to the namespace of the thread that makes it.
        let made = Mutex<Int32>(-1)
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            defer { done.signal() }
            let ns = open(namespace, O_RDONLY)
            typealias SetNS = @convention(c) (Int32, Int32) -> Int32
            guard ns >= 0, let symbol = dlsym(nil, "setns"), unsafeBitCast(symbol, to: SetNS.self)(ns, 0x4000_0000) == 0 else { return }
            close(ns)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var one: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            var local = sockaddr_in()
            local.sin_family = sa_family_t(AF_INET)
            local.sin_port = UInt16(port).bigEndian
            local.sin_addr.s_addr = (IPv4Address(address)?.value ?? 0).bigEndian
            let bound = withUnsafePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard bound == 0, listen(fd, 512) == 0 else { return }
            made.withLock { $0 = fd }
        }
        thread.start()
        done.wait()
        fd = made.withLock { $0 }
        guard fd >= 0 else { throw BenchError("the backend server could not listen on \(address):\(port) in \(namespace)") }
    }

    func start() {
        let fd = self.fd
        let acceptor = Thread {
            while true {
                let client = accept(fd, nil, nil)
                if client < 0 {
                    if errno == EBADF || errno == EINVAL { return }
                    usleep(1000)
                    continue
                }
                let worker = Thread { BackendServer.serve(client) }
                worker.start()
            }
        }
        acceptor.start()
    }

    static func serve(_ client: Int32) {
        let answer = Array("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok".utf8)
        var buffer = [UInt8](repeating: 0, count: 4096)
        var pending: [UInt8] = []
        while true {
            let count = recv(client, &buffer, buffer.count, 0)
            if count <= 0 { break }
            pending += buffer[0..<count]
            // One answer per complete request head.
            while let end = find(pending) {
                pending.removeFirst(end)
                _ = send(client, answer, answer.count, Int32(MSG_NOSIGNAL))
            }
        }
        close(client)
    }

    static func find(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4) where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 { return index + 4 }
        return nil
    }
}
