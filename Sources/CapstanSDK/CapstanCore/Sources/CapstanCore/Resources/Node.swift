

/// A machine that runs instances. Registered by its agent.
public typealias Node = Resource<NodeSpec>

public struct NodeSpec: ResourceSpec {
    public static let kind = "Node"
    /// When true the scheduler places nothing new here (cordon).
    public var unschedulable: Bool
    /// The agent's API address, for logs and exec.
    public var agentAddress: String?
    /// The node's pod subnet (SDK 1.4): given by the control plane from the cluster CIDR when
    /// the node registers; its network plugin takes instance addresses from it.
    public var podCIDR: String?

    public init(unschedulable: Bool = false, agentAddress: String? = nil) {
        self.unschedulable = unschedulable
        self.agentAddress = agentAddress
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        unschedulable = try container.decodeIfPresent(Bool.self, forKey: .unschedulable) ?? false
        agentAddress = try container.decodeIfPresent(String.self, forKey: .agentAddress)
        podCIDR = try container.decodeIfPresent(String.self, forKey: .podCIDR)
    }

    public static var initialStatus: NodeStatus { NodeStatus() }

    public func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if let agentAddress, let problem = Self.agentAddressProblem(agentAddress) {
            problems.append(ValidationProblem(path: "\(path).agentAddress", message: problem))
        }
        if let podCIDR, IPv4Network(podCIDR) == nil {
            problems.append(ValidationProblem(path: "\(path).podCIDR", message: "\"\(podCIDR.prefix(64))\" is not an IPv4 network (10.244.1.0/24)"))
        }
        return problems
    }

    /// Why `address` is not `http://host:port` or `https://host:port` with nothing after the
    /// port (the server builds URLs on it, so a path, query or fragment could point it anywhere).
    public static func agentAddressProblem(_ address: String) -> String? {
        let problem = "\"\(address.prefix(100))\" is not http://HOST:PORT or https://HOST:PORT"
        let rest: Substring
        if address.hasPrefix("http://") { rest = address.dropFirst(7) } else if address.hasPrefix("https://") { rest = address.dropFirst(8) } else { return problem }
        guard let colon = rest.lastIndex(of: ":"), let port = Int(rest[rest.index(after: colon)...]), (1...65535).contains(port) else { return problem }
        let host = rest[..<colon]
        let allowed = host.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
                || c == UInt8(ascii: ".") || c == UInt8(ascii: "-") || c == UInt8(ascii: ":") || c == UInt8(ascii: "[") || c == UInt8(ascii: "]")
        }
        return !host.isEmpty && host.utf8.count <= 253 && allowed ? nil : problem
    }
}

/// One GPU of a node, as agents report and schedulers account it.
public struct GPUDevice: Codable, Sendable, Hashable {
    /// The device's index on its node (0-based).
    public var index: Int
    /// The model name (`V100M16`, `A100`…), matched against a pod's acceptable models.
    public var model: String

    public init(index: Int, model: String) {
        self.index = index
        self.model = model
    }
}

public struct NodeStatus: Codable, Sendable, Hashable {
    /// Everything the machine has.
    public var capacity: ResourceList
    /// What instances may use (capacity less what the system reserves).
    public var allocatable: ResourceList
    public var gpus: [GPUDevice]
    public var addresses: [String]
    public var ready: Bool
    /// When the agent registered (or, before SDK 1.3, last heartbeated): liveness now comes from
    /// the node's ``Lease``.
    public var lastHeartbeat: Timestamp?
    /// The plugins the node's agent loaded (SDK 1.3), as it reported them when it registered.
    public var plugins: [NodePlugin] = []

    public init(capacity: ResourceList = [:], allocatable: ResourceList = [:], gpus: [GPUDevice] = [], addresses: [String] = [], ready: Bool = false, lastHeartbeat: Timestamp? = nil) {
        self.capacity = capacity
        self.allocatable = allocatable
        self.gpus = gpus
        self.addresses = addresses
        self.ready = ready
        self.lastHeartbeat = lastHeartbeat
    }

    /// Problems in what an agent (or a simulation's manifest) reports: malformed quantities,
    /// GPU indices that repeat or are negative, GPUs listed beyond the `gpu` count.
    public func validate(at path: String) -> [ValidationProblem] {
        var problems = capacity.validate(at: "\(path).capacity") + allocatable.validate(at: "\(path).allocatable")
        var seen = Set<Int>()
        for (position, gpu) in gpus.enumerated() {
            if gpu.index < 0 || !seen.insert(gpu.index).inserted {
                problems.append(ValidationProblem(path: "\(path).gpus[\(position)].index", message: "\(gpu.index) is negative or repeated; number GPUs 0, 1, 2…"))
            }
        }
        for (name, list) in [("allocatable", allocatable), ("capacity", capacity)] {
            if let count = list.vector.extended[ResourceName.gpu], !gpus.isEmpty, count != Int64(gpus.count) {
                problems.append(ValidationProblem(path: "\(path).\(name).gpu", message: "says \(count) but \(gpus.count) GPUs are listed in \(path).gpus"))
            }
        }
        return problems
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case capacity, allocatable, gpus, addresses, ready, lastHeartbeat, plugins
    }

    /// Every field may be left out (a node not yet reported by its agent; a simulated node that
    /// gives only `allocatable`).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        capacity = try container.decodeIfPresent(ResourceList.self, forKey: .capacity) ?? [:]
        allocatable = try container.decodeIfPresent(ResourceList.self, forKey: .allocatable) ?? [:]
        gpus = try container.decodeIfPresent([GPUDevice].self, forKey: .gpus) ?? []
        addresses = try container.decodeIfPresent([String].self, forKey: .addresses) ?? []
        ready = try container.decodeIfPresent(Bool.self, forKey: .ready) ?? false
        lastHeartbeat = try container.decodeIfPresent(Timestamp.self, forKey: .lastHeartbeat)
        plugins = try container.decodeIfPresent([NodePlugin].self, forKey: .plugins) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(capacity, forKey: .capacity)
        try container.encode(allocatable, forKey: .allocatable)
        try container.encode(gpus, forKey: .gpus)
        try container.encode(addresses, forKey: .addresses)
        try container.encode(ready, forKey: .ready)
        try container.encodeIfPresent(lastHeartbeat, forKey: .lastHeartbeat)
        if !plugins.isEmpty { try container.encode(plugins, forKey: .plugins) }
    }
}

/// One plugin a node's agent loaded (SDK 1.3).
public struct NodePlugin: Codable, Sendable, Hashable {
    public var name: String
    /// `runtime`, `network`, `storage`, `scheduler`, `loadBalancer`.
    public var kind: String
    /// The `.so` it came from.
    public var library: String
    /// The default of its kind on that node.
    public var isDefault: Bool

    public init(name: String, kind: String, library: String, isDefault: Bool) {
        self.name = name
        self.kind = kind
        self.library = library
        self.isDefault = isDefault
    }
}
