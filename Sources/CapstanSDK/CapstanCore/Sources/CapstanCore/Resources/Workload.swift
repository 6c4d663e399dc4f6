/// A desired number of identical instances, kept running and updated in place.
public typealias Workload = Resource<WorkloadSpec>

public struct WorkloadSpec: ResourceSpec {
    public static let kind = "Workload"
    public var replicas: Int
    public var template: InstanceTemplate
    /// `Always` (default), `OnFailure` or `Never`.
    public var restartPolicy: RestartPolicy
    /// Delays between restarts of an exited instance.
    public var restartBackoff: RestartBackoff
    /// How a template change rolls out.
    public var strategy: RolloutStrategy

    public init(replicas: Int, template: InstanceTemplate, restartPolicy: RestartPolicy = .always, restartBackoff: RestartBackoff = RestartBackoff(), strategy: RolloutStrategy = RolloutStrategy()) {
        self.replicas = replicas
        self.template = template
        self.restartPolicy = restartPolicy
        self.restartBackoff = restartBackoff
        self.strategy = strategy
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case replicas, template, restartPolicy, restartBackoff, strategy
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        replicas = try container.decodeIfPresent(Int.self, forKey: .replicas) ?? 1
        template = try container.decode(InstanceTemplate.self, forKey: .template)
        restartPolicy = try container.decodeIfPresent(RestartPolicy.self, forKey: .restartPolicy) ?? .always
        restartBackoff = try container.decodeIfPresent(RestartBackoff.self, forKey: .restartBackoff) ?? RestartBackoff()
        strategy = try container.decodeIfPresent(RolloutStrategy.self, forKey: .strategy) ?? RolloutStrategy()
    }

    public func validate(at path: String) -> [ValidationProblem] {
        var problems = template.validate(at: "\(path).template")
        problems += restartBackoff.validate(at: "\(path).restartBackoff")
        problems += strategy.validate(at: "\(path).strategy")
        if let problem = ValidationProblem.count(replicas, at: "\(path).replicas", in: 0...FieldLimits.maxReplicas) { problems.append(problem) }
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
    /// Instances that exist and are not being deleted.
    public var replicas: Int
    public var readyReplicas: Int
    /// Instances of the current template.
    public var updatedReplicas: Int
    /// The hash of the template the controller last acted on: the middle part of its instances'
    /// names. `rollout status` compares it with the hash of the spec it applied.
    public var templateHash: String?
    /// What the controller observed: `Valid` is false (reason `InvalidSpec`) for a workload
    /// stored before a range it breaks was checked; the controller leaves such a workload alone.
    public var conditions: [Condition]
    /// The workload's `metadata.generation` this status describes: the controller has acted on
    /// every spec change up to it (SDK 1.3).
    public var observedGeneration: Int64?

    public init(replicas: Int = 0, readyReplicas: Int = 0, updatedReplicas: Int = 0, templateHash: String? = nil, conditions: [Condition] = []) {
        self.replicas = replicas
        self.readyReplicas = readyReplicas
        self.updatedReplicas = updatedReplicas
        self.templateHash = templateHash
        self.conditions = conditions
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case replicas, readyReplicas, updatedReplicas, templateHash, conditions, observedGeneration }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        replicas = try container.decodeIfPresent(Int.self, forKey: .replicas) ?? 0
        readyReplicas = try container.decodeIfPresent(Int.self, forKey: .readyReplicas) ?? 0
        updatedReplicas = try container.decodeIfPresent(Int.self, forKey: .updatedReplicas) ?? 0
        templateHash = try container.decodeIfPresent(String.self, forKey: .templateHash)
        conditions = try container.decodeIfPresent([Condition].self, forKey: .conditions) ?? []
        observedGeneration = try container.decodeIfPresent(Int64.self, forKey: .observedGeneration)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(replicas, forKey: .replicas)
        try container.encode(readyReplicas, forKey: .readyReplicas)
        try container.encode(updatedReplicas, forKey: .updatedReplicas)
        try container.encodeIfPresent(templateHash, forKey: .templateHash)
        if !conditions.isEmpty { try container.encode(conditions, forKey: .conditions) }
        try container.encodeIfPresent(observedGeneration, forKey: .observedGeneration)
    }
}
