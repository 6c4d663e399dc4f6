import CapstanSDK
import Foundation

/// Settings of the hostpath provisioner.
struct HostPathConfiguration: PluginConfiguration {
    /// Where volumes live; defaults to the plugin's state directory.
    var root: String?
    /// The most all volumes together may claim; defaults to the file system's free space.
    var capacity: Quantity?

    enum CodingKeys: String, CodingKey, CaseIterable { case root, capacity }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        root = try container.decodeIfPresent(String.self, forKey: .root)
        capacity = try container.decodeIfPresent(Quantity.self, forKey: .capacity)
    }

    func validate() -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if let root, !root.hasPrefix("/") { problems.append(ValidationProblem(path: "root", message: "\"\(root)\" is not an absolute path")) }
        if let capacity, capacity.milliValue <= 0 { problems.append(ValidationProblem(path: "capacity", message: "must be more than zero (e.g. 10Gi)")) }
        return problems
    }
}

/// Node-local volumes as directories: `<root>/volumes/<name>/data`, with the volume's record in
/// `volume.json` beside it. Publishing links the data directory at the target path. Snapshots
/// are full copies under `<root>/snapshots/<name>`. Every call is idempotent.
///
/// Sizes are accounted (a volume cannot be created or grown past the configured capacity or the
/// file system's free space) but not enforced as quotas on writes.
actor HostPath: StorageProvisioner {
    nonisolated let root: URL
    nonisolated let capacityLimit: Int64?
    nonisolated let nodeName: String?
    private let files = FileManager.default

    init(configuration: HostPathConfiguration, context: PluginContext) throws {
        root = URL(fileURLWithPath: configuration.root ?? context.stateDirectory)
        capacityLimit = configuration.capacity?.value
        nodeName = context.nodeName
        for folder in ["volumes", "snapshots"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
    }

    nonisolated var capabilities: StorageCapabilities {
        StorageCapabilities(topology: .nodeLocal, expansion: true, snapshots: true)
    }

    /// What `volume.json` holds.
    struct Record: Codable, Equatable {
        var name: String
        var sizeBytes: Int64
        var nodeName: String?
        var publishedAt: [String]
    }

    struct SnapshotRecord: Codable, Equatable {
        var name: String
        var source: String
        var sizeBytes: Int64
    }

    func createVolume(_ request: CreateVolumeRequest) async throws -> VolumeInfo {
        try checkName(request.name, field: "name")
        guard request.sizeBytes > 0 else { throw PluginError(.invalidArgument, "volume size must be more than zero") }
        if let existing = try record(request.name) {
            guard existing.sizeBytes == request.sizeBytes else {
                throw PluginError(.alreadyExists, "volume \"\(request.name)\" exists with size \(existing.sizeBytes), not \(request.sizeBytes)")
            }
            return info(existing)
        }
        try reserve(request.sizeBytes)
        let folder = volumeFolder(request.name)
        try files.createDirectory(at: folder.appendingPathComponent("data"), withIntermediateDirectories: true)
        let record = Record(name: request.name, sizeBytes: request.sizeBytes, nodeName: request.nodeName ?? nodeName, publishedAt: [])
        try write(record)
        return info(record)
    }

    func deleteVolume(_ request: DeleteVolumeRequest) async throws {
        guard let record = try record(request.volumeID) else { return }
        guard record.publishedAt.isEmpty else {
            throw PluginError(.failedPrecondition, "volume \"\(request.volumeID)\" is still published at \(record.publishedAt.joined(separator: ", ")); unpublish it first")
        }
        try files.removeItem(at: volumeFolder(request.volumeID))
    }

    func expandVolume(_ request: ExpandVolumeRequest) async throws -> VolumeInfo {
        guard var record = try record(request.volumeID) else { throw notFound(request.volumeID) }
        guard request.sizeBytes > record.sizeBytes else { return info(record) }
        try reserve(request.sizeBytes - record.sizeBytes)
        record.sizeBytes = request.sizeBytes
        try write(record)
        return info(record)
    }

    func publishVolume(_ request: PublishVolumeRequest) async throws -> PublishedVolume {
        guard var record = try record(request.volumeID) else { throw notFound(request.volumeID) }
        let data = volumeFolder(request.volumeID).appendingPathComponent("data").path
        let target = request.targetPath
        if let existing = try? files.destinationOfSymbolicLink(atPath: target) {
            guard existing == data else {
                throw PluginError(.failedPrecondition, "target \(target) already links to \(existing)")
            }
        } else if files.fileExists(atPath: target) {
            throw PluginError(.failedPrecondition, "target \(target) exists and is not this volume's link; remove it or choose another path")
        } else {
            try files.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try files.createSymbolicLink(atPath: target, withDestinationPath: data)
        }
        if !record.publishedAt.contains(target) {
            record.publishedAt.append(target)
            try write(record)
        }
        return PublishedVolume(volumeID: request.volumeID, targetPath: target)
    }

    func unpublishVolume(_ request: UnpublishVolumeRequest) async throws {
        guard var record = try record(request.volumeID) else { return }
        let data = volumeFolder(request.volumeID).appendingPathComponent("data").path
        if (try? files.destinationOfSymbolicLink(atPath: request.targetPath)) == data {
            try files.removeItem(atPath: request.targetPath)
        }
        record.publishedAt.removeAll { $0 == request.targetPath }
        try write(record)
    }

    func listVolumes() async throws -> [VolumeInfo] {
        try records().map(info)
    }

    func capacity() async throws -> StorageCapacity {
        let (available, total) = try fileSystemSpace()
        guard let capacityLimit else { return StorageCapacity(availableBytes: available, totalBytes: total) }
        let claimed = try records().reduce(0) { $0 + $1.sizeBytes }
        return StorageCapacity(availableBytes: max(0, min(available, capacityLimit - claimed)), totalBytes: capacityLimit)
    }

    func createSnapshot(_ request: CreateSnapshotRequest) async throws -> SnapshotInfo {
        try checkName(request.name, field: "snapshot name")
        guard let source = try record(request.sourceVolumeID) else { throw notFound(request.sourceVolumeID) }
        let folder = root.appendingPathComponent("snapshots/\(request.name)")
        let recordURL = folder.appendingPathComponent("snapshot.json")
        if let data = files.contents(atPath: recordURL.path) {
            let existing = try JSONDecoder().decode(SnapshotRecord.self, from: data)
            guard existing.source == request.sourceVolumeID else {
                throw PluginError(.alreadyExists, "snapshot \"\(request.name)\" exists for volume \"\(existing.source)\"")
            }
            return SnapshotInfo(snapshotID: request.name, sourceVolumeID: existing.source, sizeBytes: existing.sizeBytes)
        }
        let staging = root.appendingPathComponent("snapshots/.\(request.name).partial")
        try? files.removeItem(at: staging)
        try files.createDirectory(at: staging, withIntermediateDirectories: true)
        try files.copyItem(at: volumeFolder(request.sourceVolumeID).appendingPathComponent("data"), to: staging.appendingPathComponent("data"))
        let record = SnapshotRecord(name: request.name, source: request.sourceVolumeID, sizeBytes: source.sizeBytes)
        try JSONEncoder().encode(record).write(to: staging.appendingPathComponent("snapshot.json"))
        try files.moveItem(at: staging, to: folder)
        return SnapshotInfo(snapshotID: request.name, sourceVolumeID: request.sourceVolumeID, sizeBytes: source.sizeBytes)
    }

    func deleteSnapshot(_ request: DeleteSnapshotRequest) async throws {
        try checkName(request.snapshotID, field: "snapshot name")
        let folder = root.appendingPathComponent("snapshots/\(request.snapshotID)")
        if files.fileExists(atPath: folder.path) { try files.removeItem(at: folder) }
    }

    // MARK: Records

    private func volumeFolder(_ name: String) -> URL { root.appendingPathComponent("volumes/\(name)") }

    private func record(_ name: String) throws -> Record? {
        guard DNSLabel.problem(with: name) == nil else { return nil }
        guard let data = files.contents(atPath: volumeFolder(name).appendingPathComponent("volume.json").path) else { return nil }
        return try JSONDecoder().decode(Record.self, from: data)
    }

    private func records() throws -> [Record] {
        let names = (try? files.contentsOfDirectory(atPath: root.appendingPathComponent("volumes").path)) ?? []
        return try names.sorted().compactMap { try record($0) }
    }

    /// Writes the record atomically (write then rename), so a crash never leaves half a file.
    private func write(_ record: Record) throws {
        try JSONEncoder().encode(record).write(to: volumeFolder(record.name).appendingPathComponent("volume.json"), options: .atomic)
    }

    private func info(_ record: Record) -> VolumeInfo {
        VolumeInfo(volumeID: record.name, name: record.name, sizeBytes: record.sizeBytes, nodeName: record.nodeName)
    }

    private func notFound(_ id: String) -> PluginError {
        PluginError(.notFound, "volume \"\(id)\" does not exist")
    }

    private func checkName(_ name: String, field: String) throws {
        if let problem = DNSLabel.problem(with: name) {
            throw PluginError(.invalidArgument, "\(field) \(problem)", problems: [ValidationProblem(path: field, message: problem)])
        }
    }

    /// Refuses to promise more than the configured capacity or the disk's free space.
    private func reserve(_ bytes: Int64) throws {
        let (available, _) = try fileSystemSpace()
        if let capacityLimit {
            let claimed = try records().reduce(0) { $0 + $1.sizeBytes }
            guard claimed + bytes <= capacityLimit else {
                throw PluginError(.resourceExhausted, "no room for \(bytes) bytes: \(claimed) of the configured \(capacityLimit) are claimed")
            }
        }
        guard bytes <= available else {
            throw PluginError(.resourceExhausted, "no room for \(bytes) bytes: the file system at \(root.path) has \(available) free")
        }
    }

    private func fileSystemSpace() throws -> (available: Int64, total: Int64) {
        let attributes = try files.attributesOfFileSystem(forPath: root.path)
        let free = (attributes[.systemFreeSize] as? NSNumber)?.int64Value ?? 0
        let total = (attributes[.systemSize] as? NSNumber)?.int64Value ?? 0
        return (free, total)
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "hostpath", version: "1.0.0", kinds: [.storage]) { registrar in
        try registrar.register(storage: "hostpath", configuration: HostPathConfiguration.self) { configuration, context in
            try HostPath(configuration: configuration, context: context)
        }
    }
}
