import CapstanAPI
import CapstanCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The control plane, through the real `capstan` binary next to this one:
/// - **apply → Running**: one Workload of 100 replicas applied to `capstan dev`; for each instance
///   the time from the apply to the watch event that shows it Running (process runtime, and runc
///   when root with runc and busybox-static).
/// - **API writes/s and watch fan-out**: 16 writers create Events against `capstan server` for a
///   fixed count while 10 watchers follow them; each event's delivery latency is measured from
///   just before its write was sent. Then the same at a steady 1,000 writes/s
///   (`CAPSTAN_BENCH_FANOUT_RATE`), latency counted from each write's due time.
/// - **Server memory**: RSS of `capstan server` holding 10,000 instances bound to 100 nodes.
/// - **Scheduling through the live server**: 5,000 registered nodes (no agents), one Workload of
///   10,000 replicas created; the time until every instance is bound in the store.
/// - **Idle agent**: CPU of `capstan agent` supervising 100 running instances, over 30 s.
enum ControlPlaneBenchmark {
    static func run(products: String) async {
        print("## Control plane (release binary, SQLite WAL + synchronous=FULL)\n")
        do {
            let only = ProcessInfo.processInfo.environment["CAPSTAN_BENCH_ONLY"]
            if only == "memory" {
                try await memory(products: products)
                return
            }
            if only == "scheduling" {
                try await scheduling(products: products)
                return
            }
            if only == "idle-agent" {
                try await idleAgent(products: products)
                return
            }
            if only == "apply" {
                try await applyToRunning(products: products, runtime: "process", replicas: 1)
                try await applyToRunning(products: products, runtime: "process", replicas: 100)
                return
            }
            if only == "runc" {
                try await applyToRunning(products: products, runtime: "runc", replicas: 100)
                return
            }
            if only == "writes" {
                let environment = ProcessInfo.processInfo.environment
                // Held to ranges: a negative count would trap in reserveCapacity.
                let watchers = min(max(Int(environment["CAPSTAN_BENCH_WATCHERS"] ?? "") ?? 10, 0), 100)
                let total = min(max(Int(environment["CAPSTAN_BENCH_WRITES"] ?? "") ?? 20_000, 1), 1_000_000)
                let writers = min(max(Int(environment["CAPSTAN_BENCH_WRITERS"] ?? "") ?? 16, 1), 256)
                try await writesAndWatch(products: products, writers: writers, watchers: watchers, total: total)
                return
            }
            try await applyToRunning(products: products, runtime: "process", replicas: 100)
            if getuid() == 0, FileManager.default.isExecutableFile(atPath: "/bin/busybox"), FileManager.default.isExecutableFile(atPath: "/usr/sbin/runc") {
                try await applyToRunning(products: products, runtime: "runc", replicas: 100)
            } else {
                print("runc: skipped (needs root, runc and busybox-static)\n")
            }
            try await writesAndWatch(products: products)
            try await memory(products: products)
            try await scheduling(products: products)
            try await idleAgent(products: products)
        } catch {
            print("control plane benchmark failed: \(error)\n")
        }
    }

    // MARK: apply → Running

    static func applyToRunning(products: String, runtime: String, replicas: Int) async throws {
        let server = try ServerProcess(products: products, verb: "dev")
        defer { server.stop() }
        let api = server.api
        var template = InstanceTemplate(command: ["sh", "-c", "exec sleep 1000"])
        if runtime == "runc" {
            let rootfs = server.directory + "/rootfs"
            let script = URL(fileURLWithPath: products).appendingPathComponent("../../../Examples/busybox-rootfs/build-rootfs.sh").standardizedFileURL.path
            let build = Process()
            build.executableURL = URL(fileURLWithPath: "/bin/sh")
            build.arguments = [script, rootfs]
            build.standardOutput = FileHandle.nullDevice
            try build.run()
            build.waitUntilExit()
            // Without its rootfs every container fails at once, and a time measured then is no
            // start: refuse rather than print it.
            guard build.terminationStatus == 0, FileManager.default.fileExists(atPath: rootfs + "/bin/busybox") else {
                print("runc: skipped — \(script) did not build a busybox rootfs in \(rootfs) (exit \(build.terminationStatus)); run the benchmark from the checkout's .build\n")
                return
            }
            template.runtime = "runc"
            template.image = rootfs
        }
        // One instance alone is measured 20 times (a p99 of one sample says nothing); 100 at once, once.
        let rounds = replicas == 1 ? 20 : 1
        var sorted: [Double] = []
        for round in 0..<rounds {
            let list = try await api.list(.instance)
            let events = try await api.watch(.instance, after: list.revision)
            let workload = Workload(name: "bench-\(round)", spec: WorkloadSpec(replicas: replicas, template: template))
            let applied = ContinuousClock.now
            _ = try await api.create(.workload(workload))
            var running: [String: Double] = [:]
            for try await event in events {
                guard case .instance(let instance)? = event.object, instance.status.phase == .running, running[instance.metadata.name] == nil else { continue }
                let elapsed = ContinuousClock.now - applied
                running[instance.metadata.name] = Double(elapsed.components.seconds) * 1000 + Double(elapsed.components.attoseconds) / 1e15
                if running.count == replicas { break }
            }
            sorted += running.values
            _ = try? await api.delete(.workload, "bench-\(round)")
            let deadline = Date().addingTimeInterval(60)
            while Date() < deadline, let left = try? await api.list(.instance).items.count, left > 0 {
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        sorted.sort()
        print("apply → Running, \(replicas) instance(s)\(rounds > 1 ? " alone, \(rounds) times" : " at once"), \(runtime) runtime: p50 \(format(percentile(sorted, 0.5), 1)) ms, p99 \(format(percentile(sorted, 0.99), 1)) ms, max \(format(sorted.last ?? 0, 1)) ms (from the Workload's create to each instance's Running event)")
        print("")
    }

    // MARK: writes and watch fan-out

    static func writesAndWatch(products: String, writers: Int = 16, watchers: Int = 10, total: Int = 20_000) async throws {
        let server = try ServerProcess(products: products, verb: "server")
        defer { server.stop() }
        let api = server.api
        // The events are about a node that exists (the server removes events about missing objects).
        let capacity: ResourceList = ["cpu": "4", "memory": "4Gi"]
        _ = try await server.nodeAPI("bench-node").create(.node(Node(name: "bench-node", spec: NodeSpec(), status: NodeStatus(capacity: capacity, allocatable: capacity))))
        // As fast as the writers go: throughput, and the latency of a saturated server.
        // CPU time per write, of the server and of this client: steadier on this VM than the
        // rate, which moves with what else the host runs.
        let serverBefore = HABenchmark.cpu(of: server.process.processIdentifier)
        let clientBefore = HABenchmark.cpu(of: getpid())
        let saturated = try await fanOut(api, prefix: "e", writers: writers, watchers: watchers, total: total, rate: nil)
        let serverCPU = HABenchmark.cpu(of: server.process.processIdentifier) - serverBefore
        let clientCPU = HABenchmark.cpu(of: getpid()) - clientBefore
        print("API writes: \(total) creates from \(writers) concurrent clients in \(format(saturated.seconds, 2)) s = \(Int(Double(total) / saturated.seconds)) writes/s (each acknowledged after its fsync); CPU per write: server \(Int(serverCPU * 1e6 / Double(total))) µs, benchmark client \(Int(clientCPU * 1e6 / Double(total))) µs (with its \(watchers) watchers)")
        print("watch fan-out at that saturation: \(watchers) watchers, \(saturated.latencies.count) deliveries: p50 \(format(percentile(saturated.latencies, 0.5), 2)) ms, p99 \(format(percentile(saturated.latencies, 0.99), 2)) ms (from before the write was sent to the watcher reading it)")
        // A steady load below saturation: the latency a watcher sees in a busy cluster that is
        // not overloaded. Open loop: each write has its due time, and latency counts from that
        // time, so a server that falls behind is charged for the writes it delays.
        let asked = ProcessInfo.processInfo.environment["CAPSTAN_BENCH_FANOUT_RATE"]
        var rate = 1_000.0
        if let asked {
            // A range, so no conversion below can trap (NaN, infinity, 0 or a negative rate).
            guard let value = Double(asked), value >= 1, value <= 100_000 else {
                print("CAPSTAN_BENCH_FANOUT_RATE=\(asked): give writes per second from 1 to 100000; the steady-rate fan-out is skipped\n")
                return
            }
            rate = value
        }
        let paced = try await fanOut(api, prefix: "p", writers: writers, watchers: watchers, total: min(total, max(1, Int(rate * 5))), rate: rate)
        print("watch fan-out at a steady \(Int(rate)) writes/s: \(watchers) watchers, \(paced.latencies.count) deliveries: p50 \(format(percentile(paced.latencies, 0.5), 2)) ms, p99 \(format(percentile(paced.latencies, 0.99), 2)) ms, max \(format(paced.latencies.last ?? 0, 2)) ms (from each write's due time to the watcher reading it)\n")
    }

    /// `total` Event creates from `writers` clients while `watchers` follow them. With a `rate`
    /// (writes/s, spread over the writers) each write waits for its due time; without one they go
    /// as fast as they are acknowledged.
    /// - Returns: how long the writes took, and every delivery's latency in ms, sorted.
    static func fanOut(_ api: APIClient, prefix: String, writers: Int, watchers: Int, total: Int, rate: Double?) async throws -> (seconds: Double, latencies: [Double]) {
        let start = try await api.list(.event).revision
        // Each watcher records the delivery latency of every event (the write's due or send
        // time rides in the event's message).
        return try await withThrowingTaskGroup(of: [Double].self) { group in
            for _ in 0..<watchers {
                let stream = try await api.watch(.event, after: start)
                group.addTask {
                    var seen: [Double] = []
                    seen.reserveCapacity(total)
                    do {
                        for try await event in stream {
                            if event.type == .resync { print("a watcher fell behind and was resynced after \(seen.count) events") }
                            guard case .event(let object)? = event.object, let sent = Double(object.spec.message) else { continue }
                            seen.append((Date().timeIntervalSince1970 - sent) * 1000)
                            if seen.count == total { break }
                        }
                    } catch {
                        print("a watcher stopped after \(seen.count) of \(total) events: \(error)")
                    }
                    return seen
                }
            }
            let begun = ContinuousClock.now
            let origin = Date().timeIntervalSince1970
            try await withThrowingTaskGroup(of: Void.self) { writersGroup in
                for writer in 0..<writers {
                    writersGroup.addTask {
                        for index in stride(from: writer, to: total, by: writers) {
                            var stamp = Date().timeIntervalSince1970
                            if let rate {
                                let due = origin + Double(index) / rate
                                if due > stamp { try await Task.sleep(for: .microseconds(Int((due - stamp) * 1_000_000))) }
                                stamp = due
                            }
                            let spec = EventSpec(involvedObject: "Node/bench-node", reason: "Bench", message: String(stamp), source: "bench")
                            _ = try await api.create(.event(Event(name: "\(prefix)\(index)", spec: spec)))
                        }
                    }
                }
                try await writersGroup.waitForAll()
            }
            let elapsed = ContinuousClock.now - begun
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            var all: [Double] = []
            for try await seen in group { all += seen }
            return (seconds, all.sorted())
        }
    }

    // MARK: memory

    static func memory(products: String, nodes: Int = 100, instances: Int = 10_000) async throws {
        let server = try ServerProcess(products: products, verb: "server")
        defer { server.stop() }
        let api = server.api
        let idle = server.rssMiB
        for index in 0..<nodes {
            let capacity: ResourceList = ["cpu": "64", "memory": "256Gi"]
            let beat = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
            // Registered as their agents would, each with its own node token.
            _ = try await server.nodeAPI("node-\(index)").create(.node(Node(name: "node-\(index)", spec: NodeSpec(), status: NodeStatus(capacity: capacity, allocatable: capacity, ready: true, lastHeartbeat: beat))))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<16 {
                group.addTask {
                    for index in stride(from: writer, to: instances, by: 16) {
                        var template = InstanceTemplate(command: ["sleep", "1000"])
                        template.resources = ResourceRequirements(requests: ["cpu": "100m", "memory": "64Mi"])
                        // Clients do not bind: the scheduler places them on the nodes.
                        _ = try await api.create(.instance(Instance(name: "i\(index)", labels: ["app": "bench"], spec: InstanceSpec(template: template))))
                    }
                }
            }
            try await group.waitForAll()
        }
        let listed = try await api.list(.instance).items.count
        print("server memory: \(format(idle, 1)) MiB idle; \(format(server.rssMiB, 1)) MiB RSS holding \(listed) instances on \(nodes) nodes (VmRSS of `capstan server`)\n")
    }

    // MARK: scheduling through the live server

    static func scheduling(products: String, nodes: Int = 5_000, replicas: Int = 10_000) async throws {
        let server = try ServerProcess(products: products, verb: "server")
        defer { server.stop() }
        let api = server.api
        // 5,000 nodes as their agents would register them (4 cpu, 32 GiB, 110 pods: the
        // scheduler_perf SchedulingBasic shape), each with its own node token. Timed apart:
        // each create is also given a pod subnet by the server.
        let (address, caPEM) = (server.address, server.caPEM)
        let registering = ContinuousClock.now
        let cpuBefore = HABenchmark.cpu(of: server.process.processIdentifier)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<16 {
                group.addTask {
                    for index in stride(from: writer, to: nodes, by: 16) {
                        let capacity: ResourceList = ["cpu": "4", "memory": "32Gi", "pods": "110"]
                        let beat = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
                        let token = try await api.createToken(role: "node", node: "node-\(index)").token
                        _ = try await APIClient(server: address, token: token, caPEM: caPEM).create(.node(Node(name: "node-\(index)", spec: NodeSpec(), status: NodeStatus(capacity: capacity, allocatable: capacity, ready: true, lastHeartbeat: beat))))
                    }
                }
            }
            try await group.waitForAll()
        }
        let registered = ContinuousClock.now - registering
        print("registering \(nodes) nodes (a node token and a Node create each, 16 clients): \(format(Double(registered.components.seconds) + Double(registered.components.attoseconds) / 1e18, 2)) s, server CPU \(format(HABenchmark.cpu(of: server.process.processIdentifier) - cpuBefore, 2)) s")
        var template = InstanceTemplate(command: ["sleep", "1000"])
        template.resources = ResourceRequirements(requests: ["cpu": "100m", "memory": "500Mi"])
        // Progress is read from the server's own counter of placements (`/metrics`, every
        // 20 ms), not from a watch: decoding 20,000 watch events would cost the benchmark client
        // more CPU, on the same 2 cores, than the scheduling it measures.
        func placed() async throws -> Int {
            let text = try await api.text("/metrics")
            return text.split(separator: "\n").filter { $0.hasPrefix("capstan_scheduling_duration_seconds_count") && $0.contains("result=\"placed\"") }
                .compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }.reduce(0, +)
        }
        let before = try await placed()
        let schedulingCPU = HABenchmark.cpu(of: server.process.processIdentifier)
        let created = ContinuousClock.now
        _ = try await api.create(.workload(Workload(name: "many", spec: WorkloadSpec(replicas: replicas, template: template))))
        var firstPlaced: ContinuousClock.Instant?
        while true {
            let count = try await placed() - before
            if count > 0 && firstPlaced == nil { firstPlaced = .now }
            if count >= replicas { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        // Placed means the binding write is under way: wait until the server counts every
        // binding written (listing 10,000 instances every 20 ms would cost the server more than
        // the writes it waits for), then check in one list that all are bound in the store.
        func bound() async throws -> Int {
            let text = try await api.text("/metrics")
            return text.split(separator: "\n").filter { $0.hasPrefix("capstan_scheduler_bindings_total") && $0.contains("result=\"bound\"") }
                .compactMap { $0.split(separator: " ").last.flatMap { Int($0) } }.reduce(0, +)
        }
        while try await bound() < replicas {
            try await Task.sleep(for: .milliseconds(20))
        }
        let total = ContinuousClock.now - created
        let binding = ContinuousClock.now - (firstPlaced ?? created)
        let serverCPU = HABenchmark.cpu(of: server.process.processIdentifier) - schedulingCPU
        let unbound = try await api.list(.instance).items.filter { if case .instance(let i) = $0 { i.spec.nodeName == nil } else { true } }.count
        if unbound > 0 { print("scheduling through the live server: \(unbound) instances not bound in the store after the server counted every binding") }
        let seconds = Double(total.components.seconds) + Double(total.components.attoseconds) / 1e18
        let bindingSeconds = Double(binding.components.seconds) + Double(binding.components.attoseconds) / 1e18
        print("scheduling through the live server: \(replicas) instances of one Workload onto \(nodes) nodes, all bound in \(format(seconds, 2)) s from the Workload's create = \(Int(Double(replicas) / seconds)) instances/s (the instances' creation by the controller included; from the first placement to the last binding: \(format(bindingSeconds, 2)) s = \(Int(Double(replicas) / max(bindingSeconds, 0.001))) bindings/s); server CPU \(format(serverCPU, 2)) s = \(Int(serverCPU * 1e6 / Double(replicas))) µs per instance (its create and its binding)\n")
    }

    // MARK: idle agent

    static func idleAgent(products: String, instances: Int = 100, seconds: Double = 30) async throws {
        let server = try ServerProcess(products: products, verb: "server")
        defer { server.stop() }
        let api = server.api
        let token = try await api.createToken(role: "node", node: "idle").token
        let agent = Process()
        agent.executableURL = URL(fileURLWithPath: products).appendingPathComponent("capstan")
        agent.arguments = ["agent", "--server", server.address, "--node-name", "idle", "--token", token, "--ca-file", server.directory + "/data/pki/ca.crt", "--data-dir", server.directory + "/agent"]
        agent.currentDirectoryURL = URL(fileURLWithPath: server.directory)
        agent.standardOutput = FileHandle.nullDevice
        agent.standardError = FileHandle(forWritingAtPath: "/dev/null")
        try agent.run()
        defer {
            kill(agent.processIdentifier, SIGTERM)
            agent.waitUntilExit()
        }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline, (try? await api.get(.node, "idle")) == nil { try await Task.sleep(for: .milliseconds(100)) }
        var template = InstanceTemplate(command: ["sleep", "100000"])
        template.resources = ResourceRequirements(requests: ["cpu": "1m", "memory": "1Mi"])
        _ = try await api.create(.workload(Workload(name: "idle", spec: WorkloadSpec(replicas: instances, template: template))))
        let running = Date().addingTimeInterval(120)
        while Date() < running {
            let items = try await api.list(.instance).items
            if items.count == instances, items.allSatisfy({ if case .instance(let i) = $0 { i.status.phase == .running } else { false } }) { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        try await Task.sleep(for: .seconds(3))
        func ticks() -> Double {
            guard let stat = try? String(contentsOfFile: "/proc/\(agent.processIdentifier)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return 0 }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return (Double(fields[11]) ?? 0) + (Double(fields[12]) ?? 0)
        }
        let before = ticks()
        try await Task.sleep(for: .seconds(seconds))
        let used = (ticks() - before) / Double(sysconf(Int32(_SC_CLK_TCK))) / seconds
        print("idle agent: \(instances) running instances (process runtime), \(format(used * 100, 2)) % of one core over \(Int(seconds)) s (utime + stime of `capstan agent`)\n")
        _ = try? await api.delete(.workload, "idle")
        let gone = Date().addingTimeInterval(60)
        while Date() < gone, let left = try? await api.list(.instance).items.count, left > 0 { try await Task.sleep(for: .milliseconds(200)) }
    }

    static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        guard !sorted.isEmpty else { return 0 }
        return sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]
    }
}

/// `capstan server` or `capstan dev` on a free port, in a temporary data directory.
final class ServerProcess {
    let process = Process()
    let directory: String
    private(set) var address = ""

    /// The server's first admin token.
    var token: String? { TokenFile.read(directory + "/data/admin.token") }
    /// The cluster CA of a `capstan server` (which serves HTTPS); nil for `dev` on loopback.
    var caPEM: String? { try? String(contentsOfFile: directory + "/data/pki/ca.crt", encoding: .utf8) }
    var api: APIClient { APIClient(server: address, token: token, caPEM: caPEM) }

    /// A client acting as node `name`'s agent, with a node token made for it.
    func nodeAPI(_ name: String) async throws -> APIClient {
        APIClient(server: address, token: try await api.createToken(role: "node", node: name).token, caPEM: caPEM)
    }

    init(products: String, verb: String) throws {
        directory = NSTemporaryDirectory() + "capstan-bench-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: products).appendingPathComponent("capstan")
        // Benchmark nodes send no heartbeats: keep the node lifecycle controller from evicting.
        process.arguments = [verb, "--listen", "127.0.0.1:0", "--data-dir", directory + "/data"] + (verb == "server" ? ["--node-timeout", "86400"] : [])
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        process.environment = ProcessInfo.processInfo.environment.merging(["CAPSTAN_CONFIG": directory + "/client-config"]) { _, new in new }
        process.standardOutput = FileHandle.nullDevice
        let log = directory + "/server.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
        let file = directory + "/data/server.address"
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: file, encoding: .utf8), !text.isEmpty {
                address = text.trimmingCharacters(in: .whitespacesAndNewlines)
                break
            }
            usleep(20_000)
        }
        if verb == "dev" { usleep(500_000) }
    }

    /// VmRSS of the process, in MiB.
    var rssMiB: Double {
        guard let text = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return (Double(line.split(separator: " ")[1]) ?? 0) / 1024
        }
        return 0
    }

    func stop() {
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: NSTemporaryDirectory() + "capstan-bench-last-server.log")
        try? FileManager.default.copyItem(atPath: directory + "/server.log", toPath: NSTemporaryDirectory() + "capstan-bench-last-server.log")
        // A server that did not stop cleanly: say so, with the end of its log.
        if process.terminationStatus != 0 || process.terminationReason == .uncaughtSignal {
            let log = (try? String(contentsOfFile: directory + "/server.log", encoding: .utf8)) ?? ""
            // Kept whole, beside the last server's log: a crash is worth reading in full.
            try? log.write(toFile: NSTemporaryDirectory() + "capstan-bench-crashed-server-\(process.processIdentifier).log", atomically: true, encoding: .utf8)
            print("capstan \(process.arguments?.first ?? "") exited with \(process.terminationStatus); its log ends:\n" + log.split(separator: "\n").suffix(40).joined(separator: "\n"))
        }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
