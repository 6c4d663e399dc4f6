import CapstanSDK
import CapstanStorageTestKit
import Foundation
import PluginHost
import Testing

/// The in-tree plugins, each loaded from its built .so through the loader, against its contract.
@Suite struct InTreePluginTests {
    let directory = Fixtures.temporaryDirectory("capstan-plugins")

    func load(_ library: String, config: JSONValue? = nil) throws -> PluginRegistry {
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: Fixtures.plugin(library), config: config)], stateDirectory: directory.appendingPathComponent("state").path)
        let host = PluginHost.load(configuration, nodeName: "node-a")
        #expect(host.isClean, "\(host.reports)")
        return host.registry
    }

    // MARK: Schedulers

    let nodes = [
        NodeSnapshot(name: "empty", allocatable: ResourceVector(cpuMilli: 4000, memoryBytes: 8 << 30)),
        NodeSnapshot(name: "half", allocatable: ResourceVector(cpuMilli: 4000, memoryBytes: 8 << 30), requested: ResourceVector(cpuMilli: 2000, memoryBytes: 4 << 30)),
        NodeSnapshot(name: "full", allocatable: ResourceVector(cpuMilli: 4000, memoryBytes: 8 << 30), requested: ResourceVector(cpuMilli: 3900, memoryBytes: 1 << 30)),
        NodeSnapshot(name: "gpu", allocatable: ResourceVector(cpuMilli: 4000, memoryBytes: 8 << 30, extended: ["gpu": 2]), gpus: [GPUSlot(model: "A100"), GPUSlot(model: "A100")]),
        NodeSnapshot(name: "cordoned", allocatable: ResourceVector(cpuMilli: 4000, memoryBytes: 8 << 30), unschedulable: true),
    ]

    @Test func binpackPrefersTheFullestNodeThatFits() throws {
        let scheduler = try #require(try load("CapstanBinpack").scheduler(named: "binpack"))
        // Fit is the framework's filter (ResourceFit); binpack only scores.
        #expect(scheduler.capabilities == SchedulerCapabilities(filters: false, scores: true))
        let unit = SchedulingUnit(name: "web", requests: ResourceVector(cpuMilli: 500, memoryBytes: 1 << 30))
        let verdicts = ResourceFit.filter(FilterRequest(unit: unit, nodes: nodes))
        #expect(verdicts.map(\.isFeasible) == [true, true, false, true, false])
        #expect(verdicts[2] == .infeasible(reason: "insufficient cpu"))
        #expect(verdicts[4] == .infeasible(reason: "node is unschedulable"))
        let scores = scheduler.score(ScoreRequest(unit: unit, nodes: nodes, candidates: [0, 1, 3]))
        #expect(scores[1] > scores[0] && scores[1] > scores[2])
        #expect(scores.allSatisfy { (0...SchedulerAPI.maxNodeScore).contains($0) })
    }

    @Test func spreadPrefersTheEmptiestNode() throws {
        let scheduler = try #require(try load("CapstanSpread").scheduler(named: "spread"))
        let unit = SchedulingUnit(name: "web", requests: ResourceVector(cpuMilli: 500, memoryBytes: 1 << 30))
        let scores = scheduler.score(ScoreRequest(unit: unit, nodes: nodes, candidates: [0, 1]))
        #expect(scores[0] > scores[1])
    }

    @Test func extendedResourcesAndGPUsAreHonoured() throws {
        let wantsTwo = SchedulingUnit(name: "train", requests: ResourceVector(cpuMilli: 100, extended: ["gpu": 2]))
        #expect(ResourceFit.filter(FilterRequest(unit: wantsTwo, nodes: nodes)).map(\.isFeasible) == [false, false, false, true, false])
        let wrongModel = SchedulingUnit(name: "train", requests: ResourceVector(cpuMilli: 100, extended: ["gpu": 1]), gpuModels: ["V100"])
        #expect(ResourceFit.filter(FilterRequest(unit: wrongModel, nodes: [nodes[3]])) == [.infeasible(reason: "no GPU of a requested model")])
        let share = SchedulingUnit(name: "infer", requests: ResourceVector(extended: ["gpu-milli": 600]))
        let partlyUsed = NodeSnapshot(name: "shared", allocatable: ResourceVector(cpuMilli: 1000), gpus: [GPUSlot(model: "T4", freeMilli: 500)])
        #expect(ResourceFit.filter(FilterRequest(unit: share, nodes: [partlyUsed])) == [.infeasible(reason: "no GPU has the requested share free")])
        let vendor = SchedulingUnit(name: "fpga", requests: ResourceVector(extended: ["acme.com/fpga": 1]))
        #expect(ResourceFit.filter(FilterRequest(unit: vendor, nodes: [nodes[0]])) == [.infeasible(reason: "insufficient acme.com/fpga")])
    }

    @Test func weightsFromConfigChangeTheScore() throws {
        let cpuOnly = try #require(try load("CapstanBinpack", config: .object(["resources": .object(["memory": .int(0)])])).scheduler(named: "binpack"))
        let unit = SchedulingUnit(name: "w", requests: ResourceVector(cpuMilli: 1000, memoryBytes: 1 << 30))
        // cpu after placement: (2000+1000)/4000 = 75 %, memory ignored.
        #expect(cpuOnly.score(ScoreRequest(unit: unit, nodes: [nodes[1]])) == [75])
    }

    // MARK: Storage

    @Test func hostpathPassesTheStorageConformanceKit() async throws {
        let storage = try #require(try load("CapstanHostPath").storage(named: "hostpath"))
        let report = await StorageTestKit.run(storage, options: .init(scratch: directory.appendingPathComponent("scratch"), watchedFolders: [directory.appendingPathComponent("state")]))
        for check in report.checks { #expect(check.passed, "\(check.line)") }
        #expect(report.checks.count >= 15)
    }

    @Test func hostpathHonoursItsCapacityAndKeepsDataOnDisk() async throws {
        let root = directory.appendingPathComponent("volumes-root").path
        let storage = try #require(try load("CapstanHostPath", config: .object(["root": .string(root), "capacity": .string("10Mi")])).storage(named: "hostpath"))
        let volume = try await storage.createVolume(CreateVolumeRequest(name: "db", sizeBytes: 8 << 20))
        #expect(volume.nodeName == "node-a")
        #expect(FileManager.default.fileExists(atPath: "\(root)/volumes/db/data"))
        await #expect(throws: PluginError.self) { _ = try await storage.createVolume(CreateVolumeRequest(name: "more", sizeBytes: 4 << 20)) }
        let capacity = try await storage.capacity()
        #expect(capacity.totalBytes == 10 << 20 && capacity.availableBytes == 2 << 20)
        _ = try await storage.publishVolume(PublishVolumeRequest(volumeID: "db", targetPath: directory.appendingPathComponent("mnt/db").path))
        do {
            try await storage.deleteVolume(DeleteVolumeRequest(volumeID: "db"))
            Issue.record("deleting a published volume must fail")
        } catch let error as PluginError {
            #expect(error.code == .failedPrecondition)
        }
    }

    @Test func hostpathRefusesABadRoot() throws {
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: Fixtures.plugin("CapstanHostPath"), config: .object(["root": .string("relative/dir")]))], stateDirectory: directory.path)
        let failure = PluginHost.load(configuration).reports[0].plugins[0].failure
        #expect(failure?.message.contains("plugins[0].config.root: \"relative/dir\" is not an absolute path") == true)
    }

    // MARK: Network

    @Test func hostNetworkAllocatesPortsAndRefusesConflicts() async throws {
        let network = try #require(try load("CapstanHostNetwork", config: .object(["portRangeStart": .int(41000), "portRangeEnd": .int(41100)])).network(named: "host"))
        let first = try await network.attach(NetworkAttachRequest(instanceID: "web-0", ports: [PortSpec(name: "http", containerPort: 8080)]))
        #expect((41000...41100).contains(first.ports[0].hostPort))
        #expect(first.environment["PORT"] == String(first.ports[0].hostPort))
        #expect(first.environment["PORT_HTTP"] == String(first.ports[0].hostPort))
        #expect(!first.addresses.isEmpty)
        // Attaching again is idempotent.
        #expect(try await network.attach(NetworkAttachRequest(instanceID: "web-0", ports: [PortSpec(containerPort: 8080)])) == first)
        // The same host port for another instance is a conflict, named.
        do {
            _ = try await network.attach(NetworkAttachRequest(instanceID: "web-1", ports: [PortSpec(containerPort: 80, hostPort: first.ports[0].hostPort)]))
            Issue.record("expected a conflict")
        } catch let error as PluginError {
            #expect(error.code == .alreadyExists)
            #expect(error.message == "host port \(first.ports[0].hostPort)/tcp is already allocated to web-0")
        }
        // A port some other process holds is refused too.
        let squatter = try SquattedPort()
        do {
            _ = try await network.attach(NetworkAttachRequest(instanceID: "web-2", ports: [PortSpec(containerPort: 80, hostPort: squatter.port)]))
            Issue.record("expected the port to be busy")
        } catch let error as PluginError {
            #expect(error.code == .resourceExhausted)
        }
        try await network.detach(NetworkDetachRequest(instanceID: "web-0"))
        try await network.detach(NetworkDetachRequest(instanceID: "web-0"))
        await #expect(throws: PluginError.self) { _ = try await network.check(NetworkCheckRequest(instanceID: "web-0")) }
    }

    /// Issue 11's bad input for the cni plugin: a conflist that is not one is refused at load,
    /// naming the file and what is missing; a missing CNI program is named with where it was
    /// looked for and what to install; an instance without a namespace is refused.
    @Test func cniRefusesABadConflistAndNamesAMissingPlugin() async throws {
        let bad = directory.appendingPathComponent("bad.conflist")
        try #"{"cniVersion": "1.0.0", "plugins": []}"#.write(to: bad, atomically: true, encoding: .utf8)
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: Fixtures.plugin("CapstanCNI"), config: .object(["conflist": .string(bad.path)]))], stateDirectory: directory.path)
        let failure = PluginHost.load(configuration).reports[0].plugins[0].failure
        #expect(failure?.message.contains("\(bad.path): name is missing") == true, "\(String(describing: failure))")
        let missing = try #require(try load("CapstanCNI", config: .object(["binDirs": .array([.string("/nonexistent/cni")])])).network(named: "cni"))
        #expect(missing.capabilities.isolatedNamespaces)
        do {
            _ = try await missing.attach(NetworkAttachRequest(instanceID: "web-0", namespacePath: "/run/netns/none", ports: []))
            Issue.record("attached without CNI plugins")
        } catch let error as PluginError {
            #expect(error.message.contains("not found in /nonexistent/cni; install Debian's containernetworking-plugins"), "\(error)")
        }
        let status = try await missing.status()
        #expect(!status.healthy && status.message.contains("not found"))
        do {
            _ = try await missing.attach(NetworkAttachRequest(instanceID: "web-0", ports: []))
            Issue.record("attached without a namespace")
        } catch let error as PluginError {
            #expect(error.code == .invalidArgument && error.message.contains("namespacePath"))
        }
        // Detaching what was never attached is fine (and with no subnet, there is nothing to free).
        try await missing.detach(NetworkDetachRequest(instanceID: "web-0"))
    }

    /// The nftables load balancer is a data plane (no per-connection picks) offering three
    /// algorithms; what would not be a valid rule is refused before any `nft` runs.
    @Test func nftablesIsADataPlaneThatRefusesBadPrograms() async throws {
        let balancer = try #require(try load("CapstanNFTables", config: .object(["nft": .string("/nonexistent/nft")])).loadBalancer(named: "nftables"))
        #expect(balancer.capabilities.dataPlane == .kernel)
        #expect(balancer.capabilities.offeredAlgorithms == ["random", "roundrobin", "sourcehash"])
        #expect(balancer.pick(PickRequest(service: "web")) == nil)
        var request = ProgramServiceRequest(service: "web:http/tcp", frontendAddress: "10.96.0.1; flush ruleset", frontendPort: 80, backends: [])
        await #expect(throws: PluginError.self) { try await balancer.program(request) }
        request.frontendAddress = "10.96.0.1"
        request.backends = [Backend(id: "web-0", address: "10.244.0.2 counter", port: 8080)]
        await #expect(throws: PluginError.self) { try await balancer.program(request) }
        request.backends = [Backend(id: "web-0", address: "10.244.0.2", port: 8080)]
        request.algorithm = "fastest"
        await #expect(throws: PluginError.self) { try await balancer.program(request) }
        request.algorithm = "sourcehash"
        do {
            try await balancer.program(request)
            Issue.record("programmed without nft")
        } catch let error as PluginError {
            #expect(error.message.contains("nft command is not installed") || error.message.contains("/nonexistent/nft"), "\(error)")
        }
        // Old-style in-process pickers keep their shape: round robin still picks.
        let picker = try #require(try load("CapstanRoundRobin").loadBalancer(named: "roundrobin"))
        #expect(picker.capabilities.dataPlane == .inProcess)
    }

    @Test func hostNetworkAllocationsSurviveARestart() async throws {
        let state = directory.appendingPathComponent("netstate").path
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: Fixtures.plugin("CapstanHostNetwork"))], stateDirectory: state)
        let before = try #require(PluginHost.load(configuration).registry.network(named: "host"))
        let attachment = try await before.attach(NetworkAttachRequest(instanceID: "db-0", ports: [PortSpec(containerPort: 5432)]))
        // A second host over the same state directory: what an agent restart looks like.
        let copy = directory.appendingPathComponent("libNetCopy.so").path
        try FileManager.default.copyItem(atPath: Fixtures.plugin("CapstanHostNetwork"), toPath: copy)
        let after = try #require(PluginHost.load(HostConfiguration(pluginPaths: [], plugins: [.init(path: copy)], stateDirectory: state)).registry.network(named: "host"))
        #expect(try await after.check(NetworkCheckRequest(instanceID: "db-0")).ports == attachment.ports)
    }

    // MARK: Load balancers

    func program(_ balancer: any LoadBalancerPlugin, _ ids: [String]) async throws {
        try await balancer.program(ProgramServiceRequest(service: "web", frontendAddress: "127.0.0.1", frontendPort: 8080, backends: ids.map { Backend(id: $0, address: "127.0.0.1", port: 9000) }))
    }

    @Test func roundRobinRotatesAndDrains() async throws {
        let balancer = try #require(try load("CapstanRoundRobin").loadBalancer(named: "roundrobin"))
        try await program(balancer, ["a", "b", "c"])
        let picks = (0..<6).compactMap { _ in balancer.pick(PickRequest(service: "web")) }
        #expect(picks.map(\.backend.id) == ["a", "b", "c", "a", "b", "c"])
        // Remove "a" while it has two open connections: it drains, takes nothing new, then goes.
        try await program(balancer, ["b", "c"])
        #expect(balancer.stats(service: "web").first { $0.backend.id == "a" }?.state == .draining)
        #expect((0..<4).compactMap { _ in balancer.pick(PickRequest(service: "web")) }.allSatisfy { $0.backend.id != "a" })
        for picked in picks where picked.backend.id == "a" { balancer.release(picked) }
        #expect(!balancer.stats(service: "web").contains { $0.backend.id == "a" })
    }

    @Test func leastConnPicksTheIdlestAndSkipsUnready() async throws {
        let balancer = try #require(try load("CapstanLeastConn").loadBalancer(named: "leastconn"))
        try await program(balancer, ["a", "b"])
        let first = try #require(balancer.pick(PickRequest(service: "web")))
        let second = try #require(balancer.pick(PickRequest(service: "web")))
        #expect(first.backend.id != second.backend.id)
        balancer.release(first)
        // Now first's backend has 0, second's 1: the next goes to first's.
        #expect(balancer.pick(PickRequest(service: "web"))?.backend.id == first.backend.id)
        try await balancer.program(ProgramServiceRequest(service: "web", frontendAddress: "127.0.0.1", frontendPort: 8080, backends: [Backend(id: "a", address: "127.0.0.1", port: 9000, ready: false), Backend(id: "b", address: "127.0.0.1", port: 9000, ready: false)]))
        #expect(balancer.pick(PickRequest(service: "web")) == nil)
        #expect(balancer.stats(service: "web").allSatisfy { $0.state == .notReady })
    }
}

/// A TCP port held by this test process, to stand for "some other program".
final class SquattedPort {
    let descriptor: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr = in_addr(s_addr: INADDR_ANY)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
        listen(fd, 1)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
        descriptor = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(descriptor) }
}
