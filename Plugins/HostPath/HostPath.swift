import CapstanSDK
import CapstanSupervision
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Node-local volumes as directories: `<root>/volumes/<name>/data`, with the volume's record in
/// `volume.json` beside it. Publishing links the data directory at the target path; a read-only
/// publish is a read-only bind mount (root only: without root it is refused, never silently
/// writable). Snapshots are full copies under `<root>/snapshots/<name>`, and a volume can be
/// created from one. Deleting a volume removes its data. Every call is idempotent.
///
/// Sizes are accounted (a volume cannot be created or grown past the configured capacity or the
/// file system's free space) but not enforced on writes: `enforcesSize` is false. Use the
/// `loopback` plugin for a hard limit.
actor HostPath: StorageProvisioner {
    nonisolated let root: URL
    nonisolated let space: StorageSpace
    nonisolated let nodeName: String?
    private let files = FileManager.default

    init(configuration: NodeLocalStorageConfiguration, context: PluginContext) throws {
        root = URL(fileURLWithPath: configuration.root ?? context.stateDirectory)
        space = StorageSpace(root: root, limit: configuration.capacity?.value)
        nodeName = context.nodeName
        // What an interrupted create or delete left (dot-folders); no call runs yet.
        try space.removeLeftovers(in: ["volumes", "snapshots"])
    }

    nonisolated var capabilities: StorageCapabilities {
        StorageCapabilities(topology: .nodeLocal, expansion: true, snapshots: true, stageUnstage: false, onlineExpansion: true,
                            enforcesSize: false, restoreFromSnapshot: true)
    }

    /// What `volume.json` holds.
    struct Record: Codable, Equatable, Sendable {
        var name: String
        var sizeBytes: Int64
        var nodeName: String?
        var publishedAt: [String]
        var sourceSnapshot: String?
    }

    func createVolume(_ request: CreateVolumeRequest) async throws -> VolumeInfo {
        try checkName(request.name, field: "name")
        guard request.sizeBytes > 0 else { throw PluginError(.invalidArgument, "volume size must be more than zero") }
        if let key = request.parameters.keys.sorted().first {
            throw PluginError(.invalidArgument, "parameter \"\(key)\" is not one the hostpath plugin knows; it takes none",
                              problems: [ValidationProblem(path: "parameters.\(key)", message: "unknown; hostpath takes no parameters")])
        }
        if let existing = try record(request.name) {
            guard existing.sizeBytes == request.sizeBytes, existing.sourceSnapshot == request.sourceSnapshotID else {
                throw PluginError(.alreadyExists, "volume \"\(request.name)\" exists with size \(existing.sizeBytes), not \(request.sizeBytes)")
            }
            return info(existing)
        }
        var source: URL?
        if let snapshot = request.sourceSnapshotID {
            try checkName(snapshot, field: "sourceSnapshotID")
            let folder = root.appendingPathComponent("snapshots/\(snapshot)")
            guard files.fileExists(atPath: folder.appendingPathComponent("snapshot.json").path) else { throw PluginError(.notFound, "snapshot \"\(snapshot)\" does not exist") }
            source = folder.appendingPathComponent("data")
        }
        try reserve(request.sizeBytes)
        // Built beside, then renamed into place: a crash never leaves half a volume listed.
        let partial = root.appendingPathComponent("volumes/.\(request.name).partial")
        try? files.removeItem(at: partial)
        try files.createDirectory(at: partial, withIntermediateDirectories: true)
        if let source {
            try files.copyItem(at: source, to: partial.appendingPathComponent("data"))
        } else {
            try files.createDirectory(at: partial.appendingPathComponent("data"), withIntermediateDirectories: true)
        }
        let record = Record(name: request.name, sizeBytes: request.sizeBytes, nodeName: request.nodeName ?? nodeName, publishedAt: [], sourceSnapshot: request.sourceSnapshotID)
        try volumes.write(record, name: record.name, in: partial)
        try files.moveItem(at: partial, to: volumeFolder(request.name))
        return info(record)
    }

    func deleteVolume(_ request: DeleteVolumeRequest) async throws {
        guard let record = try record(request.volumeID) else { return }
        guard record.publishedAt.isEmpty else {
            throw PluginError(.failedPrecondition, "volume \"\(request.volumeID)\" is still published at \(record.publishedAt.joined(separator: ", ")); unpublish it first")
        }
        // Renamed first, so a crash mid-removal leaves a dot-folder the next start removes,
        // never a half-deleted volume that still lists.
        let doomed = root.appendingPathComponent("volumes/.\(request.volumeID).deleting")
        try? files.removeItem(at: doomed)
        try files.moveItem(at: volumeFolder(request.volumeID), to: doomed)
        try files.removeItem(at: doomed)
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
        if let mounted = Mounts.read().last(where: { $0.mountPoint == target }) {
            guard mounted.readOnly == request.readOnly else {
                throw PluginError(.alreadyExists, "volume \"\(request.volumeID)\" is published at \(target) \(mounted.readOnly ? "read-only" : "read-write"); unpublish it to change that")
            }
        } else if let existing = try? files.destinationOfSymbolicLink(atPath: target) {
            guard existing == data else {
                throw PluginError(.failedPrecondition, "target \(target) already links to \(existing)")
            }
            guard !request.readOnly else {
                throw PluginError(.alreadyExists, "volume \"\(request.volumeID)\" is published read-write at \(target); unpublish it to publish read-only")
            }
        } else if request.readOnly {
            // A link cannot stop writes: a read-only bind mount can, and needs root.
            guard geteuid() == 0 else {
                throw PluginError(.failedPrecondition, "hostpath publishes read-only with a read-only bind mount, which needs root; run the agent as root, or mount the volume read-write")
            }
            var isFolder: ObjCBool = false
            if files.fileExists(atPath: target, isDirectory: &isFolder) {
                guard isFolder.boolValue, (try? files.contentsOfDirectory(atPath: target))?.isEmpty == true else {
                    throw PluginError(.failedPrecondition, "target \(target) exists and is not an empty folder; remove it or choose another path")
                }
            }
            try files.createDirectory(atPath: target, withIntermediateDirectories: true)
            try Mounts.bind(data, at: target, readOnly: true)
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
        if Mounts.read().contains(where: { $0.mountPoint == request.targetPath }) {
            while Mounts.read().contains(where: { $0.mountPoint == request.targetPath }) { try Mounts.unmount(request.targetPath) }
            _ = rmdir(request.targetPath)
        } else if (try? files.destinationOfSymbolicLink(atPath: request.targetPath)) == data {
            try files.removeItem(atPath: request.targetPath)
        }
        record.publishedAt.removeAll { $0 == request.targetPath }
        try write(record)
    }

    func listVolumes() async throws -> [VolumeInfo] {
        try records().map(info)
    }

    func capacity() async throws -> StorageCapacity {
        try space.capacity(claimed: try records().reduce(Int64(0)) { $0 &+ $1.sizeBytes })
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

    private var volumes: RecordFolder<Record> { RecordFolder(root.appendingPathComponent("volumes"), fileName: "volume.json") }
    private func record(_ name: String) throws -> Record? { try volumes.read(name) }
    private func records() throws -> [Record] { try volumes.all() }
    private func write(_ record: Record) throws { try volumes.write(record, name: record.name) }

    private func info(_ record: Record) -> VolumeInfo {
        VolumeInfo(volumeID: record.name, name: record.name, sizeBytes: record.sizeBytes, nodeName: record.nodeName)
    }

    private func notFound(_ id: String) -> PluginError {
        PluginError(.notFound, "volume \"\(id)\" does not exist")
    }

    private func checkName(_ name: String, field: String) throws { try StorageSpace.checkName(name, field: field) }

    /// Refuses to promise more than the configured capacity or the disk's free space.
    private func reserve(_ bytes: Int64) throws {
        try space.reserve(bytes, claimed: try records().reduce(Int64(0)) { $0 &+ $1.sizeBytes })
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "hostpath", version: "1.0.0", kinds: [.storage]) { registrar in
        try registrar.register(storage: "hostpath", configuration: NodeLocalStorageConfiguration.self) { configuration, context in
            try HostPath(configuration: configuration, context: context)
        }
    }
}
