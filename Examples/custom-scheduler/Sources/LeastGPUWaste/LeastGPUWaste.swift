import CapstanSDK

/// Configuration, from `plugins[].config` in capstan.yaml.
struct LeastGPUWasteConfiguration: PluginConfiguration {
    /// Score given to a GPU node for an instance that wants no GPU (0...100): keep it low so
    /// CPU-only work stays off scarce GPU machines.
    var gpuNodePenaltyScore: Int64 = 0

    enum CodingKeys: String, CodingKey, CaseIterable { case gpuNodePenaltyScore }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        gpuNodePenaltyScore = try container.decodeIfPresent(Int64.self, forKey: .gpuNodePenaltyScore) ?? 0
    }

    func validate() -> [ValidationProblem] {
        (0...SchedulerAPI.maxNodeScore).contains(gpuNodePenaltyScore) ? [] : [ValidationProblem(path: "gpuNodePenaltyScore", message: "\(gpuNodePenaltyScore) is outside 0...100")]
    }
}

/// Places GPU work where it wastes the least GPU: a share of a GPU goes to the GPU whose free
/// share it fills most exactly; whole-GPU requests go to nodes with the fewest spare GPUs left.
/// Instances that want no GPU are kept off GPU nodes.
struct LeastGPUWaste: SchedulerPlugin {
    let configuration: LeastGPUWasteConfiguration

    func filter(_ request: FilterRequest) -> [FilterVerdict] {
        ResourceFit.filter(request)
    }

    func score(_ request: ScoreRequest) -> [Int64] {
        let unit = request.unit
        let share = Int32(unit.requests.extended[ResourceName.gpuMilli] ?? 0)
        let whole = unit.requests.extended[ResourceName.gpu] ?? 0
        return request.candidates.map { index in
            let node = request.nodes[index]
            let gpus = node.gpus.filter { unit.gpuModels.isEmpty || unit.gpuModels.contains($0.model) }
            if share == 0 && whole == 0 {
                return node.gpus.isEmpty ? SchedulerAPI.maxNodeScore : configuration.gpuNodePenaltyScore
            }
            if share > 0 {
                // The tightest GPU that still fits: 1000 free for 1000 asked scores 100.
                let leftover = gpus.map(\.freeMilli).filter { $0 >= share }.map { $0 - share }.min() ?? 1000
                return SchedulerAPI.maxNodeScore * Int64(1000 - leftover) / 1000
            }
            let free = Int64(gpus.count(where: { $0.freeMilli == 1000 }))
            return free == 0 ? 0 : SchedulerAPI.maxNodeScore * whole / free
        }
    }
}

/// The library's entry point: the handshake, then what it registers.
@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "least-gpu-waste", version: "0.1.0", kinds: [.scheduler]) { registrar in
        try registrar.register(scheduler: "least-gpu-waste", configuration: LeastGPUWasteConfiguration.self) { configuration, _ in
            LeastGPUWaste(configuration: configuration)
        }
    }
}
