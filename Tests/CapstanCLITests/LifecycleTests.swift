import CapstanAPI
import CapstanCore
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 9: a clean stop exits 0 and readiness is real; a failed first start recovers once its
/// cause is gone, with the plugin's own reason in status meanwhile.
@Suite(.serialized) struct LifecycleTests {
    @Test func sigtermStopsCleanlyAndReadyzAnswersOnceTheLoopsRun() async throws {
        let cluster = try DevCluster()
        defer { try? FileManager.default.removeItem(at: cluster.dataDirectory) }
        try await cluster.start()
        let (_, response) = try await URLSession.shared.data(from: URL(string: "\(cluster.address)/readyz")!)
        #expect((response as? HTTPURLResponse)?.statusCode == 200)
        let process = try #require(cluster.process)
        cluster.stop(signal: SIGTERM)
        #expect(process.terminationReason == .exit && process.terminationStatus == 0, "\(cluster.log)")
        #expect(!cluster.log.contains("ServiceGroupError"), "\(cluster.log)")
    }

    /// Before: every retry after a failed create said "instance X does not exist on this node",
    /// forever, even once the port was free; the network plugin's refusal appeared nowhere.
    @Test func aFailedFirstStartRecoversOnceItsCauseIsGone() async throws {
        // Hold a host port the instance asks for.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        let port = 20_000 + Int.random(in: 0..<5_000)
        holder.arguments = ["python3", "-c", "import socket,time; s=socket.socket(); s.bind(('0.0.0.0', \(port))); s.listen(); time.sleep(60)"]
        try holder.run()
        defer { if holder.isRunning { kill(holder.processIdentifier, SIGKILL); holder.waitUntilExit() } }
        // Until python has bound it (a loaded machine may take seconds to start it).
        try await eventually("the port is held", timeout: 20) { portIsTaken(port) }

        try await withDevCluster { cluster in
            let manifest = try cluster.manifest("held.yaml", workloadYAML("held", replicas: 1, command: "exec sleep 1000", template: """
                ports:
                  - {containerPort: 8080, hostPort: \(port)}
            """))
            #expect(try await cluster.capstan("apply", "-f", manifest).status == 0)
            var name = ""
            try await eventually("the start fails with the network plugin's reason", timeout: 20) {
                guard let instance = try await cluster.instances(of: "held").first else { return false }
                name = instance.metadata.name
                // StartFailed, or CrashLoopBackOff once it failed twice (a loaded machine may look late).
                return ["StartFailed", "CrashLoopBackOff"].contains(instance.status.reason ?? "") && (instance.status.message ?? "").contains("host port \(port)/tcp is in use")
            }
            // A retry still names the real cause.
            try await eventually("the retry fails for the same reason", timeout: 20) {
                let instance = try await cluster.instance(name)
                return instance.status.restarts >= 1 && (instance.status.message ?? "").contains("is in use") && !(instance.status.message ?? "").contains("does not exist")
            }
            let events = try await cluster.capstan("events", "--for", "Instance/\(name)").output
            #expect(events.contains("is in use"), "\(events)")
            // The cause goes away: the next retry creates it and it runs.
            kill(holder.processIdentifier, SIGKILL)
            holder.waitUntilExit()
            try await eventually("it runs once the port is free", timeout: 30) {
                let instance = try await cluster.instance(name)
                return instance.status.phase == .running && instance.status.pid != nil && instance.status.reason == nil
            }
        }
    }

    /// Issue 9, bug 5: two replicas asking the same host port no longer land on one node (where
    /// the second could only fail); the second waits, Unschedulable, saying why.
    @Test func hostPortsAreScheduledLikeCPU() async throws {
        let port = 25_000 + Int.random(in: 0..<5_000)
        try await withDevCluster { cluster in
            let manifest = try cluster.manifest("ported.yaml", workloadYAML("ported", replicas: 2, command: "exec sleep 1000", template: """
                ports:
                  - {containerPort: 8080, hostPort: \(port)}
            """))
            #expect(try await cluster.capstan("apply", "-f", manifest).status == 0)
            try await eventually("one runs and one is unschedulable for the port", timeout: 20) {
                let instances = try await cluster.instances(of: "ported")
                let running = instances.filter { $0.status.phase == .running }
                let waiting = instances.filter { $0.status.reason == "Unschedulable" && ($0.status.message ?? "").contains("host port \(port)/tcp is taken") && $0.spec.nodeName == nil }
                return instances.count == 2 && running.count == 1 && waiting.count == 1
            }
        }
    }

    /// Issue 9, bug 3: `gpu: 1` instances bound in separate passes never share a device; the
    /// assignment is on the instance, and a third finds none left.
    @Test func gpusBoundInSeparatePassesAreNotShared() async throws {
        try await withDevCluster { cluster in
            let api = cluster.api
            let gpuNode = APIClient(server: cluster.address, token: try await api.createToken(role: "node", node: "gpu-box").token)
            let capacity: ResourceList = ["cpu": "8", "memory": "8Gi", "gpu": "2"]
            _ = try await gpuNode.create(.node(Node(name: "gpu-box", spec: NodeSpec(), status: NodeStatus(capacity: capacity, allocatable: capacity, gpus: [GPUDevice(index: 0, model: "T4"), GPUDevice(index: 1, model: "T4")], ready: true, lastHeartbeat: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)))))
            try await eventually("the local node is cordoned", timeout: 10) {
                guard case .node(var local) = try await api.get(.node, "e2e") else { return false }
                local.spec.unschedulable = true
                return (try? await api.update(.node(local))) != nil
            }
            var template = InstanceTemplate(command: ["sleep", "1000"])
            template.resources = ResourceRequirements(requests: ["gpu": "1"])
            var devices: [[Int]] = []
            for name in ["g1", "g2"] {
                _ = try await api.create(.instance(Instance(name: name, spec: InstanceSpec(template: template))))
                try await eventually("\(name) is bound", timeout: 10) {
                    guard case .instance(let instance) = try await api.get(.instance, name), instance.spec.nodeName == "gpu-box" else { return false }
                    devices.append(instance.spec.gpuDevices)
                    return true
                }
            }
            #expect(devices.count == 2 && Set(devices.flatMap { $0 }) == [0, 1], "\(devices)")
            _ = try await api.create(.instance(Instance(name: "g3", spec: InstanceSpec(template: template))))
            try await eventually("g3 finds no GPU left", timeout: 10) {
                guard case .instance(let instance) = try await api.get(.instance, "g3") else { return false }
                return instance.spec.nodeName == nil && instance.status.reason == "Unschedulable"
            }
            for name in ["g1", "g2", "g3"] { _ = try? await api.delete(.instance, name, force: true) }
        }
    }

    /// Issue 9, bug 6: the agent restarts a crashed instance while the server is away, and the
    /// restart count it kept reaches the server when it is back (the kubelet's behaviour).
    @Test func anAgentHealsWhileTheServerIsAwayAndItsCountsSurvive() async throws {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-away-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let processes = TLSTests.Processes()
        defer {
            processes.stopAll()
            try? FileManager.default.removeItem(at: directory)
        }
        // Below the ephemeral range (32768+), so no client connection can take the port while
        // the server is away.
        let port = 10_000 + Int.random(in: 0..<5_000)
        let serverArguments = ["server", "--listen", "127.0.0.1:\(port)", "--data-dir", "srv", "--insecure"]
        var server = try processes.start(serverArguments, in: directory, log: "server.log")
        let address = "http://127.0.0.1:\(port)"
        let tokenFile = directory.appendingPathComponent("srv/admin.token").path
        try await eventually("the server answers", timeout: 30) {
            guard let token = TokenFile.read(tokenFile) else { return false }
            return (try? await APIClient(server: address, token: token).list(.node)) != nil
        }
        let api = APIClient(server: address, token: TokenFile.read(directory.appendingPathComponent("srv/admin.token").path))
        let nodeToken = try await api.createToken(role: "node", node: "away").token
        _ = try processes.start(["agent", "--server", address, "--node-name", "away", "--token", nodeToken, "--data-dir", "agent", "--heartbeat", "0.5"], in: directory, log: "agent.log")
        try await eventually("the agent registers", timeout: 30) {
            guard case .node(let node)? = try? await api.get(.node, "away") else { return false }
            return node.status.ready
        }
        let marker = 7_000 + Int.random(in: 0..<2_000)
        var spec = WorkloadSpec(replicas: 1, template: InstanceTemplate(command: ["sh", "-c", "exec sleep \(marker)"]))
        spec.restartBackoff = RestartBackoff(initialSeconds: 0.5, maxSeconds: 1, resetAfterSeconds: 600)
        _ = try await api.create(.workload(Workload(name: "healer", spec: spec)))
        var first: Int32 = 0
        var name = ""
        try await eventually("it runs", timeout: 30) {
            guard let object = try await api.list(.instance).items.first, case .instance(let instance) = object, let pid = instance.status.pid else { return false }
            (first, name) = (pid, instance.metadata.name)
            return instance.status.phase == .running
        }

        // The server goes away; the instance crashes; the agent restarts it on its own.
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
        kill(first, SIGKILL)
        var second: Int32 = 0
        try await eventually("the agent restarts it without the server", timeout: 20) {
            let found = try PluginsCLITests.runShell("pgrep -f '^sleep \(marker)$' || true").split(separator: "\n").compactMap { Int32($0) }
            second = found.first { $0 != first } ?? 0
            return second != 0
        }

        // The server is back: the agent's count and pid reach it.
        server = try processes.start(serverArguments, in: directory, log: "server-again.log")
        _ = server
        do {
            try await eventually("the restart is reported once the server is back", timeout: 40) {
                guard case .instance(let instance)? = try? await api.get(.instance, name) else { return false }
                return instance.status.restarts >= 1 && instance.status.pid == second
            }
        } catch {
            let logs = ["server-again.log", "agent.log"].map { (try? String(contentsOf: directory.appendingPathComponent($0), encoding: .utf8)).map { String($0.suffix(3000)) } ?? "" }
            let instance = try? await api.get(.instance, name)
            Issue.record("\(error); second pid \(second); instance \(String(describing: instance))\n\(logs.joined(separator: "\n---\n"))")
            throw error
        }
        _ = try await api.delete(.workload, "healer")
        try await eventually("the instance is gone", timeout: 30) { (try? await api.list(.instance).items.isEmpty) ?? false }
    }

    /// Issue 9's operator details: `-o json` of a list is a list (of a name, an object, with no
    /// escaped slashes), and `get --watch` writes each change at once into a file or pipe,
    /// deletions marked.
    @Test func jsonListsAndWatchOutputIntoAFile() async throws {
        try await withDevCluster { cluster in
            let manifest = try cluster.manifest("one.yaml", workloadYAML("one", replicas: 0, command: "exec sleep 1000"))
            #expect(try await cluster.capstan("apply", "-f", manifest).status == 0)
            let list = try await cluster.capstan("get", "workloads", "-o", "json")
            #expect(list.output.hasPrefix("["), "\(list.output)")
            let single = try await cluster.capstan("get", "workload", "one", "-o", "json")
            #expect(single.output.hasPrefix("{") && single.output.contains("capstan.dev/v1") && !single.output.contains("\\/"), "\(single.output)")

            let outputFile = cluster.dataDirectory.appendingPathComponent("watch.out")
            _ = FileManager.default.createFile(atPath: outputFile.path, contents: nil)
            let watcher = Process()
            watcher.executableURL = PluginsCLITests.products.appendingPathComponent("capstan")
            watcher.arguments = ["get", "workloads", "--watch"]
            watcher.currentDirectoryURL = cluster.dataDirectory
            watcher.environment = ProcessInfo.processInfo.environment.merging(["CAPSTAN_SERVER": cluster.address, "CAPSTAN_CONFIG": cluster.configPath]) { _, new in new }
            watcher.standardOutput = try FileHandle(forWritingTo: outputFile)
            try watcher.run()
            defer { kill(watcher.processIdentifier, SIGKILL); watcher.waitUntilExit() }
            try await eventually("the list is written", timeout: 10) {
                ((try? String(contentsOf: outputFile, encoding: .utf8)) ?? "").contains("one")
            }
            #expect(try await cluster.capstan("delete", "workload", "one").status == 0)
            try await eventually("the deletion is written while the watch runs", timeout: 10) {
                ((try? String(contentsOf: outputFile, encoding: .utf8)) ?? "").contains("(deleted)")
            }
        }
    }
}

/// True when binding `port` on all addresses fails with EADDRINUSE: someone holds it.
func portIsTaken(_ port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr = in_addr(s_addr: 0)
    let result = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return result != 0 && errno == EADDRINUSE
}
