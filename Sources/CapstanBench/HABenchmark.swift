import CapstanAPI
import CapstanCore
import CapstanEtcd
import CapstanJSON
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Several servers on a 3-member etcd (issue 13), all on loopback, release binaries:
/// - **failover**: the leader `kill -9`ed, 10 times → the next instance created is bound by a
///   new leader (election + the new leader's informer and scheduler starting);
/// - **writes**: 3 servers, 32 concurrent clients creating Events through the API while 10
///   watchers follow, against a plain etcd client writing the same objects (JSON, one
///   create-if-absent transaction each) straight to the same etcd with 10 etcd watches following;
/// - **scale**: 100 hollow nodes (registered, each renewing its Lease every 10 s as an agent
///   does, no processes) held by 3 servers: the leader's CPU.
///
///   .build/release/capstan-bench ha
enum HABenchmark {
    final class Member {
        let process = Process()
        let directory: String
        let client: Int
        init(name: String, client: Int, peer: Int, cluster: String) throws {
            directory = NSTemporaryDirectory() + "capstan-bench-etcd-\(name)-\(UUID().uuidString.prefix(6))"
            self.client = client
            process.executableURL = URL(fileURLWithPath: "/usr/bin/etcd")
            process.arguments = ["--name", name, "--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:\(client)", "--advertise-client-urls", "http://127.0.0.1:\(client)",
                                 "--listen-peer-urls", "http://127.0.0.1:\(peer)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(peer)", "--initial-cluster", cluster]
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
        }
        func stop() {
            if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    final class Server {
        let process = Process()
        let name: String
        let directory: String
        private(set) var address = ""
        init(products: String, name: String, directory: String, store: String) throws {
            self.name = name
            self.directory = directory
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            process.executableURL = URL(fileURLWithPath: products).appendingPathComponent("capstan")
            process.arguments = ["server", "--store", store, "--name", name, "--insecure", "--listen", "127.0.0.1:0", "--data-dir", directory, "--node-timeout", "86400"]
            process.environment = ProcessInfo.processInfo.environment.merging(["CAPSTAN_CONFIG": directory + "/client-config"]) { _, new in new }
            // Kept after the run (appended across restarts): a failure is worth reading.
            let log = NSTemporaryDirectory() + "capstan-bench-ha-\(name).log"
            if !FileManager.default.fileExists(atPath: log) { _ = FileManager.default.createFile(atPath: log, contents: nil) }
            let handle = FileHandle(forWritingAtPath: log)
            handle?.seekToEndOfFile()
            process.standardOutput = handle ?? FileHandle.nullDevice
            process.standardError = handle ?? FileHandle.nullDevice
            try? FileManager.default.removeItem(atPath: directory + "/server.address")
            try process.run()
        }
        func ready() async throws {
            for _ in 0..<300 {
                if let text = try? String(contentsOfFile: directory + "/server.address", encoding: .utf8), !text.isEmpty {
                    address = text.trimmingCharacters(in: .whitespacesAndNewlines)
                    if (try? await APIClient(server: address).text("/readyz")) != nil { return }
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            throw EtcdError.unavailable("server \(name) did not start")
        }
        func kill9() { if process.isRunning { kill(process.processIdentifier, SIGKILL); process.waitUntilExit() } }
        /// User + system CPU seconds so far.
        var cpuSeconds: Double { HABenchmark.cpu(of: process.processIdentifier) }
    }

    /// User + system CPU seconds of a process so far.
    static func cpu(of pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func run(products: String) async {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd") else {
            print("## several servers on etcd\nskipped: needs Debian's etcd-server\n")
            return
        }
        let base = 26_000 + Int.random(in: 0..<2000) * 2
        let ports = (0..<3).map { (client: base + $0 * 2, peer: base + $0 * 2 + 1) }
        let cluster = ports.enumerated().map { "m\($0.offset)=http://127.0.0.1:\($0.element.peer)" }.joined(separator: ",")
        var members: [Member] = []
        var servers: [Server] = []
        let root = NSTemporaryDirectory() + "capstan-bench-ha-\(UUID().uuidString.prefix(6))"
        for name in ["s0", "s1", "s2"] { try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "capstan-bench-ha-\(name).log") }
        defer {
            for server in servers { server.kill9() }
            for member in members { member.stop() }
            try? FileManager.default.removeItem(atPath: root)
        }
        do {
            for (index, port) in ports.enumerated() { members.append(try Member(name: "m\(index)", client: port.client, peer: port.peer, cluster: cluster)) }
            let endpoints = ports.map { "http://127.0.0.1:\($0.client)" }
            let etcd = EtcdClient(endpoints: endpoints)
            for _ in 0..<100 {
                if (try? await etcd.range(Array("x".utf8))) != nil { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            let store = "etcd://" + ports.map { "127.0.0.1:\($0.client)" }.joined(separator: ",")
            servers.append(try Server(products: products, name: "s0", directory: root + "/s0", store: store))
            try await servers[0].ready()
            for index in 1...2 {
                try FileManager.default.createDirectory(atPath: root + "/s\(index)", withIntermediateDirectories: true)
                try FileManager.default.copyItem(atPath: root + "/s0/secrets.keys", toPath: root + "/s\(index)/secrets.keys")
                servers.append(try Server(products: products, name: "s\(index)", directory: root + "/s\(index)", store: store))
            }
            for server in servers.dropFirst() { try await server.ready() }
            guard let token = TokenFile.read(root + "/s0/admin.token") else { throw EtcdError.unavailable("no admin token") }
            func api(_ list: [Server]) -> APIClient { APIClient(server: list.map(\.address).joined(separator: ","), token: token, timeout: .seconds(5)) }
            let capacity: ResourceList = ["cpu": "64", "memory": "256Gi"]
            let nodeToken = try await api(servers).createToken(role: "node", node: "hollow-0").token
            let beat = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
            _ = try await APIClient(server: servers[0].address, token: nodeToken).create(.node(Node(name: "hollow-0", spec: NodeSpec(), status: NodeStatus(capacity: capacity, allocatable: capacity, ready: true, lastHeartbeat: beat))))
            print("## several servers on etcd (3 servers, 3 etcd members, loopback, plain HTTP)")

            // Failover, 10 kills. (CAPSTAN_BENCH_HA_PARTS=writes,scale runs only those parts.)
            let parts = Set((ProcessInfo.processInfo.environment["CAPSTAN_BENCH_HA_PARTS"] ?? "failover,writes,scale").split(separator: ",").map(String.init))
            var samples: [Double] = []
            var elections: [Double] = []
            for round in 0..<(parts.contains("failover") ? 10 : 0) {
                var leaderName: String?
                for _ in 0..<200 {
                    leaderName = try? await api(servers).servers().first(where: \.leader)?.name
                    if leaderName != nil { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                guard let leaderName, let victimIndex = servers.firstIndex(where: { $0.name == leaderName }) else { continue }
                let victim = servers[victimIndex]
                let survivors = servers.filter { $0.name != leaderName }
                victim.kill9()
                let killed = ContinuousClock.now
                let client = api(survivors)
                let probe = "probe-\(round)"
                while (try? await client.create(.instance(Instance(name: probe, spec: InstanceSpec(template: InstanceTemplate(command: ["sleep", "1"])))))) == nil {
                    try await Task.sleep(for: .milliseconds(20))
                }
                var elected: Double?
                while ContinuousClock.now - killed < .seconds(30) {
                    if elected == nil, let leader = try? await client.servers().first(where: \.leader), leader.name != leaderName { elected = seconds(ContinuousClock.now - killed) }
                    if case .instance(let instance)? = try? await client.get(.instance, probe), instance.spec.nodeName != nil {
                        samples.append(seconds(ContinuousClock.now - killed))
                        break
                    }
                    try await Task.sleep(for: .milliseconds(10))
                }
                if let elected { elections.append(elected) }
                // The killed server comes back (same data directory, same name) and follows.
                let restarted = try Server(products: products, name: victim.name, directory: victim.directory, store: store)
                servers[victimIndex] = restarted
                try await restarted.ready()
                _ = try? await client.delete(.instance, probe, force: true)
            }
            samples.sort()
            elections.sort()
            if parts.contains("failover") { print("failover, leader kill -9 → the next instance bound by a new leader, \(samples.count) kills: p50 \(format(samples.isEmpty ? 0 : samples[samples.count / 2], 2)) s, p99 \(format(samples.last ?? 0, 2)) s (new leader listed: p50 \(format(elections.isEmpty ? 0 : elections[elections.count / 2], 2)) s; lease TTL 2 s)") }

            if parts.contains("writes") {
                // Writes with 10 watchers: through the servers, then a plain etcd client, in
                // alternating rounds (this VM's speed drifts: the ratio of the medians of
                // alternating rounds is steadier than one of each).
                let total = 6000, writers = 32
                let rounds = min(50, max(1, Int(ProcessInfo.processInfo.environment["CAPSTAN_BENCH_HA_ROUNDS"] ?? "3") ?? 3))   // 1-50
                var throughRates: [Double] = [], directRates: [Double] = []
                var fewestSeen = Int.max
                for round in 0..<rounds {
                    let cpuBefore = (servers.map(\.cpuSeconds), members.map { cpu(of: $0.process.processIdentifier) }, cpu(of: getpid()))
                    let throughServers = try await writeRate(total: total, writers: writers) { index in
                        let client = APIClient(server: servers[index % 3].address, token: token, timeout: .seconds(10))
                        return { @Sendable n in
                            let spec = EventSpec(involvedObject: "Node/hollow-0", reason: "Bench", message: "m", source: "bench")
                            _ = try await client.create(.event(Event(name: "r\(round)-e\(n)", spec: spec)))
                        }
                    } watchers: {
                        let start = try await api(servers).list(.event).revision
                        return try await (0..<10).asyncMap { index in
                            let stream = try await APIClient(server: servers[index % 3].address, token: token).watch(.event, after: start)
                            return { @Sendable () async -> Int in
                                var seen = 0
                                do { for try await event in stream where event.object != nil { seen += 1; if seen == total { break } } } catch {}
                                return seen
                            }
                        }
                    }
                    let cpuAfter = (servers.map(\.cpuSeconds), members.map { cpu(of: $0.process.processIdentifier) }, cpu(of: getpid()))
                    print("  round \(round + 1), CPU seconds during the API writes: servers \(zip(cpuAfter.0, cpuBefore.0).map { format($0 - $1, 1) }.joined(separator: " ")), etcd members \(zip(cpuAfter.1, cpuBefore.1).map { format($0 - $1, 1) }.joined(separator: " ")), clients and watchers \(format(cpuAfter.2 - cpuBefore.2, 1))")
                    let directBefore = (members.map { cpu(of: $0.process.processIdentifier) }, cpu(of: getpid()))
                    let direct = try await writeRate(total: total, writers: writers) { _ in
                        return { @Sendable n in
                            let encoder = JSONEncoder()
                            encoder.outputFormatting = .sortedKeys
                            let spec = EventSpec(involvedObject: "Node/hollow-0", reason: "Bench", message: "m", source: "bench")
                            let body = Array(try encoder.encode(AnyResource.event(Event(name: "r\(round)-e\(n)", spec: spec))))
                            let key = Array("/bench/objects/Event/r\(round)-e\(n)".utf8)
                            _ = try await etcd.txn([.absent(key)], success: [.put(key: key, value: body, lease: nil)])
                        }
                    } watchers: {
                        let start = try await etcd.range(Array("x".utf8)).revision
                        return (0..<10).map { _ in
                            let stream = etcd.watch(Array("/bench/objects/".utf8), rangeEnd: EtcdClient.prefixEnd(Array("/bench/objects/".utf8)), startRevision: start + 1, prevKV: true)
                            return { @Sendable () async -> Int in
                                var seen = 0
                                // Following means reading the objects, as the API watchers do,
                                // with the decoder they use.
                                var decoder = FastJSONDecoder()
                                decoder.userInfo[.capstanTrustedDocument] = true
                                do {
                                    for try await batch in stream {
                                        for event in batch where (try? decoder.decode(AnyResource.self, from: Data(event.kv.value))) != nil { seen += 1 }
                                        if seen >= total { break }
                                    }
                                } catch {}
                                return seen
                            }
                        }
                    }
                    let directAfter = (members.map { cpu(of: $0.process.processIdentifier) }, cpu(of: getpid()))
                    print("  round \(round + 1), CPU seconds during the direct writes: etcd members \(zip(directAfter.0, directBefore.0).map { format($0 - $1, 1) }.joined(separator: " ")), client and watchers \(format(directAfter.1 - directBefore.1, 1))")
                    print("  round \(round + 1): through 3 servers \(Int(throughServers.rate)) writes/s, plain etcd client \(Int(direct.rate)) writes/s, ratio \(format(throughServers.rate / direct.rate, 2))")
                    throughRates.append(throughServers.rate)
                    directRates.append(direct.rate)
                    fewestSeen = min(fewestSeen, throughServers.seen, direct.seen)
                }
                let median = { (values: [Double]) -> Double in values.sorted()[values.count / 2] }
                print("writes, 32 clients, 10 watchers following, \(rounds) alternating rounds of \(total): through 3 servers median \(Int(median(throughRates))) writes/s; a plain etcd client writing the same objects straight to etcd median \(Int(median(directRates))) writes/s (every watcher saw at least \(fewestSeen) of \(total) each round); ratio of the medians \(format(median(throughRates) / median(directRates), 2))")
            }

            // 100 hollow nodes, a lease renewal each every 10 s, spread over the servers.
            guard parts.contains("scale") else { print(""); return }
            let nodes = 100
            var renewers: [Task<Void, Never>] = []
            for index in 1..<nodes {
                let name = "hollow-\(index)"
                let nodeToken = try await api(servers).createToken(role: "node", node: name).token
                let client = APIClient(server: servers[index % 3].address, token: nodeToken)
                _ = try await client.create(.node(Node(name: name, spec: NodeSpec(), status: NodeStatus(capacity: capacity, allocatable: capacity, ready: true, lastHeartbeat: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)))))
            }
            for index in 0..<nodes {
                let name = "hollow-\(index)"
                let nodeToken = try await api(servers).createToken(role: "node", node: name).token
                let client = APIClient(server: servers[index % 3].address, token: nodeToken)
                renewers.append(Task {
                    // Spread over the period, as agents started at different times are.
                    try? await Task.sleep(for: .milliseconds(index * 100))
                    var lease = Lease(name: name, spec: LeaseSpec(holderIdentity: "node/\(name)", leaseDurationSeconds: 40, renewTime: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)))
                    if case .lease(let stored)? = try? await client.create(.lease(lease)) { lease = stored }
                    while !Task.isCancelled {
                        try? await Task.sleep(for: .seconds(10))
                        lease.spec.renewTime = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
                        if case .lease(let stored)? = try? await client.update(.lease(lease)) { lease = stored }
                    }
                })
            }
            try await Task.sleep(for: .seconds(12))
            let leaderName = try await api(servers).servers().first(where: \.leader)?.name
            let before = servers.map(\.cpuSeconds)
            let window = 30.0
            try await Task.sleep(for: .seconds(window))
            let used = zip(servers.map(\.cpuSeconds), before).map { ($0 - $1) / window * 100 }
            for renewer in renewers { renewer.cancel() }
            let leaderIndex = servers.firstIndex { $0.name == leaderName } ?? 0
            let followers = used.enumerated().filter { $0.offset != leaderIndex }.map { format($0.element, 2) }.joined(separator: " and ")
            print("100 hollow nodes (a lease renewal each per 10 s), over \(Int(window)) s: the leader used \(format(used[leaderIndex], 2)) % of one core = \(format(used[leaderIndex] / 10, 3)) % per 10 nodes; the followers \(followers) %\n")
        } catch {
            print("## several servers on etcd\nfailed: \(error)\n")
        }
    }

    /// Runs `total` writes from `writers` concurrent writers while the watchers follow; the rate
    /// and the fewest events a watcher saw.
    static func writeRate(total: Int, writers: Int, _ makeWriter: (Int) -> @Sendable (Int) async throws -> Void,
                          watchers makeWatchers: () async throws -> [@Sendable () async -> Int]) async throws -> (rate: Double, seen: Int) {
        let watchers = try await makeWatchers()
        let watching = Task { await withTaskGroup(of: Int.self) { group in
            for watcher in watchers { group.addTask { await watcher() } }
            var fewest = Int.max
            for await seen in group { fewest = min(fewest, seen) }
            return fewest
        } }
        let begun = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<writers {
                let write = makeWriter(writer)
                group.addTask { for n in stride(from: writer, to: total, by: writers) { try await write(n) } }
            }
            try await group.waitForAll()
        }
        let rate = Double(total) / seconds(ContinuousClock.now - begun)
        let timeout = Task { try? await Task.sleep(for: .seconds(30)); watching.cancel() }
        let seen = await watching.value
        timeout.cancel()
        return (rate, seen)
    }
}

extension Sequence where Element: Sendable {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
