/// A desired number of identical instances, kept running and updated in place.
public typealias Workload = Resource<WorkloadSpec>

public struct WorkloadSpec: ResourceSpec {
    public static let kind = "Workload"
    public var replicas: Int
    public var template: InstanceTemplate
    /// `Always` (default), `OnFailure` or `Never`.
    public var restartPolicy: RestartPolicy

    public init(replicas: Int, template: InstanceTemplate, restartPolicy: RestartPolicy = .always) {
        self.replicas = replicas
        self.template = template
        self.restartPolicy = restartPolicy
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        replicas = try container.decodeIfPresent(Int.self, forKey: .replicas) ?? 1
        template = try container.decode(InstanceTemplate.self, forKey: .template)
        restartPolicy = try container.decodeIfPresent(RestartPolicy.self, forKey: .restartPolicy) ?? .always
    }

    public func validate(at path: String) -> [ValidationProblem] {
        var problems = template.validate(at: "\(path).template")
        if replicas < 0 {
            problems.append(ValidationProblem(path: "\(path).replicas", message: "\(replicas) is negative"))
        }
        return problems
    }

    public static var initialStatus: WorkloadStatus { WorkloadStatus() }
}

public enum RestartPolicy: String, Codable, Sendable, Hashable, CaseIterable {
    case always = "Always"
    case onFailure = "OnFailure"
    case never = "Never"
}

public struct WorkloadStatus: Codable, Sendable, Hashable {
    public var replicas: Int
    public var readyReplicas: Int

    public init(replicas: Int = 0, readyReplicas: Int = 0) {
        self.replicas = replicas
        self.readyReplicas = readyReplicas
    }
}
