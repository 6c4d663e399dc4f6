import CapstanCore
import CapstanStore
import Foundation
import PluginHost
import Testing
@testable import CapstanServer

/// The live scheduler loop, in process: a temporary store, the shared informer, and binpack
/// loaded from its .so through the real loader.
@Suite struct SchedulerLoopTests {
    static let products: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("libCapstanBinpack.so").path), url.path != "/" { url.deleteLastPathComponent() }
        return url.path
    }()

    /// A pass queues its bindings and returns; the next pass (instances created meanwhile)
    /// places around the placements whose bindings are still being written. However the
    /// instances arrive, a node never takes more than it holds: 1 cpu takes ten 100m instances,
    /// and the rest are Unschedulable.
    @Test(.enabled(if: FileManager.default.fileExists(atPath: products + "/libCapstanBinpack.so"), "needs the built binpack plugin"))
    func passesPlaceAroundBindingsStillBeingWrittenAndNeverOvercommit() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("capstan-scheduler-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let store = try ResourceStore(path: directory + "/capstan.db", bus: EventBus())
        let writer = StoreWriter(store: store, maxBatch: 1)
        let host = PluginHost.load(HostConfiguration(pluginPaths: [Self.products], plugins: [.init(name: "CapstanBinpack")], defaults: [.scheduler: "binpack"], stateDirectory: directory + "/state"))
        try #require(host.schedulingProfile() != nil, "binpack did not load: \(host.reports)")
        let capacity: ResourceList = ["cpu": "1", "memory": "1Gi", "pods": "110"]
        _ = try store.create(.node(Node(name: "only", spec: NodeSpec(), status: NodeStatus(capacity: capacity, allocatable: capacity, ready: true, lastHeartbeat: Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)))))
        let informer = SharedInformer(writer: writer)
        let loop = SchedulerLoop(writer: writer, informer: informer, host: host, metrics: ServerMetrics())
        let informing = Task { try await informer.run() }
        let scheduling = Task { try await loop.run() }
        defer { scheduling.cancel(); informing.cancel() }

        // 30 instances in 10 waves queued without waiting, each write its own commit: the
        // bindings of a pass queue behind the next waves' creates, so the next passes run
        // while they are in flight.
        var template = InstanceTemplate(command: ["sleep", "60"])
        template.resources = ResourceRequirements(requests: ["cpu": "100m", "memory": "10Mi"])
        var waves: [Task<Void, Never>] = []
        for wave in 0..<10 {
            let creates = (0..<3).map { StoreOperation.create(.instance(Instance(name: "i-\(wave)-\($0)", spec: InstanceSpec(template: template)))) }
            waves.append(Task { _ = await writer.performAll(creates) })
            try await Task.sleep(for: .milliseconds(2))
        }
        for wave in waves { await wave.value }
        var bound = 0, unschedulable = 0
        for _ in 0..<200 {
            let instances = try store.list(kind: "Instance").items.compactMap { object -> Instance? in if case .instance(let instance) = object { instance } else { nil } }
            bound = instances.filter { $0.spec.nodeName != nil }.count
            unschedulable = instances.filter { $0.spec.nodeName == nil && $0.status.reason == "Unschedulable" }.count
            if bound + unschedulable == 30 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(bound == 10, "1 cpu holds ten 100m instances; \(bound) were bound")
        #expect(unschedulable == 20, "\(unschedulable) were marked Unschedulable")
    }
}
