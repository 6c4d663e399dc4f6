import CapstanCore

/// The kinds the API serves: their manifest `kind`, the path segment (`/v1/instances`), and the
/// names the CLI accepts for them (`instance`, `inst`, `i`), like kubectl's resource names.
public struct ResourceKind: Sendable, Hashable {
    public let kind: String
    public let plural: String
    public let aliases: [String]

    public static let all: [ResourceKind] = [
        ResourceKind(kind: "Node", plural: "nodes", aliases: ["node", "no"]),
        ResourceKind(kind: "Workload", plural: "workloads", aliases: ["workload", "wl"]),
        ResourceKind(kind: "Instance", plural: "instances", aliases: ["instance", "inst", "i"]),
        ResourceKind(kind: "Volume", plural: "volumes", aliases: ["volume", "vol"]),
        ResourceKind(kind: "VolumeClaim", plural: "volumeclaims", aliases: ["volumeclaim", "vc"]),
        ResourceKind(kind: "Service", plural: "services", aliases: ["service", "svc"]),
        ResourceKind(kind: "Endpoints", plural: "endpoints", aliases: ["ep"]),
        ResourceKind(kind: "Event", plural: "events", aliases: ["event", "ev"]),
        ResourceKind(kind: "Secret", plural: "secrets", aliases: ["secret"]),
        ResourceKind(kind: "Lease", plural: "leases", aliases: ["lease"]),
        ResourceKind(kind: "StorageClass", plural: "storageclasses", aliases: ["storageclass", "sc"]),
        ResourceKind(kind: "VolumeSnapshot", plural: "volumesnapshots", aliases: ["volumesnapshot", "vs"]),
    ]

    public static let node = all[0]
    public static let workload = all[1]
    public static let instance = all[2]
    public static let volume = all[3]
    public static let volumeClaim = all[4]
    public static let event = all[7]
    public static let lease = all[9]
    public static let storageClass = all[10]
    public static let volumeSnapshot = all[11]

    /// By path segment (`instances`).
    public static func plural(_ plural: String) -> ResourceKind? { all.first { $0.plural == plural } }

    /// By manifest kind (`Instance`).
    public static func kind(_ kind: String) -> ResourceKind? { all.first { $0.kind == kind } }

    /// By any name a person may type: plural, singular, alias or kind, any case.
    public static func named(_ name: String) -> ResourceKind? {
        let lowered = name.lowercased()
        return all.first { $0.plural == lowered || $0.kind.lowercased() == lowered || $0.aliases.contains(lowered) }
    }

    /// Every name, for error messages.
    public static var names: String { all.map(\.plural).joined(separator: ", ") }
}

/// Well-known labels and annotations.
public enum WellKnown {
    /// On instances: the workload that owns them.
    public static let workloadLabel = "capstan.dev/workload"
    /// On instances: the hash of the template they were made from.
    public static let templateHashLabel = "capstan.dev/template-hash"
    /// On runtime instances: the Capstan instance's name and uid, for re-adoption.
    public static let instanceLabel = "capstan.dev/instance"
    public static let uidLabel = "capstan.dev/uid"
    /// On nodes.
    public static let hostnameLabel = "capstan.dev/hostname"
}
