

/// One running copy of a template, placed on a node (like a Kubernetes pod with one container).
public typealias Instance = Resource<InstanceSpec>

public struct InstanceSpec: ResourceSpec {
    public static let kind = "Instance"
    public var template: InstanceTemplate
    /// Set by the scheduler when it binds the instance.
    public var nodeName: String?
    public var restartPolicy: RestartPolicy

    public init(template: InstanceTemplate, nodeName: String? = nil, restartPolicy: RestartPolicy = .always) {
        self.template = template
        self.nodeName = nodeName
        self.restartPolicy = restartPolicy
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        template = try container.decode(InstanceTemplate.self, forKey: .template)
        nodeName = try container.decodeIfPresent(String.self, forKey: .nodeName)
        restartPolicy = try container.decodeIfPresent(RestartPolicy.self, forKey: .restartPolicy) ?? .always
    }

    public func validate(at path: String) -> [ValidationProblem] { template.validate(at: "\(path).template") }

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
    public var exitCode: Int32?
    public var reason: String?
    public var message: String?
    public var startedAt: Timestamp?
    public var addresses: [String]

    public init(phase: InstancePhase = .pending, ready: Bool = false, restarts: Int = 0, exitCode: Int32? = nil, reason: String? = nil, message: String? = nil, startedAt: Timestamp? = nil, addresses: [String] = []) {
        self.phase = phase
        self.ready = ready
        self.restarts = restarts
        self.exitCode = exitCode
        self.reason = reason
        self.message = message
        self.startedAt = startedAt
        self.addresses = addresses
    }
}
