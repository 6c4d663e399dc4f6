import CapstanSDK

extension NodeSnapshot {
    /// What a scheduler sees of a Node: its allocatable resources (its capacity when the agent
    /// reported no allocatable), its GPUs by index, its labels, and whether it is cordoned.
    /// A node that advertises `gpu: N` but lists no devices gets N GPUs of an unnamed model.
    public init(node: Node, index: Int = 0) {
        let status = node.status
        var allocatable = (status.allocatable.isEmpty ? status.capacity : status.allocatable).vector
        var gpus = status.gpus.sorted { $0.index < $1.index }.map { GPUSlot(model: $0.model) }
        if gpus.isEmpty, let count = allocatable.extended[ResourceName.gpu], count > 0 {
            gpus = (0..<Int(min(count, 64))).map { _ in GPUSlot(model: "") }
        }
        allocatable.extended[ResourceName.gpu] = gpus.isEmpty ? nil : Int64(gpus.count)
        allocatable.extended[ResourceName.gpuMilli] = nil
        self.init(name: node.metadata.name, labels: node.metadata.labels, allocatable: allocatable, gpus: gpus,
                  unschedulable: node.spec.unschedulable, index: index)
    }
}

extension SchedulingUnit {
    /// What a scheduler sees of one instance of a template: its requests and acceptable GPU models.
    public init(name: String, template: InstanceTemplate) {
        self.init(name: name, labels: template.labels, requests: template.resources.requests.vector, gpuModels: template.gpuModels)
    }
}

extension ClusterTrace {
    /// A trace from manifests: every Node, and every Workload's replicas as pods named
    /// `<workload>-<i>`, in document order. Other kinds are ignored.
    public init(manifests nodes: [AnyResource], _ workloads: [AnyResource]) {
        var snapshots: [NodeSnapshot] = []
        for case .node(let node) in nodes { snapshots.append(NodeSnapshot(node: node, index: snapshots.count)) }
        var units: [SchedulingUnit] = []
        for case .workload(let workload) in workloads {
            for replica in 0..<workload.spec.replicas {
                units.append(SchedulingUnit(name: "\(workload.metadata.name)-\(replica)", template: workload.spec.template))
            }
        }
        self.init(nodes: snapshots, pods: units)
    }
}
