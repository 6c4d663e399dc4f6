import CapstanScheduling
import CapstanSDK
import Foundation
import PluginHost
import Synchronization

/// Loads the in-tree scheduler plugins from the build folder, through the real loader.
enum Plugins {
    static let products: String = {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var url = URL(fileURLWithPath: exe).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: url.appendingPathComponent("libCapstanSDK.so").path), url.path != "/" { url.deleteLastPathComponent() }
        return url.path
    }()

    static let host: PluginHost = {
        let configuration = HostConfiguration(pluginPaths: [products], plugins: ["CapstanBinpack", "CapstanSpread", "CapstanBestFit", "CapstanFGD"].map { .init(name: $0) }, stateDirectory: NSTemporaryDirectory() + "capstan-scheduling-tests")
        return PluginHost.load(configuration)
    }()

    static func scheduler(_ name: String) -> any SchedulerPlugin { host.registry.scheduler(named: name)! }
}

/// A test double for the code around plugins: prefers one node, optionally vetoes reserves, and
/// records what the framework told it.
final class RecordingPlugin: SchedulerPlugin {
    let preferred: String?
    let vetoReserve: Bool
    let forbiddenLabel: String?
    let log = Mutex<[String]>([])

    init(preferred: String? = nil, vetoReserve: Bool = false, forbiddenLabel: String? = nil) {
        self.preferred = preferred
        self.vetoReserve = vetoReserve
        self.forbiddenLabel = forbiddenLabel
    }

    var capabilities: SchedulerCapabilities { SchedulerCapabilities(filters: forbiddenLabel != nil, scores: preferred != nil) }

    func filter(_ request: FilterRequest) -> [FilterVerdict] {
        request.candidates.map { request.nodes[$0].labels[forbiddenLabel!] == nil ? .feasible : .infeasible(reason: "has label \(forbiddenLabel!)") }
    }

    func score(_ request: ScoreRequest) -> [Int64] {
        request.candidates.map { request.nodes[$0].name == preferred ? 100 : 0 }
    }

    struct Veto: Error, CustomStringConvertible { var description: String { "quota exceeded" } }

    func reserve(_ request: ReserveRequest) throws {
        log.withLock { $0.append("reserve \(request.unit.name)@\(request.node.name)") }
        if vetoReserve { throw Veto() }
    }

    func unreserve(_ request: ReserveRequest) {
        log.withLock { $0.append("unreserve \(request.unit.name)@\(request.node.name)") }
    }

    var entries: [String] { log.withLock { $0 } }
}

func node(_ name: String, cpu: Int64 = 8000, memoryGi: Int64 = 32, gpus: Int = 0, model: String = "T4", labels: [String: String] = [:]) -> NodeSnapshot {
    NodeSnapshot(name: name, labels: labels, allocatable: ResourceVector(cpuMilli: cpu, memoryBytes: memoryGi << 30, extended: gpus > 0 ? [ResourceName.gpu: Int64(gpus)] : [:]), gpus: (0..<gpus).map { _ in GPUSlot(model: model) })
}

func pod(_ name: String, cpu: Int64 = 1000, memoryGi: Int64 = 1, gpus: Int64 = 0, gpuMilli: Int64 = 0, models: [String] = []) -> SchedulingUnit {
    var extended: [String: Int64] = [:]
    if gpus > 0 { extended[ResourceName.gpu] = gpus }
    if gpuMilli > 0 { extended[ResourceName.gpuMilli] = gpuMilli }
    return SchedulingUnit(name: name, requests: ResourceVector(cpuMilli: cpu, memoryBytes: memoryGi << 30, extended: extended), gpuModels: models)
}
