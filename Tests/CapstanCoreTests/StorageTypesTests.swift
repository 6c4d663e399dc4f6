import CapstanCore
import Foundation
import Testing

/// The storage kinds of SDK 1.5 as documents: defaults, round trips, and every bad field named.
@Suite struct StorageTypesTests {
    func decode(_ json: String) throws -> AnyResource {
        try JSONDecoder().decode(AnyResource.self, from: Data(json.utf8))
    }

    @Test func aStorageClassHasKubernetesDefaults() throws {
        guard case .storageClass(let storageClass) = try decode(#"{"kind":"StorageClass","metadata":{"name":"fast"},"spec":{"provisioner":"loopback"}}"#) else {
            Issue.record("not a StorageClass"); return
        }
        #expect(storageClass.spec.effectiveReclaimPolicy == .delete)
        #expect(storageClass.spec.effectiveBindingMode == .waitForFirstConsumer)
        #expect(!storageClass.spec.expansionAllowed)
        #expect(storageClass.validate().isEmpty)
        let again = try decode(String(decoding: try JSONEncoder().encode(AnyResource.storageClass(storageClass)), as: UTF8.self))
        #expect(again == .storageClass(storageClass))
    }

    @Test func badStorageFieldsAreNamed() throws {
        #expect(throws: (any Error).self) { try decode(#"{"kind":"StorageClass","metadata":{"name":"x"},"spec":{"provisioner":"p","reclaimPolicy":"Recycle"}}"#) }
        #expect(throws: (any Error).self) { try decode(#"{"kind":"VolumeClaim","metadata":{"name":"x"},"spec":{"size":"1Gi","accessModes":["ReadWriteSometimes"]}}"#) }
        #expect(throws: (any Error).self) { try decode(#"{"kind":"VolumeClaim","metadata":{"name":"x"},"spec":{"size":"1Gi","storageClas":"typo"}}"#) }
        let classProblems = AnyResource.storageClass(StorageClass(name: "x", spec: StorageClassSpec(provisioner: "Bad Name", parameters: ["": "v"], maxSize: Quantity(value: 0)))).validate().map(\.path)
        #expect(classProblems.contains("spec.provisioner") && classProblems.contains("spec.parameters.") && classProblems.contains("spec.maxSize"), "\(classProblems)")
        var claim = VolumeClaimSpec(size: try Quantity(parsing: "1Gi"))
        claim.accessModes = [.readWriteOnce, .readWriteOnce]
        claim.storageClassName = "Not_A_Label"
        let claimProblems = AnyResource.volumeClaim(VolumeClaim(name: "c", spec: claim)).validate().map(\.path)
        #expect(claimProblems.contains("spec.accessModes") && claimProblems.contains("spec.storageClassName"), "\(claimProblems)")
    }

    @Test func volumesMadeBeforeSDK15KeepTheirData() throws {
        // No reclaimPolicy, accessModes or status: Retain, ReadWriteOnce, no phase.
        guard case .volume(let volume) = try decode(#"{"kind":"Volume","metadata":{"name":"v"},"spec":{"provisioner":"hostpath","volumeHandle":"v","capacity":"1Gi","nodeName":"n","claim":"c"},"status":{}}"#) else {
            Issue.record("not a Volume"); return
        }
        #expect(volume.spec.effectiveReclaimPolicy == .retain)
        #expect(volume.spec.effectiveAccessModes == [.readWriteOnce])
        #expect(volume.spec.controllerNode == "n")
        #expect(volume.status.phase == nil)
    }

    @Test func pluginReportedSizesAreClampedNotTrapped() {
        #expect(VolumeSize.quantity(bytes: .max).value == VolumeSize.maxBytes)
        #expect(VolumeSize.quantity(bytes: -5).value == 0)
        #expect("\(VolumeSize.quantity(bytes: 64 << 20))" == "64Mi")
    }
}
