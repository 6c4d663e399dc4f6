import CapstanSDK
import CapstanSupervision
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Node-local block volumes with a real size: each volume is a sparse image file formatted
/// ext4 (`mkfs.ext4`), attached to a loop device when staged (mounted at the staging path) and
/// bind-mounted at each publish target — read-only when asked. A write past the size fails with
/// `ENOSPC` inside the instance. Expansion grows the image, the loop device (`LOOP_SET_CAPACITY`)
/// and the file system (`resize2fs`, online while mounted). Snapshots are sparse copies of a
/// frozen image (`FIFREEZE`), reflinked where the file system can.
///
/// **Crash safety.** Every call reads the truth from the kernel (loop devices' backing files in
/// `/sys/block`, mounts in `/proc/self/mountinfo`) and the disk, never from a record of what it
/// meant to do, so a call repeated after a crash at any step converges: a volume or snapshot
/// is built in a `.partial` folder and renamed into place, deletions detach what is attached
/// before removing, and leftovers of interrupted builds are removed at start.
///
/// The failpoint `CAPSTAN_LOOPBACK_FAILPOINT=<step>` ends the process (exit 137, as `kill -9`)
/// when the named step is reached; the crash-convergence tests use it.
actor Loopback: StorageProvisioner {
    nonisolated let root: URL
    nonisolated let space: StorageSpace
    nonisolated let nodeName: String?
    private let files = FileManager.default
    private let failpoint = ProcessInfo.processInfo.environment["CAPSTAN_LOOPBACK_FAILPOINT"]
    private let tools: Tools
    private let gate = SerialGate()

    struct Tools {
        var mkfs: String
        var resize2fs: String
        var e2fsck: String
        var losetup: String
    }

    init(configuration: NodeLocalStorageConfiguration, context: PluginContext) throws {
        var missing: [String] = []
        func tool(_ name: String) -> String {
            if let path = ExternalCommand.find(name) ?? ["/usr/sbin/\(name)", "/sbin/\(name)"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) { return path }
            missing.append(name)
            return name
        }
        tools = Tools(mkfs: tool("mkfs.ext4"), resize2fs: tool("resize2fs"), e2fsck: tool("e2fsck"), losetup: tool("losetup"))
        guard missing.isEmpty else {
            throw PluginError(.failedPrecondition, "the loopback storage plugin needs \(missing.joined(separator: ", ")): install Debian's e2fsprogs and mount (apt-get install e2fsprogs mount)")
        }
        guard access("/dev/loop-control", R_OK | W_OK) == 0 else {
            throw PluginError(.failedPrecondition, "the loopback storage plugin needs root and /dev/loop-control (loop devices): run the agent as root, or use hostpath")
        }
        // Resolved: the kernel reports loop devices' backing files and mounts by their real paths.
        let configured = configuration.root ?? context.stateDirectory
        try FileManager.default.createDirectory(atPath: configured, withIntermediateDirectories: true)
        root = URL(fileURLWithPath: realpath(configured, nil).map { pointer in defer { free(pointer) }; return String(cString: pointer) } ?? configured)
        space = StorageSpace(root: root, limit: configuration.capacity?.value)
        nodeName = context.nodeName
        // What an interrupted create or delete left; nothing else runs calls on this root yet.
        try space.removeLeftovers(in: ["volumes", "snapshots"]) { Self.detachLoops(backing: $0.appendingPathComponent("disk.img").path) }
        // A crash during a snapshot copy leaves its volume frozen: thaw every mount of ours.
        let volumesFolder = root.appendingPathComponent("volumes").path
        for name in (try? FileManager.default.contentsOfDirectory(atPath: volumesFolder)) ?? [] where !name.hasPrefix(".") {
            for device in Self.loopDevices(backing: "\(volumesFolder)/\(name)/disk.img") {
                for mount in Mounts.read() where mount.device == device.number { try? Freeze.thaw(mount.mountPoint) }
            }
        }
    }

    /// Online expansion (`resize2fs` of a mounted ext4) needs `CAP_SYS_RESOURCE`; without it a
    /// volume expanded while mounted gets its file system grown at its next stage.
    nonisolated var capabilities: StorageCapabilities {
        StorageCapabilities(topology: .nodeLocal, expansion: true, snapshots: true, stageUnstage: true, onlineExpansion: Self.canResizeOnline,
                            enforcesSize: true, restoreFromSnapshot: true)
    }

    /// Whether this process holds `CAP_SYS_RESOURCE` (bit 24 of CapEff), which ext4's online
    /// resize ioctl demands even of root.
    nonisolated static let canResizeOnline: Bool = {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("CapEff:") }),
              let mask = UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) else { return false }
        return mask & (1 << 24) != 0
    }()

    /// What `volume.json` holds.
    struct Record: Codable, Equatable, Sendable {
        var name: String
        var sizeBytes: Int64
        var nodeName: String?
        var sourceSnapshot: String?
        /// The size the file system was grown to, when below `sizeBytes` (an expansion of a
        /// mounted volume without online resize): the next stage grows it.
        var fileSystemBytes: Int64?
    }

    // MARK: Controller calls

    // One call at a time: the calls await external tools, and an actor lets the next call in
    // at every await — an offline resize and a stage of the same image must never overlap, nor
    // two creates both pass the capacity check.
    func createVolume(_ request: CreateVolumeRequest) async throws -> VolumeInfo { try await gate.run { try await createVolumeSerially(request) } }
    func deleteVolume(_ request: DeleteVolumeRequest) async throws { try await gate.run { try await deleteVolumeSerially(request) } }
    func expandVolume(_ request: ExpandVolumeRequest) async throws -> VolumeInfo { try await gate.run { try await expandVolumeSerially(request) } }
    func createSnapshot(_ request: CreateSnapshotRequest) async throws -> SnapshotInfo { try await gate.run { try await createSnapshotSerially(request) } }
    func deleteSnapshot(_ request: DeleteSnapshotRequest) async throws { try await gate.run { try await deleteSnapshotSerially(request) } }
    func stageVolume(_ request: StageVolumeRequest) async throws { try await gate.run { try await stageVolumeSerially(request) } }
    func unstageVolume(_ request: UnstageVolumeRequest) async throws { try await gate.run { try await unstageVolumeSerially(request) } }
    func publishVolume(_ request: PublishVolumeRequest) async throws -> PublishedVolume { try await gate.run { try await publishVolumeSerially(request) } }
    func unpublishVolume(_ request: UnpublishVolumeRequest) async throws { try await gate.run { try await unpublishVolumeSerially(request) } }


    private func createVolumeSerially(_ request: CreateVolumeRequest) async throws -> VolumeInfo {
        try checkName(request.name, field: "name")
        guard request.sizeBytes >= Self.minimumBytes else {
            throw PluginError(.invalidArgument, "volume size \(request.sizeBytes) is below the loopback minimum of 8Mi (ext4 needs room for its journal)")
        }
        for key in request.parameters.keys.sorted() where key != "fsType" {
            throw PluginError(.invalidArgument, "parameter \"\(key)\" is not one the loopback plugin knows; it takes only fsType (ext4)",
                              problems: [ValidationProblem(path: "parameters.\(key)", message: "unknown; loopback takes only fsType")])
        }
        if let fsType = request.parameters["fsType"], fsType != "ext4" {
            throw PluginError(.invalidArgument, "parameter fsType \"\(fsType)\" is not supported; loopback formats ext4",
                              problems: [ValidationProblem(path: "parameters.fsType", message: "must be ext4")])
        }
        if let existing = try record(request.name) {
            guard existing.sizeBytes == request.sizeBytes, existing.sourceSnapshot == request.sourceSnapshotID else {
                throw PluginError(.alreadyExists, "volume \"\(request.name)\" exists with size \(existing.sizeBytes) from snapshot \(existing.sourceSnapshot ?? "none"), not \(request.sizeBytes) from \(request.sourceSnapshotID ?? "none")")
            }
            return info(existing)
        }
        var snapshot: SnapshotRecord?
        if let source = request.sourceSnapshotID {
            try checkName(source, field: "sourceSnapshotID")
            guard let found = try snapshotRecord(source) else { throw PluginError(.notFound, "snapshot \"\(source)\" does not exist") }
            guard request.sizeBytes >= found.sizeBytes else {
                throw PluginError(.invalidArgument, "volume size \(request.sizeBytes) is smaller than snapshot \"\(source)\" (\(found.sizeBytes)); ask for at least that")
            }
            snapshot = found
        }
        try reserve(request.sizeBytes)
        let partial = root.appendingPathComponent("volumes/.\(request.name).partial")
        try? files.removeItem(at: partial)
        try files.createDirectory(at: partial, withIntermediateDirectories: true)
        let image = partial.appendingPathComponent("disk.img").path
        if let snapshot {
            try await copySparse(from: snapshotFolder(snapshot.name).appendingPathComponent("disk.img").path, to: image)
            try fail("create.copy")
            if request.sizeBytes > snapshot.sizeBytes {
                try grow(image, to: request.sizeBytes)
                    try await resizeOffline(image)
            }
        } else {
            try grow(image, to: request.sizeBytes)
            try fail("create.image")
            // No reserved blocks (-m 0): the whole size is the instance's. lazy_itable_init
            // keeps formatting fast on large sparse images.
            _ = try await run(tools.mkfs, ["-q", "-F", "-b", "4096", "-m", "0", "-E", "nodiscard,lazy_itable_init=1,lazy_journal_init=1", "-L", String(request.name.prefix(16)), image])
            try fail("create.mkfs")
        }
        let record = Record(name: request.name, sizeBytes: request.sizeBytes, nodeName: request.nodeName ?? nodeName, sourceSnapshot: request.sourceSnapshotID)
        try volumes.write(record, name: record.name, in: partial)
        try fail("create.record")
        try files.moveItem(at: partial, to: volumeFolder(request.name))
        return info(record)
    }

    private func deleteVolumeSerially(_ request: DeleteVolumeRequest) async throws {
        guard let _ = try record(request.volumeID) else { return }
        let image = imagePath(request.volumeID)
        for device in Self.loopDevices(backing: image) {
            let mounts = Mounts.read().filter { $0.device == device.number }
            guard mounts.isEmpty else {
                throw PluginError(.failedPrecondition, "volume \"\(request.volumeID)\" is still mounted at \(mounts.map(\.mountPoint).joined(separator: ", ")); unpublish and unstage it first")
            }
        }
        Self.detachLoops(backing: image)
        try fail("delete.detach")
        // Renamed first: a crash in the removal leaves a dot-folder that the next start removes.
        let doomed = root.appendingPathComponent("volumes/.\(request.volumeID).deleting")
        try? files.removeItem(at: doomed)
        try files.moveItem(at: volumeFolder(request.volumeID), to: doomed)
        try fail("delete.remove")
        try files.removeItem(at: doomed)
    }

    private func expandVolumeSerially(_ request: ExpandVolumeRequest) async throws -> VolumeInfo {
        guard var record = try record(request.volumeID) else { throw notFound(request.volumeID) }
        guard request.sizeBytes > record.sizeBytes else { return info(record) }
        guard request.sizeBytes <= VolumeSize.maxBytes else { throw PluginError(.invalidArgument, "size \(request.sizeBytes) is more than 1Pi") }
        try reserve(request.sizeBytes - record.sizeBytes)
        let image = imagePath(request.volumeID)
        try grow(image, to: request.sizeBytes)
        try fail("expand.truncate")
        var fileSystemBytes: Int64? = nil
        if let device = Self.loopDevices(backing: image).first {
            try device.refreshCapacity()
            if Mounts.read().contains(where: { $0.device == device.number }) {
                if Self.canResizeOnline {
                    // Online: ext4 grows under a running instance.
                    _ = try await run(tools.resize2fs, [device.path])
                } else {
                    // The device is bigger now; the file system grows at the next stage.
                    fileSystemBytes = record.fileSystemBytes ?? record.sizeBytes
                }
            } else {
                try await resizeOffline(device.path)
            }
        } else {
            try await resizeOffline(image)
        }
        try fail("expand.resize")
        record.sizeBytes = request.sizeBytes
        record.fileSystemBytes = fileSystemBytes
        try write(record)
        return info(record)
    }

    /// `e2fsck -f` (resize2fs demands a freshly checked file system), then `resize2fs`.
    private func resizeOffline(_ device: String) async throws {
        _ = try await run(tools.e2fsck, ["-f", "-y", device], okStatuses: [0, 1])
        _ = try await run(tools.resize2fs, [device])
    }

    func listVolumes() async throws -> [VolumeInfo] {
        try records().map(info)
    }

    func capacity() async throws -> StorageCapacity {
        try space.capacity(claimed: try records().reduce(Int64(0)) { $0 &+ $1.sizeBytes })
    }

    private func createSnapshotSerially(_ request: CreateSnapshotRequest) async throws -> SnapshotInfo {
        try checkName(request.name, field: "snapshot name")
        if let existing = try snapshotRecord(request.name) {
            guard existing.source == request.sourceVolumeID else {
                throw PluginError(.alreadyExists, "snapshot \"\(request.name)\" exists for volume \"\(existing.source)\"")
            }
            return SnapshotInfo(snapshotID: existing.name, sourceVolumeID: existing.source, sizeBytes: existing.sizeBytes)
        }
        guard let source = try record(request.sourceVolumeID) else { throw notFound(request.sourceVolumeID) }
        let partial = root.appendingPathComponent("snapshots/.\(request.name).partial")
        try? files.removeItem(at: partial)
        try files.createDirectory(at: partial, withIntermediateDirectories: true)
        // A mounted source is frozen for the copy, so the snapshot is a consistent file system.
        let image = imagePath(source.name)
        let staged = Self.loopDevices(backing: image).compactMap { device in Mounts.read().first { $0.device == device.number }?.mountPoint }.first
        if let staged { try Freeze.freeze(staged) }
        defer { if let staged { try? Freeze.thaw(staged) } }
        try await copySparse(from: image, to: partial.appendingPathComponent("disk.img").path)
        try fail("snapshot.copy")
        let record = SnapshotRecord(name: request.name, source: request.sourceVolumeID, sizeBytes: source.sizeBytes)
        try snapshots.write(record, name: record.name, in: partial)
        try files.moveItem(at: partial, to: snapshotFolder(request.name))
        return SnapshotInfo(snapshotID: request.name, sourceVolumeID: request.sourceVolumeID, sizeBytes: source.sizeBytes)
    }

    private func deleteSnapshotSerially(_ request: DeleteSnapshotRequest) async throws {
        try checkName(request.snapshotID, field: "snapshot name")
        let folder = snapshotFolder(request.snapshotID)
        guard files.fileExists(atPath: folder.path) else { return }
        let doomed = root.appendingPathComponent("snapshots/.\(request.snapshotID).deleting")
        try? files.removeItem(at: doomed)
        try files.moveItem(at: folder, to: doomed)
        try files.removeItem(at: doomed)
    }

    // MARK: Node calls

    private func stageVolumeSerially(_ request: StageVolumeRequest) async throws {
        guard var record = try record(request.volumeID) else { throw notFound(request.volumeID) }
        let image = imagePath(request.volumeID)
        var device = Self.loopDevices(backing: image).first
        if device == nil {
            let attached = try await run(tools.losetup, ["--find", "--show", "--nooverlap", image])
            let path = String(decoding: attached.stdout, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            device = Self.loopDevices(backing: image).first { $0.path == path } ?? Self.loopDevices(backing: image).first
        }
        guard let device else { throw PluginError(.internal, "losetup attached \(image) but no loop device shows it in /sys/block") }
        try fail("stage.attach")
        var mounts = Mounts.read()
        if let existing = mounts.first(where: { $0.mountPoint == request.stagingPath }) {
            guard existing.device == device.number else {
                throw PluginError(.failedPrecondition, "staging path \(request.stagingPath) already has another file system mounted (\(existing.source)); unmount it")
            }
            // Staged already (a staging mount can outlive its instances, across an agent
            // restart). A growth left for the next stage is done now when nothing is published
            // from it: unmount, grow, mount again — else the next instance would get the old
            // file system while the volume says it grew.
            guard let grown = record.fileSystemBytes, grown < record.sizeBytes,
                  !mounts.contains(where: { $0.device == device.number && $0.mountPoint != request.stagingPath }) else { return }
            try Mounts.unmount(request.stagingPath)
            mounts = Mounts.read()
        }
        if let grown = record.fileSystemBytes, grown < record.sizeBytes, !mounts.contains(where: { $0.device == device.number }) {
            // An expansion that happened while it was mounted, without online resize.
            try device.refreshCapacity()
            try await resizeOffline(device.path)
            record.fileSystemBytes = nil
            try write(record)
        }
        try files.createDirectory(atPath: request.stagingPath, withIntermediateDirectories: true)
        try Mounts.mount(device.path, at: request.stagingPath, type: "ext4")
        try fail("stage.mount")
    }

    private func unstageVolumeSerially(_ request: UnstageVolumeRequest) async throws {
        let image = imagePath(request.volumeID)
        let devices = Self.loopDevices(backing: image)
        let mounts = Mounts.read()
        for device in devices {
            let others = mounts.filter { $0.device == device.number && $0.mountPoint != request.stagingPath }
            guard others.isEmpty else {
                throw PluginError(.failedPrecondition, "volume \"\(request.volumeID)\" is still published at \(others.map(\.mountPoint).joined(separator: ", ")); unpublish it first")
            }
        }
        if mounts.contains(where: { $0.mountPoint == request.stagingPath }) {
            try Mounts.unmount(request.stagingPath)
        }
        try fail("unstage.umount")
        // Only an empty folder: never data that is not ours.
        _ = rmdir(request.stagingPath)
        Self.detachLoops(backing: image)
        try fail("unstage.detach")
    }

    private func publishVolumeSerially(_ request: PublishVolumeRequest) async throws -> PublishedVolume {
        guard try record(request.volumeID) != nil else { throw notFound(request.volumeID) }
        guard let staging = request.stagingPath else {
            throw PluginError(.failedPrecondition, "loopback volumes are staged before they are published: call stageVolume and pass its stagingPath")
        }
        let devices = Set(Self.loopDevices(backing: imagePath(request.volumeID)).map(\.number))
        let mounts = Mounts.read()
        guard let staged = mounts.first(where: { $0.mountPoint == staging }), devices.contains(staged.device) else {
            throw PluginError(.failedPrecondition, "volume \"\(request.volumeID)\" is not staged at \(staging); stage it first")
        }
        if let existing = mounts.last(where: { $0.mountPoint == request.targetPath }) {
            guard devices.contains(existing.device) else {
                throw PluginError(.failedPrecondition, "target \(request.targetPath) already has another file system mounted (\(existing.source))")
            }
            if request.readOnly && !existing.readOnly {
                // A crash between the bind and its read-only remount: finish the remount.
                try Mounts.remountReadOnly(request.targetPath)
            } else if existing.readOnly && !request.readOnly {
                throw PluginError(.alreadyExists, "volume \"\(request.volumeID)\" is published read-only at \(request.targetPath); unpublish it to publish it read-write")
            }
            return PublishedVolume(volumeID: request.volumeID, targetPath: request.targetPath)
        }
        try files.createDirectory(atPath: request.targetPath, withIntermediateDirectories: true)
        try Mounts.bind(staging, at: request.targetPath, readOnly: request.readOnly)
        try fail("publish.bind")
        return PublishedVolume(volumeID: request.volumeID, targetPath: request.targetPath)
    }

    private func unpublishVolumeSerially(_ request: UnpublishVolumeRequest) async throws {
        // Every mount stacked at the target (a crash between bind and remount can leave two).
        while Mounts.read().contains(where: { $0.mountPoint == request.targetPath }) {
            try Mounts.unmount(request.targetPath)
            try fail("unpublish.umount")
        }
        if files.fileExists(atPath: request.targetPath) {
            // Only an empty folder: never data that is not ours.
            if rmdir(request.targetPath) != 0 && errno != ENOENT {
                throw PluginError(.failedPrecondition, "target \(request.targetPath) is not an empty folder after unmounting; leaving it")
            }
        }
    }

    // MARK: Records and helpers

    static let minimumBytes: Int64 = 8 << 20

    private func volumeFolder(_ name: String) -> URL { root.appendingPathComponent("volumes/\(name)") }
    private func snapshotFolder(_ name: String) -> URL { root.appendingPathComponent("snapshots/\(name)") }
    private func imagePath(_ name: String) -> String { volumeFolder(name).appendingPathComponent("disk.img").path }

    private var volumes: RecordFolder<Record> { RecordFolder(root.appendingPathComponent("volumes"), fileName: "volume.json") }
    private var snapshots: RecordFolder<SnapshotRecord> { RecordFolder(root.appendingPathComponent("snapshots"), fileName: "snapshot.json") }
    private func record(_ name: String) throws -> Record? { try volumes.read(name) }
    private func snapshotRecord(_ name: String) throws -> SnapshotRecord? { try snapshots.read(name) }
    private func records() throws -> [Record] { try volumes.all() }
    private func write(_ record: Record) throws { try volumes.write(record, name: record.name) }

    private func info(_ record: Record) -> VolumeInfo {
        VolumeInfo(volumeID: record.name, name: record.name, sizeBytes: record.sizeBytes, nodeName: record.nodeName)
    }

    private func notFound(_ id: String) -> PluginError { PluginError(.notFound, "volume \"\(id)\" does not exist") }

    private func checkName(_ name: String, field: String) throws { try StorageSpace.checkName(name, field: field) }

    /// Ends the process here when the failpoint names this step (crash tests).
    private func fail(_ step: String) throws {
        if failpoint == step { _exit(137) }
    }

    /// Sets the image's length (sparse: no blocks are written).
    private func grow(_ path: String, to size: Int64) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw PluginError(.internal, "cannot open \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(size)) == 0 else { throw PluginError(.resourceExhausted, "cannot size \(path) to \(size) bytes: \(String(cString: strerror(errno)))") }
    }

    private func copySparse(from source: String, to target: String) async throws {
        _ = try await run("/bin/cp", ["--reflink=auto", "--sparse=always", source, target])
    }

    /// Runs a tool to its end. The bound is generous on purpose: `e2fsck`, `resize2fs` and `cp`
    /// take time in proportion to the volume, and killing one midway could corrupt it.
    private func run(_ tool: String, _ arguments: [String], okStatuses: Set<Int32> = [0]) async throws -> ExternalCommand {
        let result = try await ExternalCommand.run(tool, arguments, timeout: 6 * 3600, check: false)
        guard okStatuses.contains(result.status) else { throw result.failure }
        return result
    }

    /// Refuses to promise more than the configured capacity or the disk's free space.
    private func reserve(_ bytes: Int64) throws {
        try space.reserve(bytes, claimed: try records().reduce(Int64(0)) { $0 &+ $1.sizeBytes })
    }

    // MARK: Loop devices

    struct LoopDevice: Hashable {
        var name: String
        var number: String
        var path: String { "/dev/\(name)" }

        /// Tells the loop driver the backing file grew (`LOOP_SET_CAPACITY`).
        func refreshCapacity() throws {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw PluginError(.internal, "cannot open \(path): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            guard ioctl(fd, 0x4C07, 0) == 0 else { throw PluginError(.internal, "LOOP_SET_CAPACITY on \(path): \(String(cString: strerror(errno)))") }
        }

        /// Detaches it (`LOOP_CLR_FD`); the kernel finishes when the last opener closes.
        func detach() {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return }
            _ = ioctl(fd, 0x4C01, 0)
            close(fd)
        }
    }

    /// The loop devices whose backing file is `image` (from `/sys/block/loop*/loop/backing_file`).
    nonisolated static func loopDevices(backing image: String) -> [LoopDevice] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        return names.filter { $0.hasPrefix("loop") }.sorted().compactMap { name in
            guard let backing = try? String(contentsOfFile: "/sys/block/\(name)/loop/backing_file", encoding: .utf8) else { return nil }
            var path = backing.trimmingCharacters(in: .newlines)
            if path.hasSuffix(" (deleted)") { path = String(path.dropLast(10)) }
            guard path == image, let number = try? String(contentsOfFile: "/sys/block/\(name)/dev", encoding: .utf8) else { return nil }
            return LoopDevice(name: name, number: number.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    nonisolated static func detachLoops(backing image: String) {
        for device in loopDevices(backing: image) { device.detach() }
    }
}

/// `FIFREEZE` / `FITHAW` on a mounted file system, for consistent snapshots.
enum Freeze {
    /// EBUSY (already frozen, by a copy a crash interrupted) counts as frozen.
    static func freeze(_ mountPoint: String) throws { try call(mountPoint, 0xC004_5877, "FIFREEZE", tolerating: EBUSY) }
    static func thaw(_ mountPoint: String) throws { try call(mountPoint, 0xC004_5878, "FITHAW", tolerating: EINVAL) }

    private static func call(_ mountPoint: String, _ request: UInt, _ name: String, tolerating tolerated: Int32) throws {
        let fd = open(mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw PluginError(.internal, "cannot open \(mountPoint): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard ioctl(fd, request, 0) == 0 || errno == tolerated else { throw PluginError(.internal, "\(name) on \(mountPoint): \(String(cString: strerror(errno)))") }
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "loopback", version: "1.0.0", kinds: [.storage]) { registrar in
        try registrar.register(storage: "loopback", configuration: NodeLocalStorageConfiguration.self) { configuration, context in
            try Loopback(configuration: configuration, context: context)
        }
    }
}
