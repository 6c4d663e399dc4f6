import CapstanSDK
import CCapstanPluginABI

/// A scheduler written in C, reached through its `filter` / `score` functions bound with libffi.
/// One call crosses into C per batch of nodes.
struct CSchedulerPlugin: SchedulerPlugin {
    static let batchSignature = FFISignature(result: .void, arguments: [.pointer, .pointer, .int64, .pointer])

    let filterFunction: FFIFunction?
    let scoreFunction: FFIFunction?

    var capabilities: SchedulerCapabilities {
        SchedulerCapabilities(filters: filterFunction != nil, scores: scoreFunction != nil)
    }

    func filter(_ request: FilterRequest) -> [FilterVerdict] {
        guard let filterFunction, !request.candidates.isEmpty else { return Array(repeating: .feasible, count: request.candidates.count) }
        var flags = [Int32](repeating: 0, count: request.candidates.count)
        CSchedulerPlugin.withCStructs(request.unit, request.candidates.map { request.nodes[$0] }) { unit, nodes in
            flags.withUnsafeMutableBytes { out in
                filterFunction.callVoid(unit, nodes, Int64(request.candidates.count), out.baseAddress!)
            }
        }
        return flags.map { $0 != 0 ? .feasible : .infeasible(reason: "refused by C filter") }
    }

    func score(_ request: ScoreRequest) -> [Int64] {
        guard let scoreFunction, !request.candidates.isEmpty else { return Array(repeating: 0, count: request.candidates.count) }
        var scores = [Int64](repeating: 0, count: request.candidates.count)
        CSchedulerPlugin.withCStructs(request.unit, request.candidates.map { request.nodes[$0] }) { unit, nodes in
            scores.withUnsafeMutableBytes { out in
                scoreFunction.callVoid(unit, nodes, Int64(request.candidates.count), out.baseAddress!)
            }
        }
        return scores.map { min(max($0, 0), SchedulerAPI.maxNodeScore) }
    }

    /// Lays the unit and nodes out as the C structs of capstan_plugin.h for the duration of `body`.
    private static func withCStructs(_ unit: SchedulingUnit, _ nodes: [NodeSnapshot], _ body: (UnsafeRawPointer, UnsafeRawPointer) -> Void) {
        var names = ContiguousArray<CChar>()
        var offsets: [Int] = []
        for name in [unit.name] + nodes.map(\.name) {
            offsets.append(names.count)
            names.append(contentsOf: name.utf8CString)
        }
        names.withUnsafeBufferPointer { storage in
            let base = storage.baseAddress!
            var cUnit = capstan_c_unit(name: base + offsets[0], requests: resources(unit.requests))
            var cNodes = nodes.enumerated().map { index, node in
                capstan_c_node(name: base + offsets[index + 1], allocatable: resources(node.allocatable), requested: resources(node.requested), unschedulable: node.unschedulable ? 1 : 0)
            }
            withUnsafePointer(to: &cUnit) { unitPointer in
                cNodes.withUnsafeMutableBufferPointer { nodeBuffer in
                    body(UnsafeRawPointer(unitPointer), UnsafeRawPointer(nodeBuffer.baseAddress!))
                }
            }
        }
    }

    private static func resources(_ vector: ResourceVector) -> capstan_c_resources {
        capstan_c_resources(cpu_milli: vector.cpuMilli, memory_bytes: vector.memoryBytes, gpu: vector.extended[ResourceName.gpu] ?? 0, gpu_milli: vector.extended[ResourceName.gpuMilli] ?? 0)
    }
}
