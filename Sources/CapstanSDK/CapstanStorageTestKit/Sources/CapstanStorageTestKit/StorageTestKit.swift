import CapstanSDK
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The storage conformance kit, in the spirit of csi-sanity: runs the whole contract of
/// ``StorageProvisioner`` against a real provisioner and names the broken rule of every failure.
///
/// Rules (each check carries one):
/// - `create`: a volume is created at least the size asked, and listed.
/// - `idempotent`: every call repeated with the same arguments succeeds with the same result.
/// - `error-codes`: a name taken with other parameters is `alreadyExists`, calls on an unknown
///   volume are `notFound`, bad arguments are `invalidArgument`.
/// - `publish`: data written through one publish is read through another, and survives
///   unpublish, unstage and a new stage and publish.
/// - `read-only`: a read-only publish cannot be written (or is refused).
/// - `size`: with `enforcesSize`, writes past the size fail with `ENOSPC`.
/// - `capabilities`: what is declared works; what is not answers `unimplemented`.
/// - `expansion`, `snapshots`: when declared, they work, visibly in the file system.
/// - `concurrency`: calls on different volumes at once all succeed, without crosstalk.
/// - `cleanup`: create/delete and publish/unpublish leave nothing behind: no file in the
///   watched folders, no mount, no loop device that was not there before (the baseline is
///   taken after a warm-up volume was created and deleted, so a plugin's own bookkeeping
///   files are not counted).
///
/// ```swift
/// let report = await StorageTestKit.run(MyDriver(root: dir), options: .init(scratch: scratch, watchedFolders: [dir]))
/// #expect(report.failures.isEmpty, "\(report.failures)")
/// ```
public enum StorageTestKit {
    public struct Options: Sendable {
        /// A folder for publish targets and staging paths; created if missing.
        public var scratch: URL
        /// Folders the provisioner writes (its state directory): anything new in them after the
        /// kit deleted what it created is a leak.
        public var watchedFolders: [URL]
        /// The size of the volumes the kit creates (default 32 MiB; kept within 8 MiB…1 TiB).
        public var volumeSize: Int64
        /// How many volumes the concurrency check drives at once (default 4).
        public var concurrency: Int
        /// Parameters for `createVolume` (a StorageClass's).
        public var parameters: [String: String]

        public init(scratch: URL, watchedFolders: [URL] = [], volumeSize: Int64 = 32 << 20, concurrency: Int = 4, parameters: [String: String] = [:]) {
            self.scratch = scratch
            self.watchedFolders = watchedFolders
            self.volumeSize = volumeSize
            self.concurrency = concurrency
            self.parameters = parameters
        }
    }

    /// One check and its outcome.
    public struct Check: Sendable, Hashable, Codable {
        /// The rule it tests (`idempotent`, `cleanup`, …).
        public var rule: String
        public var name: String
        public var passed: Bool
        /// What went wrong, or what was skipped and why.
        public var detail: String?

        /// `PASS [rule] name` or `FAIL [rule] name: detail`.
        public var line: String {
            "\(passed ? "PASS" : "FAIL")  [\(rule)] \(name)\(detail.map { ": \($0)" } ?? "")"
        }
    }

    public struct Report: Sendable, Hashable, Codable {
        public var checks: [Check]
        public var failures: [Check] { checks.filter { !$0.passed } }
        public var passed: Bool { failures.isEmpty }
        /// The failed rules, sorted.
        public var brokenRules: [String] { Array(Set(failures.map(\.rule))).sorted() }
    }

    /// Runs every check. Volumes are named `kit-<random>…`; everything the kit creates it
    /// deletes, even after a failure.
    public static func run(_ provisioner: any StorageProvisioner, options: Options) async -> Report {
        let kit = Run(provisioner: provisioner, options: options)
        await kit.all()
        return Report(checks: kit.checks.value)
    }
}

/// A failed expectation inside a check.
struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// The checks collected so far (checks run one at a time; the lock is for Sendable).
final class Collected: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [StorageTestKit.Check] = []
    var value: [StorageTestKit.Check] { lock.withLock { items } }
    func append(_ check: StorageTestKit.Check) { lock.withLock { items.append(check) } }
}

struct Run: Sendable {
    let provisioner: any StorageProvisioner
    let options: StorageTestKit.Options
    let checks = Collected()
    let prefix = "kit-\(UUID().uuidString.prefix(8).lowercased())"

    var capabilities: StorageCapabilities { provisioner.capabilities }
    /// The caller's size, kept within 8 MiB…1 TiB: the checks double and quadruple it.
    var size: Int64 { min(max(options.volumeSize, 8 << 20), 1 << 40) }

    func check(_ rule: String, _ name: String, _ body: () async throws -> String?) async {
        do {
            let note = try await body()
            checks.append(.init(rule: rule, name: name, passed: true, detail: note))
        } catch let failure as Failure {
            checks.append(.init(rule: rule, name: name, passed: false, detail: failure.description))
        } catch {
            checks.append(.init(rule: rule, name: name, passed: false, detail: "threw \(describe(error))"))
        }
    }

    func describe(_ error: any Error) -> String {
        if let error = error as? PluginError { return "PluginError.\(error.code) (\(error.message))" }
        return "\(error)"
    }

    /// Runs `body`, which must throw a ``PluginError`` with one of `codes`.
    func expectError(_ codes: Set<PluginError.Code>, _ what: String, _ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let error as PluginError {
            guard codes.contains(error.code) else {
                throw Failure("\(what) threw PluginError.\(error.code) (\(error.message)); expected \(codes.map { "\($0)" }.sorted().joined(separator: " or "))")
            }
            return
        } catch {
            throw Failure("\(what) threw \(error), not a PluginError; expected \(codes.map { "\($0)" }.sorted().joined(separator: " or "))")
        }
        throw Failure("\(what) succeeded; expected PluginError \(codes.map { "\($0)" }.sorted().joined(separator: " or "))")
    }

    func path(_ parts: String...) -> String { parts.reduce(options.scratch) { $0.appendingPathComponent($1) }.path }
    func staging(_ volume: String) -> String? { capabilities.stageUnstage ? path("staging", volume) : nil }

    // MARK: Host steps (what the agent does around the plugin calls)

    func stage(_ id: String, _ name: String) async throws {
        guard let staging = staging(name) else { return }
        try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
        try await provisioner.stageVolume(StageVolumeRequest(volumeID: id, stagingPath: staging))
    }

    func unstage(_ id: String, _ name: String) async throws {
        guard let staging = staging(name) else { return }
        try await provisioner.unstageVolume(UnstageVolumeRequest(volumeID: id, stagingPath: staging))
        // The host made the folder; it removes it once empty.
        _ = rmdir(staging)
    }

    func publish(_ id: String, _ name: String, at target: String, readOnly: Bool = false) async throws {
        let result = try await provisioner.publishVolume(PublishVolumeRequest(volumeID: id, targetPath: target, readOnly: readOnly, stagingPath: staging(name)))
        guard result.targetPath == target else { throw Failure("publish answered target \(result.targetPath), asked \(target)") }
    }

    func unpublish(_ id: String, at target: String) async throws {
        try await provisioner.unpublishVolume(UnpublishVolumeRequest(volumeID: id, targetPath: target))
    }

    // MARK: The checks

    func all() async {
        try? FileManager.default.createDirectory(at: options.scratch, withIntermediateDirectories: true)
        // A warm-up volume, created and deleted before the baseline is taken: files a plugin
        // keeps for itself whatever it holds (an index, a lock) are not leaks.
        if let warmup = try? await provisioner.createVolume(CreateVolumeRequest(name: "\(prefix)-warmup", sizeBytes: size, parameters: options.parameters)) {
            try? await provisioner.deleteVolume(DeleteVolumeRequest(volumeID: warmup.volumeID))
        }
        let before = Inventory.take(under: [options.scratch] + options.watchedFolders)
        let name = prefix
        var id: String?
        var createdSize = size

        await check("create", "create returns a volume of at least the size asked, and lists it") {
            let info = try await provisioner.createVolume(CreateVolumeRequest(name: name, sizeBytes: size, parameters: options.parameters))
            id = info.volumeID
            createdSize = info.sizeBytes
            guard info.sizeBytes >= size else { throw Failure("size \(info.sizeBytes) < asked \(size)") }
            guard try await provisioner.listVolumes().contains(where: { $0.volumeID == info.volumeID }) else { throw Failure("listVolumes does not include it") }
            return nil
        }
        guard let id else { return }
        await check("idempotent", "create again with the same arguments returns the same volume") {
            let again = try await provisioner.createVolume(CreateVolumeRequest(name: name, sizeBytes: size, parameters: options.parameters))
            guard again.volumeID == id else { throw Failure("got volume \(again.volumeID), the first create returned \(id)") }
            let listed = try await provisioner.listVolumes().filter { $0.name == name }
            guard listed.count == 1 else { throw Failure("listVolumes shows \(listed.count) volumes named \(name)") }
            return nil
        }
        await check("error-codes", "create of a taken name with another size is alreadyExists") {
            try await expectError([.alreadyExists], "create with size \(size * 2)") {
                _ = try await provisioner.createVolume(CreateVolumeRequest(name: name, sizeBytes: size * 2, parameters: options.parameters))
            }
            return nil
        }
        await check("error-codes", "bad arguments are invalidArgument") {
            try await expectError([.invalidArgument], "create with size 0") {
                _ = try await provisioner.createVolume(CreateVolumeRequest(name: "\(name)-zero", sizeBytes: 0, parameters: options.parameters))
            }
            try await expectError([.invalidArgument], "create named \"../escape\"") {
                _ = try await provisioner.createVolume(CreateVolumeRequest(name: "../escape", sizeBytes: size, parameters: options.parameters))
            }
            return nil
        }
        await check("error-codes", "calls on an unknown volume are notFound (delete and unpublish succeed)") {
            let missing = "\(name)-missing"
            try await expectError([.notFound], "publish of an unknown volume") {
                _ = try await provisioner.publishVolume(PublishVolumeRequest(volumeID: missing, targetPath: path("targets", "missing"), stagingPath: staging(missing)))
            }
            if capabilities.stageUnstage {
                try await expectError([.notFound], "stage of an unknown volume") {
                    try await provisioner.stageVolume(StageVolumeRequest(volumeID: missing, stagingPath: path("staging", "missing")))
                }
                _ = rmdir(path("staging", "missing"))
            }
            if capabilities.expansion {
                try await expectError([.notFound], "expand of an unknown volume") {
                    _ = try await provisioner.expandVolume(ExpandVolumeRequest(volumeID: missing, sizeBytes: size))
                }
            }
            try await provisioner.deleteVolume(DeleteVolumeRequest(volumeID: missing))
            try await provisioner.unpublishVolume(UnpublishVolumeRequest(volumeID: missing, targetPath: path("targets", "missing")))
            return nil
        }

        let targetA = path("targets", "a")
        let targetB = path("targets", "b")
        let targetR = path("targets", "read-only")
        var published = false
        await check("idempotent", "stage twice, publish twice at one target") {
            try await stage(id, name)
            try await stage(id, name)
            try await publish(id, name, at: targetA)
            try await publish(id, name, at: targetA)
            published = true
            return capabilities.stageUnstage ? nil : "no staging declared: stageVolume is not called"
        }
        guard published else { await cleanup(id: id, name: name, before: before); return }
        var firstSize: Int64 = 0
        await check("publish", "data written through one publish is read through another") {
            firstSize = Files.totalBytes(targetA)
            try Files.write("kept", to: targetA + "/probe")
            try await publish(id, name, at: targetB)
            guard try Files.read(targetB + "/probe") == "kept" else { throw Failure("\(targetB)/probe does not hold what was written through \(targetA)") }
            return nil
        }
        await check("read-only", "a read-only publish cannot be written") {
            do {
                try await publish(id, name, at: targetR, readOnly: true)
            } catch let error as PluginError where error.code == .failedPrecondition || error.code == .unimplemented {
                return "refused: \(error.message)"
            }
            guard try Files.read(targetR + "/probe") == "kept" else { throw Failure("the read-only publish does not show the volume's data") }
            if let errno = Files.writeErrno("changed", to: targetR + "/probe"), [EROFS, EACCES, EPERM].contains(errno) { return nil }
            throw Failure("wrote through the read-only publish at \(targetR)")
        }
        await check("size", capabilities.enforcesSize ? "writes past the size fail with ENOSPC" : "sizes accounted, not enforced (enforcesSize false)") {
            guard capabilities.enforcesSize else { return "not declared: skipped" }
            let (written, error) = Files.fill(targetA + "/fill", limit: size + (64 << 20))
            defer { unlink(targetA + "/fill") }
            guard error == ENOSPC || error == EDQUOT else {
                throw Failure("wrote \(written) bytes into a volume of \(size) and got \(error == 0 ? "no error" : String(cString: strerror(error))), not ENOSPC")
            }
            guard written <= createdSize else { throw Failure("wrote \(written) bytes into a volume of \(createdSize) before ENOSPC") }
            guard written >= size / 2 else { throw Failure("ENOSPC after only \(written) of \(size) bytes") }
            return "ENOSPC after \(written) of \(size) bytes"
        }
        await check("capabilities", capabilities.expansion ? "expand grows the volume (and its file system)" : "expansion not declared: expand is unimplemented") {
            guard capabilities.expansion else {
                try await expectError([.unimplemented], "expand (expansion not declared)") {
                    _ = try await provisioner.expandVolume(ExpandVolumeRequest(volumeID: id, sizeBytes: size * 2))
                }
                return nil
            }
            let seenBefore = Files.totalBytes(targetA)
            let grown = try await provisioner.expandVolume(ExpandVolumeRequest(volumeID: id, sizeBytes: size * 2))
            guard grown.sizeBytes >= size * 2 else { throw Failure("declares expansion, but expand to \(size * 2) answered size \(grown.sizeBytes)") }
            let listed = try await provisioner.listVolumes().first { $0.volumeID == id }?.sizeBytes ?? 0
            guard listed >= size * 2 else { throw Failure("declares expansion, but listVolumes still says \(listed) bytes after expand to \(size * 2)") }
            if capabilities.enforcesSize && capabilities.onlineExpansion {
                let seenAfter = Files.totalBytes(targetA)
                guard seenAfter > seenBefore else { throw Failure("declares online expansion, but the published file system still holds \(seenAfter) bytes (\(seenBefore) before)") }
            }
            return nil
        }
        if capabilities.expansion {
            await check("idempotent", "expand to the same or a smaller size is a no-op") {
                let same = try await provisioner.expandVolume(ExpandVolumeRequest(volumeID: id, sizeBytes: size * 2))
                let smaller = try await provisioner.expandVolume(ExpandVolumeRequest(volumeID: id, sizeBytes: size))
                guard same.sizeBytes == smaller.sizeBytes, same.sizeBytes >= size * 2 else { throw Failure("sizes \(same.sizeBytes), \(smaller.sizeBytes)") }
                return nil
            }
        }
        await snapshots(id: id, name: name)
        await check("idempotent", "unpublish twice") {
            for target in [targetA, targetB, targetR] {
                try await unpublish(id, at: target)
                try await unpublish(id, at: target)
                if FileManager.default.fileExists(atPath: target) { throw Failure("\(target) is still there after unpublish") }
            }
            return nil
        }
        await check("idempotent", "unstage twice") {
            guard let staging = staging(name) else { return "no staging declared" }
            try await provisioner.unstageVolume(UnstageVolumeRequest(volumeID: id, stagingPath: staging))
            try await provisioner.unstageVolume(UnstageVolumeRequest(volumeID: id, stagingPath: staging))
            _ = rmdir(staging)
            return nil
        }
        await check("publish", "data survives unpublish, unstage, and a new stage and publish") {
            try await stage(id, name)
            try await publish(id, name, at: targetA)
            let text = try Files.read(targetA + "/probe")
            let grownSize = Files.totalBytes(targetA)
            try await unpublish(id, at: targetA)
            try await unstage(id, name)
            guard text == "kept" else { throw Failure("the file written before reads \(text.debugDescription)") }
            if capabilities.expansion && capabilities.enforcesSize && grownSize <= firstSize {
                throw Failure("declares expansion, but after expand to \(size * 2) and a new stage the file system holds \(grownSize) bytes, as before (\(firstSize))")
            }
            return nil
        }
        await concurrency()
        await cleanup(id: id, name: name, before: before)
    }

    func snapshots(id: String, name: String) async {
        let snapshotName = "\(name)-snap"
        guard capabilities.snapshots else {
            await check("capabilities", "snapshots not declared: createSnapshot is unimplemented") {
                try await expectError([.unimplemented], "createSnapshot (snapshots not declared)") {
                    _ = try await provisioner.createSnapshot(CreateSnapshotRequest(name: snapshotName, sourceVolumeID: id))
                }
                return nil
            }
            return
        }
        await check("snapshots", capabilities.restoreFromSnapshot ? "a snapshot is idempotent and restores the data it saw" : "a snapshot is idempotent") {
            let snapshot = try await provisioner.createSnapshot(CreateSnapshotRequest(name: snapshotName, sourceVolumeID: id))
            let again = try await provisioner.createSnapshot(CreateSnapshotRequest(name: snapshotName, sourceVolumeID: id))
            do {
                guard again.snapshotID == snapshot.snapshotID else { throw Failure("second create returned \(again.snapshotID), first \(snapshot.snapshotID)") }
                try await expectError([.notFound], "snapshot of an unknown volume") {
                    _ = try await provisioner.createSnapshot(CreateSnapshotRequest(name: "\(snapshotName)-missing", sourceVolumeID: "\(name)-missing"))
                }
                if capabilities.restoreFromSnapshot {
                    try Files.write("after", to: path("targets", "a") + "/probe")
                    let restoredName = "\(name)-restored"
                    let restored = try await provisioner.createVolume(CreateVolumeRequest(name: restoredName, sizeBytes: max(snapshot.sizeBytes, size), parameters: options.parameters, sourceSnapshotID: snapshot.snapshotID))
                    let target = path("targets", "restored")
                    var text = ""
                    do {
                        try await stage(restored.volumeID, restoredName)
                        try await publish(restored.volumeID, restoredName, at: target)
                        text = (try? Files.read(target + "/probe")) ?? "(missing)"
                        try await unpublish(restored.volumeID, at: target)
                        try await unstage(restored.volumeID, restoredName)
                        try await provisioner.deleteVolume(DeleteVolumeRequest(volumeID: restored.volumeID))
                    } catch {
                        try? await unpublish(restored.volumeID, at: target)
                        try? await unstage(restored.volumeID, restoredName)
                        try? await provisioner.deleteVolume(DeleteVolumeRequest(volumeID: restored.volumeID))
                        throw error
                    }
                    try Files.write("kept", to: path("targets", "a") + "/probe")
                    guard text == "kept" else { throw Failure("the volume restored from the snapshot holds \(text.debugDescription), not the data at snapshot time (\"kept\")") }
                }
            } catch {
                try? await provisioner.deleteSnapshot(DeleteSnapshotRequest(snapshotID: snapshot.snapshotID))
                throw error
            }
            try await provisioner.deleteSnapshot(DeleteSnapshotRequest(snapshotID: snapshot.snapshotID))
            try await provisioner.deleteSnapshot(DeleteSnapshotRequest(snapshotID: snapshot.snapshotID))
            return nil
        }
    }

    func concurrency() async {
        await check("concurrency", "\(options.concurrency) volumes created, published, written and deleted at once") {
            let names = (0..<options.concurrency).map { "\(prefix)-c\($0)" }
            let results = await withTaskGroup(of: String?.self) { group in
                for other in names {
                    group.addTask {
                        let target = path("targets", other)
                        var created: String?
                        do {
                            let info = try await provisioner.createVolume(CreateVolumeRequest(name: other, sizeBytes: size, parameters: options.parameters))
                            created = info.volumeID
                            try await stage(info.volumeID, other)
                            try await publish(info.volumeID, other, at: target)
                            try Files.write(other, to: target + "/owner")
                            try await Task.sleep(for: .milliseconds(20))
                            let text = try Files.read(target + "/owner")
                            try await unpublish(info.volumeID, at: target)
                            try await unstage(info.volumeID, other)
                            try await provisioner.deleteVolume(DeleteVolumeRequest(volumeID: info.volumeID))
                            return text == other ? nil : "\(other) reads \(text.debugDescription): crosstalk"
                        } catch {
                            if let created {
                                try? await unpublish(created, at: target)
                                try? await unstage(created, other)
                                try? await provisioner.deleteVolume(DeleteVolumeRequest(volumeID: created))
                            }
                            return "\(other): \(describe(error))"
                        }
                    }
                }
                var problems: [String] = []
                for await result in group { if let result { problems.append(result) } }
                return problems
            }
            guard results.isEmpty else { throw Failure(results.sorted().joined(separator: "; ")) }
            return nil
        }
    }

    func cleanup(id: String, name: String, before: Inventory) async {
        // Whatever a failed check left published or staged, so that delete can run.
        for target in ["a", "b", "read-only", "restored"] { try? await unpublish(id, at: path("targets", target)) }
        try? await unstage(id, name)
        await check("idempotent", "delete twice; the volume is no longer listed") {
            try await provisioner.deleteVolume(DeleteVolumeRequest(volumeID: id))
            try await provisioner.deleteVolume(DeleteVolumeRequest(volumeID: id))
            if try await provisioner.listVolumes().contains(where: { $0.volumeID == id }) { throw Failure("still listed after delete") }
            return nil
        }
        // The host's own folders, empty once everything is unpublished and unstaged.
        for folder in ["targets", "staging"] { _ = rmdir(path(folder)) }
        await check("cleanup", "nothing left behind: files, mounts, loop devices") {
            let after = Inventory.take(under: [options.scratch] + options.watchedFolders)
            let leaks = after.difference(from: before)
            guard leaks.isEmpty else { throw Failure("left behind: \(leaks.prefix(8).joined(separator: ", "))\(leaks.count > 8 ? " and \(leaks.count - 8) more" : "")") }
            return options.watchedFolders.isEmpty ? "no watchedFolders given: only the scratch folder, mounts and loop devices were checked, not the plugin's own files" : nil
        }
    }
}

/// What exists under some folders: files (recursively), mounts and loop devices.
struct Inventory: Sendable {
    var files: Set<String>
    var mounts: Set<String>
    var loops: Set<String>

    static func take(under folders: [URL]) -> Inventory {
        // Resolved, as the kernel reports mounts and loop devices' backing files.
        let roots = folders.map { folder -> String in
            let path = folder.standardizedFileURL.path
            guard let resolved = realpath(path, nil) else { return path }
            defer { free(resolved) }
            return String(cString: resolved)
        }
        func inside(_ path: String) -> Bool { roots.contains { path == $0 || path.hasPrefix($0 + "/") } }
        var files = Set<String>()
        var mountPoints = Set<String>()
        if let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) {
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: " ")
                if fields.count > 4, inside(String(fields[4])) { mountPoints.insert(String(fields[4])) }
            }
        }
        for root in roots {
            guard let walker = FileManager.default.enumerator(atPath: root) else { continue }
            while let relative = walker.nextObject() as? String {
                let full = root + "/" + relative
                files.insert(full)
                // Never walk into a mounted volume: its contents are the volume's, not leaks.
                if mountPoints.contains(full) { walker.skipDescendants() }
            }
        }
        var loops = Set<String>()
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? [] where name.hasPrefix("loop") {
            guard let backing = try? String(contentsOfFile: "/sys/block/\(name)/loop/backing_file", encoding: .utf8) else { continue }
            let path = backing.trimmingCharacters(in: .newlines)
            if inside(path.hasSuffix(" (deleted)") ? String(path.dropLast(10)) : path) { loops.insert("/dev/\(name) (\(path))") }
        }
        return Inventory(files: files, mounts: mountPoints, loops: loops)
    }

    func difference(from before: Inventory) -> [String] {
        files.subtracting(before.files).sorted().map { "file \($0)" }
            + mounts.subtracting(before.mounts).sorted().map { "mount \($0)" }
            + loops.subtracting(before.loops).sorted().map { "loop device \($0)" }
    }
}

/// File helpers with plain errno answers.
enum Files {
    static func write(_ text: String, to path: String) throws {
        if let error = writeErrno(text, to: path) { throw Failure("cannot write \(path): \(String(cString: strerror(error)))") }
    }

    /// Nil on success, else errno.
    static func writeErrno(_ text: String, to path: String) -> Int32? {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        guard written == bytes.count else { return errno }
        return fsync(fd) == 0 ? nil : errno
    }

    static func read(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure("cannot read \(path)") }
        return String(decoding: data, as: UTF8.self)
    }

    /// Writes 1 MiB blocks until an error or `limit` bytes; returns the bytes written and errno
    /// (0 when the limit was reached).
    static func fill(_ path: String, limit: Int64) -> (Int64, Int32) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return (0, errno) }
        defer { close(fd) }
        let block = [UInt8](repeating: 0x5A, count: 1 << 20)
        var total: Int64 = 0
        while total < limit {
            let written = block.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 { return (total, errno) }
            total += Int64(written)
            if written < block.count { continue }
        }
        return fsync(fd) == 0 ? (total, 0) : (total, errno)
    }

    /// The size of the file system at `path` (statvfs).
    static func totalBytes(_ path: String) -> Int64 {
        var stats = statvfs()
        guard statvfs(path, &stats) == 0 else { return 0 }
        return Int64(stats.f_blocks) * Int64(stats.f_frsize)
    }
}
