import CapstanCore
import CapstanStore
import Foundation

/// The storage rules a write must keep, checked before anything is stored (each refusal names
/// the field and what to do):
/// - a claim never shrinks; it grows only when its StorageClass says `allowVolumeExpansion`;
/// - a claim is at most its class's `maxSize`;
/// - a bound claim keeps its class and access modes;
/// - a Volume a living claim is bound to is not deleted out from under it.
enum StorageAdmission {
    typealias Lookup = @Sendable (_ kind: String, _ name: String) async throws -> AnyResource?

    static func check(_ object: AnyResource, stored: AnyResource?, lookup: Lookup) async throws {
        guard case .volumeClaim(let claim) = object else { return }
        func invalid(_ field: String, _ message: String) -> APIFailure {
            APIFailure(.unprocessableContent, "Invalid", "VolumeClaim \"\(claim.metadata.name)\": \(field) \(message)",
                       problems: [ValidationProblem(path: field, message: message)])
        }
        var storageClass: StorageClass?
        if let name = claim.spec.storageClassName, case .storageClass(let found)? = try await lookup("StorageClass", name) {
            storageClass = found
        }
        if stored == nil, claim.spec.dataSource != nil, claim.spec.volumeName != nil {
            throw invalid("spec.dataSource", "a claim that names a volume (spec.volumeName) takes its data as it is; leave one of them out")
        }
        if let source = claim.spec.dataSource, case .volumeSnapshot(let snapshot)? = try await lookup("VolumeSnapshot", source.name),
           let restoreSize = snapshot.status.restoreSize, claim.spec.size.value < restoreSize.value {
            throw invalid("spec.size", "\(claim.spec.size) is smaller than VolumeSnapshot \"\(source.name)\" (\(restoreSize)); ask for at least that")
        }
        if let maxSize = storageClass?.spec.maxSize, claim.spec.size.value > maxSize.value {
            throw invalid("spec.size", "\(claim.spec.size) is more than StorageClass \"\(storageClass!.metadata.name)\" allows (maxSize \(maxSize)); ask for less or use another class")
        }
        guard case .volumeClaim(let current)? = stored else { return }
        if claim.spec.size.value < current.spec.size.value {
            throw invalid("spec.size", "cannot shrink from \(current.spec.size) to \(claim.spec.size): volumes only grow. Copy the data to a new, smaller claim instead")
        }
        guard current.spec.volumeName != nil else { return }
        if claim.spec.storageClassName != current.spec.storageClassName {
            throw invalid("spec.storageClassName", "cannot change on a bound claim (it is \(current.spec.storageClassName ?? "unset")); create a new claim")
        }
        if claim.spec.dataSource != current.spec.dataSource {
            throw invalid("spec.dataSource", "cannot change on a bound claim; create a new claim")
        }
        if claim.spec.effectiveAccessModes != current.spec.effectiveAccessModes {
            throw invalid("spec.accessModes", "cannot change on a bound claim; create a new claim")
        }
        if claim.spec.size.value > current.spec.size.value {
            guard let storageClass else {
                throw invalid("spec.size", "can grow only for a claim of a StorageClass with allowVolumeExpansion: true; this claim names no class")
            }
            guard storageClass.spec.expansionAllowed else {
                throw invalid("spec.size", "cannot grow: StorageClass \"\(storageClass.metadata.name)\" does not allow volume expansion (allowVolumeExpansion: true)")
            }
        }
    }

    /// Nil when the Volume may be deleted at once; otherwise the refusal. `pending` is true when
    /// its node's agent must delete the data first (reclaim policy Delete).
    static func volumeDeletion(_ volume: Volume, claims: [AnyResource]) -> APIFailure? {
        for case .volumeClaim(let claim) in claims where claim.spec.volumeName == volume.metadata.name && volume.spec.claim == claim.metadata.name {
            return APIFailure(.conflict, "Conflict", "Volume \"\(volume.metadata.name)\" is bound to VolumeClaim \"\(claim.metadata.name)\"; delete the claim (the reclaim policy \(volume.spec.effectiveReclaimPolicy.rawValue) then applies), or delete with --force to drop the object and keep the data")
        }
        return nil
    }
}
