/// With what privileges an instance runs, like Kubernetes' container `securityContext`.
///
/// Unset fields keep the runtime's defaults: the `runc` runtime runs containers as root inside
/// their namespaces with a reduced capability set (`CAP_AUDIT_WRITE`, `CAP_KILL`,
/// `CAP_NET_BIND_SERVICE`), no new privileges, a read-only root and a seccomp filter; the
/// `process` runtime runs host processes as the agent's user.
public struct SecurityContext: Codable, Sendable, Hashable {
    /// The user id the command runs as (0 to 2147483646).
    public var runAsUser: Int?
    /// The group id the command runs as (0 to 2147483646); its only group.
    public var runAsGroup: Int?
    /// The root file system is read-only. `runc` roots are always read-only (the image is
    /// shared); `false` is refused there. `process` cannot make the host's root read-only and
    /// refuses `true`.
    public var readOnlyRootFilesystem: Bool?
    /// Whether the command may gain privileges (setuid binaries, file capabilities). Default
    /// false for `runc`; `false` sets no-new-privileges for `process` too.
    public var allowPrivilegeEscalation: Bool?
    /// Capabilities added to or dropped from the runtime's default set (`NET_ADMIN`,
    /// `CAP_NET_ADMIN`; `ALL` in `drop` drops every one).
    public var capabilities: CapabilityChanges?

    public init(runAsUser: Int? = nil, runAsGroup: Int? = nil, readOnlyRootFilesystem: Bool? = nil, allowPrivilegeEscalation: Bool? = nil, capabilities: CapabilityChanges? = nil) {
        self.runAsUser = runAsUser
        self.runAsGroup = runAsGroup
        self.readOnlyRootFilesystem = readOnlyRootFilesystem
        self.allowPrivilegeEscalation = allowPrivilegeEscalation
        self.capabilities = capabilities
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case runAsUser, runAsGroup, readOnlyRootFilesystem, allowPrivilegeEscalation, capabilities
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        runAsUser = try container.decodeIfPresent(Int.self, forKey: .runAsUser)
        runAsGroup = try container.decodeIfPresent(Int.self, forKey: .runAsGroup)
        readOnlyRootFilesystem = try container.decodeIfPresent(Bool.self, forKey: .readOnlyRootFilesystem)
        allowPrivilegeEscalation = try container.decodeIfPresent(Bool.self, forKey: .allowPrivilegeEscalation)
        capabilities = try container.decodeIfPresent(CapabilityChanges.self, forKey: .capabilities)
    }

    /// The highest user or group id accepted.
    public static let maxID = 2_147_483_646

    func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if let runAsUser, let problem = ValidationProblem.count(runAsUser, at: "\(path).runAsUser", in: 0...Self.maxID) { problems.append(problem) }
        if let runAsGroup, let problem = ValidationProblem.count(runAsGroup, at: "\(path).runAsGroup", in: 0...Self.maxID) { problems.append(problem) }
        if let capabilities { problems += capabilities.validate(at: "\(path).capabilities") }
        return problems
    }
}

/// Capabilities to add to or drop from a runtime's default set.
public struct CapabilityChanges: Codable, Sendable, Hashable {
    public var add: [String]
    public var drop: [String]

    public init(add: [String] = [], drop: [String] = []) {
        self.add = add
        self.drop = drop
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case add, drop }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        add = try container.decodeIfPresent([String].self, forKey: .add) ?? []
        drop = try container.decodeIfPresent([String].self, forKey: .drop) ?? []
    }

    /// `NET_ADMIN` or `CAP_NET_ADMIN` as the kernel's `CAP_NET_ADMIN`; nil when it is no Linux
    /// capability.
    public static func canonical(_ name: String) -> String? {
        let upper = name.uppercased()
        let full = upper.hasPrefix("CAP_") ? upper : "CAP_" + upper
        return linuxCapabilities.contains(full) ? full : nil
    }

    /// Every Linux capability (capabilities(7)).
    public static let linuxCapabilities: Set<String> = [
        "CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
        "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_PERFMON", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
        "CAP_SETUID", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_MODULE", "CAP_SYS_NICE", "CAP_SYS_PACCT",
        "CAP_SYS_PTRACE", "CAP_SYS_RAWIO", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_SYSLOG", "CAP_WAKE_ALARM",
    ]

    /// `defaults` with `add` added and `drop` removed (`ALL` drops every one), canonical names.
    public func applied(to defaults: [String]) -> [String] {
        let dropped = Set(drop.compactMap(Self.canonical))
        var result = drop.contains { $0.uppercased() == "ALL" } ? [] : defaults.filter { !dropped.contains($0) }
        for name in add.compactMap(Self.canonical) where !result.contains(name) { result.append(name) }
        return result
    }

    func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        for (field, names) in [("add", add), ("drop", drop)] {
            if names.count > 64 { problems.append(ValidationProblem(path: "\(path).\(field)", message: "has \(names.count) entries; at most 64")) }
            for (index, name) in names.prefix(64).enumerated() where Self.canonical(name) == nil && !(field == "drop" && name.uppercased() == "ALL") {
                problems.append(ValidationProblem(path: "\(path).\(field)[\(index)]", message: "\"\(name.prefix(40))\" is not a Linux capability (e.g. NET_BIND_SERVICE\(field == "drop" ? ", or ALL" : ""))"))
            }
        }
        return problems
    }
}
