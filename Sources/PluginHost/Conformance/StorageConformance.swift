import CapstanSDK
import Foundation

/// The storage conformance kit: runs the contract of ``StorageProvisioner`` against a real
/// provisioner (idempotency, typed errors, publish/unpublish, expansion and snapshots when
/// offered). Vendors run it with `capstan conformance storage --plugin their.so`.
public enum StorageConformance {
    /// One check and its outcome.
    public struct Check: Sendable, Hashable, Codable {
        public var name: String
        public var passed: Bool
        /// What went wrong, or what was skipped and why.
        public var detail: String?
    }

    /// Runs every check. Uses volume names prefixed `conformance-`, and a scratch folder for
    /// publish targets; cleans up what it created.
    public static func run(_ provisioner: any StorageProvisioner, scratch: URL) async -> [Check] {
        var checks: [Check] = []
        func check(_ name: String, _ body: () async throws -> String?) async {
            do {
                let problem = try await body()
                checks.append(Check(name: name, passed: problem == nil, detail: problem))
            } catch {
                checks.append(Check(name: name, passed: false, detail: "threw \(error)"))
            }
        }
        func expectError(_ code: PluginError.Code, _ body: () async throws -> Void) async -> String? {
            do {
                try await body()
                return "succeeded; expected PluginError.\(code)"
            } catch let error as PluginError {
                return error.code == code ? nil : "threw \(error.code) (\(error.message)); expected \(code)"
            } catch {
                return "threw \(error); expected PluginError.\(code)"
            }
        }
        let capabilities = provisioner.capabilities
        let name = "conformance-\(UUID().uuidString.prefix(8).lowercased())"
        let size: Int64 = 1 << 20
        var volumeID = ""
        let target = scratch.appendingPathComponent("target-\(name)").path

        await check("create returns the volume") {
            let info = try await provisioner.createVolume(CreateVolumeRequest(name: name, sizeBytes: size))
            volumeID = info.volumeID
            return info.sizeBytes >= size ? nil : "size \(info.sizeBytes) < requested \(size)"
        }
        guard !volumeID.isEmpty else { return checks }
        await check("create again with the same parameters returns the same volume") {
            let again = try await provisioner.createVolume(CreateVolumeRequest(name: name, sizeBytes: size))
            return again.volumeID == volumeID ? nil : "got \(again.volumeID), expected \(volumeID)"
        }
        await check("create again with another size is alreadyExists") {
            await expectError(.alreadyExists) { _ = try await provisioner.createVolume(CreateVolumeRequest(name: name, sizeBytes: size * 2)) }
        }
        await check("list includes the volume") {
            try await provisioner.listVolumes().contains { $0.volumeID == volumeID } ? nil : "not listed"
        }
        await check("capacity is consistent") {
            let capacity = try await provisioner.capacity()
            return capacity.availableBytes >= 0 && capacity.availableBytes <= capacity.totalBytes ? nil : "available \(capacity.availableBytes) of total \(capacity.totalBytes)"
        }
        await check("publish makes the data appear at the target, twice is fine") {
            _ = try await provisioner.publishVolume(PublishVolumeRequest(volumeID: volumeID, targetPath: target))
            _ = try await provisioner.publishVolume(PublishVolumeRequest(volumeID: volumeID, targetPath: target))
            try Data("kept".utf8).write(to: URL(fileURLWithPath: target).appendingPathComponent("probe"))
            return FileManager.default.fileExists(atPath: target + "/probe") ? nil : "written file not visible"
        }
        await check("unpublish removes the target, twice is fine") {
            try await provisioner.unpublishVolume(UnpublishVolumeRequest(volumeID: volumeID, targetPath: target))
            try await provisioner.unpublishVolume(UnpublishVolumeRequest(volumeID: volumeID, targetPath: target))
            return FileManager.default.fileExists(atPath: target) ? "target still there" : nil
        }
        await check("data survives unpublish and a new publish") {
            _ = try await provisioner.publishVolume(PublishVolumeRequest(volumeID: volumeID, targetPath: target))
            let data = FileManager.default.contents(atPath: target + "/probe")
            try await provisioner.unpublishVolume(UnpublishVolumeRequest(volumeID: volumeID, targetPath: target))
            return data == Data("kept".utf8) ? nil : "the file written before is gone"
        }
        if capabilities.expansion {
            await check("expand grows; a smaller size is a no-op") {
                let grown = try await provisioner.expandVolume(ExpandVolumeRequest(volumeID: volumeID, sizeBytes: size * 4))
                let same = try await provisioner.expandVolume(ExpandVolumeRequest(volumeID: volumeID, sizeBytes: size))
                return grown.sizeBytes >= size * 4 && same.sizeBytes == grown.sizeBytes ? nil : "sizes \(grown.sizeBytes), \(same.sizeBytes)"
            }
        }
        if capabilities.snapshots {
            await check("snapshot is idempotent and deletable twice") {
                let snapshot = try await provisioner.createSnapshot(CreateSnapshotRequest(name: "\(name)-snap", sourceVolumeID: volumeID))
                let again = try await provisioner.createSnapshot(CreateSnapshotRequest(name: "\(name)-snap", sourceVolumeID: volumeID))
                try await provisioner.deleteSnapshot(DeleteSnapshotRequest(snapshotID: snapshot.snapshotID))
                try await provisioner.deleteSnapshot(DeleteSnapshotRequest(snapshotID: snapshot.snapshotID))
                return again.snapshotID == snapshot.snapshotID ? nil : "second create returned \(again.snapshotID)"
            }
        } else {
            await check("snapshots not offered: calls say unimplemented") {
                await expectError(.unimplemented) { _ = try await provisioner.createSnapshot(CreateSnapshotRequest(name: "\(name)-snap", sourceVolumeID: volumeID)) }
            }
        }
        await check("calls on an unknown volume are notFound") {
            await expectError(.notFound) { _ = try await provisioner.publishVolume(PublishVolumeRequest(volumeID: "conformance-missing", targetPath: target + "-missing")) }
        }
        await check("concurrent creates of different volumes all succeed") {
            let names = (0..<4).map { "\(name)-c\($0)" }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for other in names { group.addTask { _ = try await provisioner.createVolume(CreateVolumeRequest(name: other, sizeBytes: size)) } }
                try await group.waitForAll()
            }
            let listed = Set(try await provisioner.listVolumes().map(\.name))
            for other in try await provisioner.listVolumes() where names.contains(other.name) {
                try await provisioner.deleteVolume(DeleteVolumeRequest(volumeID: other.volumeID))
            }
            return names.allSatisfy(listed.contains) ? nil : "not all listed"
        }
        await check("delete removes the volume, twice is fine") {
            try await provisioner.deleteVolume(DeleteVolumeRequest(volumeID: volumeID))
            try await provisioner.deleteVolume(DeleteVolumeRequest(volumeID: volumeID))
            return try await provisioner.listVolumes().contains { $0.volumeID == volumeID } ? "still listed" : nil
        }
        return checks
    }
}
