/// What to run: the part of an instance a workload stamps out. One process or container.
public struct InstanceTemplate: Codable, Sendable, Hashable {
    public var labels: [String: String]
    /// For container runtimes: an OCI image layout or rootfs directory.
    public var image: String?
    /// The executable and its arguments.
    public var command: [String]
    public var env: [String: String]
    public var workingDir: String?
    public var resources: ResourceRequirements
    public var ports: [PortSpec]
    public var volumeMounts: [VolumeMount]
    /// The runtime plugin to run it with; the configured default when nil.
    public var runtime: String?
    /// The scheduler profile or plugin to place it with; the configured default when nil.
    public var scheduler: String?
    /// Acceptable GPU models (any when empty).
    public var gpuModels: [String]
    /// Restarts the instance when it fails.
    public var livenessProbe: Probe?
    /// Decides whether the instance is `Ready`.
    public var readinessProbe: Probe?
    /// Seconds between the polite stop signal (SIGTERM) and SIGKILL; default 30.
    public var terminationGracePeriodSeconds: Double?
    /// The user, group, capabilities and privileges it runs with.
    public var securityContext: SecurityContext?
    /// Secrets it sees, as files on a tmpfs and/or environment variables.
    public var secrets: [SecretMount]

    public init(command: [String], labels: [String: String] = [:], image: String? = nil, env: [String: String] = [:], workingDir: String? = nil, resources: ResourceRequirements = ResourceRequirements(), ports: [PortSpec] = [], volumeMounts: [VolumeMount] = [], runtime: String? = nil, scheduler: String? = nil, gpuModels: [String] = [], livenessProbe: Probe? = nil, readinessProbe: Probe? = nil, terminationGracePeriodSeconds: Double? = nil) {
        self.labels = labels
        self.image = image
        self.command = command
        self.env = env
        self.workingDir = workingDir
        self.resources = resources
        self.ports = ports
        self.volumeMounts = volumeMounts
        self.runtime = runtime
        self.scheduler = scheduler
        self.gpuModels = gpuModels
        self.livenessProbe = livenessProbe
        self.readinessProbe = readinessProbe
        self.terminationGracePeriodSeconds = terminationGracePeriodSeconds
        self.secrets = []
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case labels, image, command, env, workingDir, resources, ports, volumeMounts, runtime, scheduler, gpuModels
        case livenessProbe, readinessProbe, terminationGracePeriodSeconds, securityContext, secrets
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        labels = try container.decodeIfPresent([String: String].self, forKey: .labels) ?? [:]
        image = try container.decodeIfPresent(String.self, forKey: .image)
        command = try container.decodeIfPresent([String].self, forKey: .command) ?? []
        env = try container.decodeIfPresent([String: String].self, forKey: .env) ?? [:]
        workingDir = try container.decodeIfPresent(String.self, forKey: .workingDir)
        resources = try container.decodeIfPresent(ResourceRequirements.self, forKey: .resources) ?? ResourceRequirements()
        ports = try container.decodeIfPresent([PortSpec].self, forKey: .ports) ?? []
        volumeMounts = try container.decodeIfPresent([VolumeMount].self, forKey: .volumeMounts) ?? []
        runtime = try container.decodeIfPresent(String.self, forKey: .runtime)
        scheduler = try container.decodeIfPresent(String.self, forKey: .scheduler)
        gpuModels = try container.decodeIfPresent([String].self, forKey: .gpuModels) ?? []
        livenessProbe = try container.decodeIfPresent(Probe.self, forKey: .livenessProbe)
        readinessProbe = try container.decodeIfPresent(Probe.self, forKey: .readinessProbe)
        terminationGracePeriodSeconds = try container.decodeIfPresent(Double.self, forKey: .terminationGracePeriodSeconds)
        securityContext = try container.decodeIfPresent(SecurityContext.self, forKey: .securityContext)
        secrets = try container.decodeIfPresent([SecretMount].self, forKey: .secrets) ?? []
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(labels, forKey: .labels)
        try container.encodeIfPresent(image, forKey: .image)
        try container.encode(command, forKey: .command)
        try container.encode(env, forKey: .env)
        try container.encodeIfPresent(workingDir, forKey: .workingDir)
        try container.encode(resources, forKey: .resources)
        try container.encode(ports, forKey: .ports)
        try container.encode(volumeMounts, forKey: .volumeMounts)
        try container.encodeIfPresent(runtime, forKey: .runtime)
        try container.encodeIfPresent(scheduler, forKey: .scheduler)
        try container.encode(gpuModels, forKey: .gpuModels)
        try container.encodeIfPresent(livenessProbe, forKey: .livenessProbe)
        try container.encodeIfPresent(readinessProbe, forKey: .readinessProbe)
        try container.encodeIfPresent(terminationGracePeriodSeconds, forKey: .terminationGracePeriodSeconds)
        try container.encodeIfPresent(securityContext, forKey: .securityContext)
        // Left out when empty, so templates without secrets hash as they did before.
        if !secrets.isEmpty { try container.encode(secrets, forKey: .secrets) }
    }

    func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if command.isEmpty && image == nil {
            problems.append(ValidationProblem(path: "\(path).command", message: "is empty; give the program to run (or an image)"))
        }
        problems += resources.requests.validate(at: "\(path).resources.requests")
        problems += resources.limits.validate(at: "\(path).resources.limits")
        for (index, port) in ports.enumerated() {
            if !(1...65535).contains(port.containerPort) {
                problems.append(ValidationProblem(path: "\(path).ports[\(index)].containerPort", message: "\(port.containerPort) is not a port (1-65535)"))
            }
            if let hostPort = port.hostPort, !(0...65535).contains(hostPort) {
                problems.append(ValidationProblem(path: "\(path).ports[\(index)].hostPort", message: "\(hostPort) is not a port (0-65535; 0 picks a free one)"))
            }
        }
        if let livenessProbe { problems += livenessProbe.validate(at: "\(path).livenessProbe") }
        if let readinessProbe { problems += readinessProbe.validate(at: "\(path).readinessProbe") }
        if let securityContext { problems += securityContext.validate(at: "\(path).securityContext") }
        for (index, mount) in secrets.enumerated() { problems += mount.validate(at: "\(path).secrets[\(index)]") }
        if secrets.count > FieldLimits.maxListEntries {
            problems.append(ValidationProblem(path: "\(path).secrets", message: "has \(secrets.count) entries; at most \(FieldLimits.maxListEntries)"))
        }
        if let grace = terminationGracePeriodSeconds, let problem = ValidationProblem.seconds(grace, at: "\(path).terminationGracePeriodSeconds") {
            problems.append(problem)
        }
        for (field, count) in [("command", command.count), ("env", env.count), ("ports", ports.count), ("volumeMounts", volumeMounts.count), ("gpuModels", gpuModels.count)] where count > FieldLimits.maxListEntries {
            problems.append(ValidationProblem(path: "\(path).\(field)", message: "has \(count) entries; at most \(FieldLimits.maxListEntries)"))
        }
        for (field, list) in [("requests", resources.requests), ("limits", resources.limits)] {
            if let share = list[ResourceName.gpuMilli], share.milliValue > FieldLimits.maxGPUMilli * 1000 {
                problems.append(ValidationProblem(path: "\(path).resources.\(field).\(ResourceName.gpuMilli)", message: "\(share) is more than one GPU (1000); ask for whole GPUs with \(ResourceName.gpu)"))
            }
        }
        for (key, _) in labels where !LabelKey.isValid(key) {
            problems.append(ValidationProblem(path: "\(path).labels.\(key)", message: "is not a label key"))
        }
        for (index, mount) in volumeMounts.enumerated() where !mount.mountPath.hasPrefix("/") {
            problems.append(ValidationProblem(path: "\(path).volumeMounts[\(index)].mountPath", message: "\"\(mount.mountPath)\" is not an absolute path"))
        }
        return problems
    }
}

/// What an instance asks for (scheduling) and may not exceed (runtime).
public struct ResourceRequirements: Codable, Sendable, Hashable {
    public var requests: ResourceList
    public var limits: ResourceList

    public init(requests: ResourceList = [:], limits: ResourceList = [:]) {
        self.requests = requests
        self.limits = limits
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        requests = try container.decodeIfPresent(ResourceList.self, forKey: .requests) ?? [:]
        limits = try container.decodeIfPresent(ResourceList.self, forKey: .limits) ?? [:]
    }
}

/// A port an instance listens on, and the host port to expose it on.
public struct PortSpec: Codable, Sendable, Hashable {
    public var name: String?
    public var containerPort: Int
    /// 0 or nil: none requested (a network plugin may allocate one).
    public var hostPort: Int?
    /// `tcp` or `udp`.
    public var `protocol`: String?

    public init(name: String? = nil, containerPort: Int, hostPort: Int? = nil, protocol: String? = nil) {
        self.name = name
        self.containerPort = containerPort
        self.hostPort = hostPort
        self.protocol = `protocol`
    }
}

/// Where a claimed volume appears inside an instance.
public struct VolumeMount: Codable, Sendable, Hashable {
    /// The VolumeClaim's name.
    public var claim: String
    public var mountPath: String
    public var readOnly: Bool?

    public init(claim: String, mountPath: String, readOnly: Bool? = nil) {
        self.claim = claim
        self.mountPath = mountPath
        self.readOnly = readOnly
    }
}
