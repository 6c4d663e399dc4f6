

/// One running copy of a template, placed on a node (like a Kubernetes pod with one container).
public typealias Instance = Resource<InstanceSpec>

public struct InstanceSpec: ResourceSpec {
    public static let kind = "Instance"
    public var template: InstanceTemplate
    /// Set by the scheduler when it binds the instance.
    public var nodeName: String?
    public var restartPolicy: RestartPolicy
    public var restartBackoff: RestartBackoff
    /// The GPUs of its node the scheduler assigned (indices into the node's `status.gpus`), set
    /// with `nodeName` when it binds; the runtime gets them in `CAPSTAN_GPUS` and
    /// `NVIDIA_VISIBLE_DEVICES`. Empty when it asked for no GPU.
    public var gpuDevices: [Int]

    public init(template: InstanceTemplate, nodeName: String? = nil, restartPolicy: RestartPolicy = .always, restartBackoff: RestartBackoff = RestartBackoff()) {
        self.template = template
        self.nodeName = nodeName
        self.restartPolicy = restartPolicy
        self.restartBackoff = restartBackoff
        self.gpuDevices = []
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case template, nodeName, restartPolicy, restartBackoff, gpuDevices }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        template = try container.decode(InstanceTemplate.self, forKey: .template)
        nodeName = try container.decodeIfPresent(String.self, forKey: .nodeName)
        restartPolicy = try container.decodeIfPresent(RestartPolicy.self, forKey: .restartPolicy) ?? .always
        restartBackoff = try container.decodeIfPresent(RestartBackoff.self, forKey: .restartBackoff) ?? RestartBackoff()
        gpuDevices = try container.decodeIfPresent([Int].self, forKey: .gpuDevices) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(template, forKey: .template)
        try container.encodeIfPresent(nodeName, forKey: .nodeName)
        try container.encode(restartPolicy, forKey: .restartPolicy)
        try container.encode(restartBackoff, forKey: .restartBackoff)
        if !gpuDevices.isEmpty { try container.encode(gpuDevices, forKey: .gpuDevices) }
    }

    public func validate(at path: String) -> [ValidationProblem] {
        var problems = template.validate(at: "\(path).template") + restartBackoff.validate(at: "\(path).restartBackoff")
        if let nodeName, let problem = DNSLabel.problem(with: nodeName) {
            problems.append(ValidationProblem(path: "\(path).nodeName", message: problem))
        }
        for (position, device) in gpuDevices.enumerated() where !(0...1023).contains(device) {
            problems.append(ValidationProblem(path: "\(path).gpuDevices[\(position)]", message: "\(device) is not a GPU index (0 to 1023)"))
        }
        return problems
    }

    public static var initialStatus: InstanceStatus { InstanceStatus() }
}

public enum InstancePhase: String, Codable, Sendable, Hashable, CaseIterable {
    case pending = "Pending"
    case scheduled = "Scheduled"
    case running = "Running"
    case succeeded = "Succeeded"
    case failed = "Failed"
    case unknown = "Unknown"
}

public struct InstanceStatus: Codable, Sendable, Hashable {
    public var phase: InstancePhase
    public var ready: Bool
    public var restarts: Int
    /// The last exit's status (128 + signal when killed by one).
    public var exitCode: Int32?
    /// A short CamelCase cause: `CrashLoopBackOff`, `LivenessProbeFailed`, `Completed`, `Unschedulable`.
    public var reason: String?
    public var message: String?
    public var startedAt: Timestamp?
    public var addresses: [String]
    /// The instance's main process on its node, while it runs.
    public var pid: Int32?
    /// When the agent will start it again, while it waits out a restart backoff.
    public var nextRestartAt: Timestamp?
    /// The host ports the network plugin gave the instance's ports (SDK 1.3): where to reach
    /// it, also when `hostPort` was left to the plugin.
    public var ports: [PortBinding] = []
    /// The instance shares its node's network (SDK 1.4): it is reached at the node's address
    /// on its host ports, not at an address of its own on its container ports.
    public var hostNetwork: Bool = false

    public init(phase: InstancePhase = .pending, ready: Bool = false, restarts: Int = 0, exitCode: Int32? = nil, reason: String? = nil, message: String? = nil, startedAt: Timestamp? = nil, addresses: [String] = [], pid: Int32? = nil, nextRestartAt: Timestamp? = nil) {
        self.phase = phase
        self.ready = ready
        self.restarts = restarts
        self.exitCode = exitCode
        self.reason = reason
        self.message = message
        self.startedAt = startedAt
        self.addresses = addresses
        self.pid = pid
        self.nextRestartAt = nextRestartAt
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case phase, ready, restarts, exitCode, reason, message, startedAt, addresses, pid, nextRestartAt, ports, hostNetwork
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        phase = try container.decodeIfPresent(InstancePhase.self, forKey: .phase) ?? .pending
        ready = try container.decodeIfPresent(Bool.self, forKey: .ready) ?? false
        restarts = try container.decodeIfPresent(Int.self, forKey: .restarts) ?? 0
        exitCode = try container.decodeIfPresent(Int32.self, forKey: .exitCode)
        reason = try container.decodeIfPresent(String.self, forKey: .reason)
        message = try container.decodeIfPresent(String.self, forKey: .message)
        startedAt = try container.decodeIfPresent(Timestamp.self, forKey: .startedAt)
        addresses = try container.decodeIfPresent([String].self, forKey: .addresses) ?? []
        pid = try container.decodeIfPresent(Int32.self, forKey: .pid)
        nextRestartAt = try container.decodeIfPresent(Timestamp.self, forKey: .nextRestartAt)
        ports = try container.decodeIfPresent([PortBinding].self, forKey: .ports) ?? []
        hostNetwork = try container.decodeIfPresent(Bool.self, forKey: .hostNetwork) ?? false
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(phase, forKey: .phase)
        try container.encode(ready, forKey: .ready)
        try container.encode(restarts, forKey: .restarts)
        try container.encodeIfPresent(exitCode, forKey: .exitCode)
        try container.encodeIfPresent(reason, forKey: .reason)
        try container.encodeIfPresent(message, forKey: .message)
        try container.encodeIfPresent(startedAt, forKey: .startedAt)
        try container.encode(addresses, forKey: .addresses)
        try container.encodeIfPresent(pid, forKey: .pid)
        try container.encodeIfPresent(nextRestartAt, forKey: .nextRestartAt)
        if !ports.isEmpty { try container.encode(ports, forKey: .ports) }
        if hostNetwork { try container.encode(hostNetwork, forKey: .hostNetwork) }
    }
}

extension InstanceStatus {
    /// Problems in what an agent reports: ports out of range, more ports than a list may hold.
    public func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if ports.count > FieldLimits.maxListEntries {
            problems.append(ValidationProblem(path: "\(path).ports", message: "has \(ports.count) entries; at most \(FieldLimits.maxListEntries)"))
        }
        for (index, port) in ports.enumerated().prefix(FieldLimits.maxListEntries) {
            if !(1...65535).contains(port.containerPort) { problems.append(ValidationProblem(path: "\(path).ports[\(index)].containerPort", message: "\(port.containerPort) is not a port (1-65535)")) }
            if !(1...65535).contains(port.hostPort) { problems.append(ValidationProblem(path: "\(path).ports[\(index)].hostPort", message: "\(port.hostPort) is not a port (1-65535)")) }
        }
        return problems
    }
}

/// One of an instance's ports as its node serves it (SDK 1.3).
public struct PortBinding: Codable, Sendable, Hashable {
    public var containerPort: Int
    public var hostPort: Int
    /// `tcp` or `udp`.
    public var `protocol`: String

    public init(containerPort: Int, hostPort: Int, protocol: String = "tcp") {
        self.containerPort = containerPort
        self.hostPort = hostPort
        self.protocol = `protocol`
    }
}
