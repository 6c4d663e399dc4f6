import CapstanBinpack
import CapstanSDK
import CCapstanPluginABI
import Foundation
import CapstanScheduling
import PluginHost

/// The cost of reaching a plugin through its loaded .so versus the same plugin linked in.
///
/// Both variants run the same placement loop over `any SchedulerPlugin`: for each of 10,000 pods,
/// filter the 1,000 nodes (one batch), score the feasible ones (one batch), bind to the best and
/// account its requests. "direct" obtains binpack from the copy statically linked into this
/// binary (its entry function called in-process); "via .so" loads libCapstanBinpack.so with the
/// real loader. Runs alternate, five each; the median is reported.
enum PluginCallBenchmark {
    static func run(products: String) {
        let configuration = HostConfiguration(pluginPaths: [products], plugins: [.init(name: "CapstanBinpack")], stateDirectory: NSTemporaryDirectory() + "capstan-bench")
        let host = PluginHost.load(configuration)
        guard let loaded = host.registry.scheduler(named: "binpack") else {
            print("cannot load libCapstanBinpack.so from \(products): \(host.reports)")
            return
        }
        let direct = directBinpack()
        // Four node sizes: 16-64 cores, 64-256 GiB.
        let nodes: [NodeSnapshot] = (0..<1000).map { (index: Int) -> NodeSnapshot in
            let size = Int64(1 + index % 4)
            return NodeSnapshot(name: "node-\(index)", allocatable: ResourceVector(cpuMilli: 16_000 * size, memoryBytes: (64 * size) << 30))
        }
        var random = SplitMix64(seed: 42)
        var pods: [SchedulingUnit] = []
        for index in 0..<10_000 {
            let cpu = Int64(100 + random.next() % 1900)
            let memory = Int64(128 + random.next() % 3968) << 20
            pods.append(SchedulingUnit(name: "pod-\(index)", requests: ResourceVector(cpuMilli: cpu, memoryBytes: memory)))
        }

        var directTimes: [Double] = []
        var loadedTimes: [Double] = []
        var placedDirect = 0
        var placedLoaded = 0
        for round in 0..<6 {
            // Alternate which goes first, so warm-up and frequency drift favour neither.
            let runDirect = { directTimes.append(measure { placedDirect = place(pods, on: nodes, with: direct) }) }
            let runLoaded = { loadedTimes.append(measure { placedLoaded = place(pods, on: nodes, with: loaded) }) }
            if round % 2 == 0 { runDirect(); runLoaded() } else { runLoaded(); runDirect() }
        }
        let d = median(directTimes), l = median(loadedTimes)
        print("## Plugin call: binpack, 10,000 pods on 1,000 nodes, through the scheduling framework (median of 6)\n")
        print("| variant | time (s) | pods/s | pods placed |")
        print("|---|---|---|---|")
        print("| direct (linked in) | \(format(d)) | \(Int(10_000 / d)) | \(placedDirect) |")
        print("| via loaded .so | \(format(l)) | \(Int(10_000 / l)) | \(placedLoaded) |")
        print("\nratio .so / direct: **\(format(l / d))** (goal ≤ 1.05)\n")
    }

    /// The binpack plugin from the copy linked into this binary: its handshake's register
    /// callback called in-process, without dlopen.
    static func directBinpack() -> any SchedulerPlugin {
        let info = capstanPluginV1().assumingMemoryBound(to: capstan_plugin_info.self).pointee
        let registrar = PluginRegistrar(declaredKinds: [.scheduler])
        let opaque = Unmanaged.passRetained(registrar)
        precondition(info.register_plugins!(info.context, opaque.toOpaque(), nil) == 0)
        let made = try! registrar.registrations[0].make(PluginConfigurationInput(json: nil, path: "config"), PluginContext(pluginName: "binpack", stateDirectory: NSTemporaryDirectory()))
        guard case .scheduler(let scheduler) = made else { fatalError("binpack is not a scheduler") }
        return scheduler
    }

    /// Places every pod with the framework (every node filtered and scored: 100 %).
    static func place(_ pods: [SchedulingUnit], on nodes: [NodeSnapshot], with scheduler: any SchedulerPlugin) -> Int {
        let framework = SchedulingFramework(profile: SchedulingProfile(name: "binpack", entries: [.init(name: "binpack", plugin: scheduler)], percentageOfNodesToScore: 100), nodes: nodes)
        var placed = 0
        for pod in pods where framework.schedule(pod).placement != nil { placed += 1 }
        return placed
    }
}
