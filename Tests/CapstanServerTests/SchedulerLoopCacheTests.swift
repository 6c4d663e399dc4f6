import CapstanCore
import CapstanSDK
import CapstanStore
import Testing
@testable import CapstanServer

/// Host ports are scheduled like cpu (issue 9, bug 5): a node where a bound instance holds a
/// host port cannot take another instance asking for it.
@Suite struct SchedulerLoopCacheTests {
    func instance(_ name: String, port: Int?, on node: String? = nil) -> Instance {
        var template = InstanceTemplate(command: ["x"])
        if let port { template.ports = [PortSpec(containerPort: 8080, hostPort: port)] }
        var instance = Instance(name: name, spec: InstanceSpec(template: template, nodeName: node))
        instance.status.phase = node == nil ? .pending : .running
        return instance
    }

    @Test func takenHostPortsRuleOutTheirNodeUntilReleased() {
        var cache = SchedulerLoop.Cache()
        cache.apply(ResourceEvent(.added, .instance(instance("a", port: 18080, on: "n1"))))
        let wanting = instance("b", port: 18080)
        let constraint = cache.constraint(for: wanting, pinned: nil)
        #expect(constraint?(NodeSnapshot(name: "n1", allocatable: ResourceVector())) == "host port 18080/tcp is taken")
        #expect(constraint?(NodeSnapshot(name: "n2", allocatable: ResourceVector())) == nil)
        // Port 0 (the plugin picks) and no ports are no constraint.
        #expect(cache.constraint(for: instance("c", port: 0), pinned: nil) == nil)
        #expect(cache.constraint(for: instance("d", port: nil), pinned: nil) == nil)
        // The holder goes: the port is free again.
        cache.apply(ResourceEvent(.deleted, .instance(instance("a", port: 18080, on: "n1"))))
        #expect(cache.constraint(for: wanting, pinned: nil)?(NodeSnapshot(name: "n1", allocatable: ResourceVector())) == nil)
        // Pinned and ported at once: both apply.
        cache.apply(ResourceEvent(.added, .instance(instance("e", port: 18080, on: "n2"))))
        let both = cache.constraint(for: wanting, pinned: "n2")
        #expect(both?(NodeSnapshot(name: "n1", allocatable: ResourceVector())) == "its volumes live on node n2")
        #expect(both?(NodeSnapshot(name: "n2", allocatable: ResourceVector())) == "host port 18080/tcp is taken")
    }

    /// Issue 9, bug 3: GPUs bound in an earlier pass stay taken: snapshots start from the device
    /// assignments bound instances carry, not from every GPU free.
    @Test func boundGPUAssignmentsAreTakenInTheNextPass() {
        var cache = SchedulerLoop.Cache()
        let beat = Timestamp(secondsSinceEpoch: 1_000_000)
        var node = Node(name: "gpu-node", spec: NodeSpec(), status: NodeStatus(capacity: ["cpu": "8", "memory": "8Gi", "gpu": "2"], allocatable: ["cpu": "8", "memory": "8Gi", "gpu": "2"], gpus: [GPUDevice(index: 0, model: "A100"), GPUDevice(index: 1, model: "A100")], ready: true, lastHeartbeat: beat))
        node.metadata.name = "gpu-node"
        cache.apply(ResourceEvent(.added, .node(node)))
        var whole = instance("whole", port: nil, on: "gpu-node")
        whole.spec.template.resources = ResourceRequirements(requests: ["gpu": "1"])
        whole.spec.gpuDevices = [0]
        var shared = instance("shared", port: nil, on: "gpu-node")
        shared.spec.template.resources = ResourceRequirements(requests: ["gpu-milli": "600"])
        shared.spec.gpuDevices = [1]
        cache.apply(ResourceEvent(.added, .instance(whole)))
        cache.apply(ResourceEvent(.added, .instance(shared)))
        let snapshot = cache.snapshots()
        #expect(snapshot.first?.gpus.map(\.freeMilli) == [0, 400])
        // Freed when the instance goes.
        cache.apply(ResourceEvent(.deleted, .instance(shared)))
        #expect(cache.snapshots().first?.gpus.map(\.freeMilli) == [0, 1000])
    }
}
