import CapstanCore
import CapstanStore
import Foundation
import Testing
@testable import CapstanServer

/// The control-plane half of the volume lifecycle, without a server: the volume controller's
/// plan (phases, conditions, releases, expansion, Immediate binding), the storage admission
/// rules, and who may write what.
@Suite struct VolumeControlPlaneTests {
    func claim(_ name: String, size: String = "1Gi", className: String? = "fast", volume: String? = nil, modes: [VolumeAccessMode]? = nil) throws -> VolumeClaim {
        var spec = VolumeClaimSpec(size: try Quantity(parsing: size), volumeName: volume)
        spec.storageClassName = className
        spec.accessModes = modes
        return VolumeClaim(name: name, spec: spec)
    }

    func volume(_ name: String, claim: String?, size: String = "1Gi", policy: ReclaimPolicy = .delete, node: String = "n1") throws -> Volume {
        var spec = VolumeSpec(provisioner: "loopback", volumeHandle: name, capacity: try Quantity(parsing: size), nodeName: node, claim: claim)
        spec.reclaimPolicy = policy
        spec.provisionedOn = node
        return Volume(name: name, spec: spec, status: VolumeStatus(phase: .bound, capacity: try Quantity(parsing: size)))
    }

    func storageClass(_ name: String, binding: VolumeBindingMode = .waitForFirstConsumer, expansion: Bool = true, maxSize: String? = nil) throws -> StorageClass {
        StorageClass(name: name, spec: StorageClassSpec(provisioner: "loopback", allowVolumeExpansion: expansion, volumeBindingMode: binding, maxSize: try maxSize.map { try Quantity(parsing: $0) }))
    }

    func node(_ name: String, ready: Bool = true, storage: [String] = ["loopback"]) -> Node {
        var node = Node(name: name, spec: NodeSpec())
        node.status.ready = ready
        node.status.plugins = storage.map { NodePlugin(name: $0, kind: "storage", library: "lib\($0).so", isDefault: false) }
        return node
    }

    func written(_ writes: [VolumeController.Write]) -> (claims: [String: VolumeClaim], volumes: [String: Volume]) {
        var claims: [String: VolumeClaim] = [:]
        var volumes: [String: Volume] = [:]
        for write in writes {
            switch write.object {
            case .volumeClaim(let claim): claims[claim.metadata.name] = claim
            case .volume(let volume): volumes[volume.metadata.name] = volume
            case .volumeSnapshot: break
            default: Issue.record("unexpected write of \(write.object.kind)")
            }
        }
        return (claims, volumes)
    }

    @Test func claimsGetPhasesAndConditionsThatSayWhy() throws {
        let classes = ["fast": try storageClass("fast")]
        let writes = VolumeController.plan(claims: [try claim("waiting"), try claim("orphan", className: "missing"), try claim("bound", volume: "v1"), try claim("lost", volume: "gone")],
                                           volumes: [try volume("v1", claim: "bound")], classes: classes)
        let (claims, _) = written(writes)
        #expect(claims["waiting"]?.status.phase == .pending)
        #expect(claims["waiting"]?.status.conditions.first?.reason == "WaitingForFirstConsumer")
        #expect(claims["orphan"]?.status.phase == .pending)
        #expect(claims["orphan"]?.status.conditions.first?.reason == "ClassNotFound")
        #expect(claims["orphan"]?.status.conditions.first?.message.contains("\"missing\"") == true)
        #expect(claims["bound"]?.status.phase == .bound)
        #expect(claims["bound"]?.status.capacity == (try Quantity(parsing: "1Gi")))
        #expect(claims["lost"]?.status.phase == .lost)
        #expect(claims["lost"]?.status.conditions.first?.reason == "VolumeLost")
        // The warnings come with Events; the normal state does not.
        #expect(writes.contains { $0.event?.reason == "ClassNotFound" && $0.event?.warning == true })
        #expect(!writes.contains { $0.event?.reason == "WaitingForFirstConsumer" })
    }

    @Test func aSettledStateWritesNothing() throws {
        let classes = ["fast": try storageClass("fast")]
        let first = VolumeController.plan(claims: [try claim("bound", volume: "v1")], volumes: [try volume("v1", claim: "bound")], classes: classes, now: 100)
        let (claims, _) = written(first)
        let again = VolumeController.plan(claims: Array(claims.values), volumes: [try volume("v1", claim: "bound")], classes: classes, now: 200)
        #expect(again.isEmpty, "\(again.map(\.object.name))")
    }

    @Test func aDeletedClaimReleasesItsVolumeByItsPolicy() throws {
        let writes = VolumeController.plan(claims: [], volumes: [try volume("kept", claim: "a", policy: .retain), try volume("doomed", claim: "b", policy: .delete)], classes: [:], now: 1000)
        let (_, volumes) = written(writes)
        #expect(volumes["kept"]?.status.phase == .released)
        #expect(volumes["kept"]?.metadata.deletionTimestamp == nil)
        #expect(volumes["doomed"]?.status.phase == .released)
        #expect(volumes["doomed"]?.metadata.deletionTimestamp?.secondsSinceEpoch == 1000)
        #expect(writes.contains { $0.event?.reason == "Releasing" && $0.event?.message.contains("node n1 deletes") == true })
    }

    @Test func aNewClaimNamingAReleasedVolumeTakesItOverButNeverAnotherClaimsVolume() throws {
        var released = try volume("old", claim: "gone", policy: .retain)
        released.status.phase = .released
        let writes = VolumeController.plan(claims: [try claim("again", volume: "old"), try claim("thief", volume: "taken"), try claim("owner", volume: "taken")],
                                           volumes: [released, try volume("taken", claim: "owner")], classes: ["fast": try storageClass("fast")])
        let (claims, volumes) = written(writes)
        #expect(volumes["old"]?.spec.claim == "again")
        #expect(volumes["old"]?.status.phase == .bound)
        #expect(claims["again"]?.status.phase == .bound)
        #expect(volumes["taken"] == nil)
        #expect(claims["thief"]?.status.phase == .pending)
        #expect(claims["thief"]?.status.conditions.first?.reason == "VolumeBoundElsewhere")
    }

    @Test func aRaisedClaimRaisesItsVolumesCapacity() throws {
        let writes = VolumeController.plan(claims: [try claim("data", size: "2Gi", volume: "v1")], volumes: [try volume("v1", claim: "data", size: "1Gi")], classes: ["fast": try storageClass("fast")])
        let (claims, volumes) = written(writes)
        #expect(volumes["v1"]?.spec.capacity == (try Quantity(parsing: "2Gi")))
        // Until the agent reports the new size, the claim shows what the volume holds.
        #expect(claims["data"]?.status.capacity == (try Quantity(parsing: "1Gi")))
    }

    @Test func immediateClaimsGoToAReadyNodeThatRunsTheProvisioner() throws {
        let classes = ["now": try storageClass("now", binding: .immediate)]
        let nodes = [node("a", ready: false), node("b", storage: ["hostpath"]), node("c"), node("d")]
        let writes = VolumeController.plan(claims: [try claim("data", className: "now")], volumes: [], classes: classes, nodes: nodes)
        let (claims, _) = written(writes)
        #expect(claims["data"]?.metadata.annotations[VolumeController.selectedNode] == "c")
        let none = VolumeController.plan(claims: [try claim("data", className: "now")], volumes: [], classes: classes, nodes: [node("b", storage: ["hostpath"])])
        #expect(written(none).claims["data"]?.status.conditions.first?.reason == "NoNodeForProvisioner")
    }

    @Test func snapshotsGoToTheNodeOfTheirVolumeAndRestoresFollowThem() throws {
        let classes = ["now": try storageClass("now", binding: .immediate)]
        let snapshot = VolumeSnapshot(name: "s1", spec: VolumeSnapshotSpec(source: "data"))
        let orphan = VolumeSnapshot(name: "s2", spec: VolumeSnapshotSpec(source: "nobody"))
        let writes = VolumeController.plan(claims: [try claim("data", className: "now", volume: "v1")], volumes: [try volume("v1", claim: "data", node: "n7")],
                                           classes: classes, snapshots: [snapshot, orphan])
        var snapshots: [String: VolumeSnapshot] = [:]
        for write in writes { if case .volumeSnapshot(let s) = write.object { snapshots[s.metadata.name] = s } }
        #expect(snapshots["s1"]?.status.nodeName == "n7" && snapshots["s1"]?.status.volumeName == "v1" && snapshots["s1"]?.status.provisioner == "loopback")
        #expect(snapshots["s2"]?.status.conditions.first?.reason == "SourceNotBound")
        // A failure the agent reported stands: the controller does not write over it.
        var failed = try #require(snapshots["s1"])
        failed.status.conditions.set(Condition(type: "Ready", status: false, reason: "SnapshotFailed", message: "disk on fire"))
        let again = VolumeController.plan(claims: [try claim("data", className: "now", volume: "v1")], volumes: [try volume("v1", claim: "data", node: "n7")], classes: classes, snapshots: [failed])
        #expect(!again.contains { if case .volumeSnapshot = $0.object { true } else { false } })
        // A claim restoring a ready snapshot, Immediate: provisioned on the snapshot's node.
        var ready = failed
        ready.status.readyToUse = true
        ready.status.snapshotHandle = "h"
        var restore = try claim("copy", className: "now")
        restore.spec.dataSource = VolumeClaimDataSource(name: "s1")
        var missing = try claim("lost-copy", className: "now")
        missing.spec.dataSource = VolumeClaimDataSource(name: "nope")
        let restored = written(VolumeController.plan(claims: [restore, missing], volumes: [], classes: classes, nodes: [node("a")], snapshots: [ready])).claims
        #expect(restored["copy"]?.metadata.annotations[VolumeController.selectedNode] == "n7")
        #expect(restored["lost-copy"]?.status.conditions.first?.reason == "SnapshotNotFound")
    }

    // MARK: Admission

    func lookup(_ classes: [StorageClass]) -> StorageAdmission.Lookup {
        let byName = Dictionary(uniqueKeysWithValues: classes.map { ($0.metadata.name, AnyResource.storageClass($0)) })
        return { kind, name in kind == "StorageClass" ? byName[name] : nil }
    }

    @Test func admissionRefusesShrinkingGrowthWithoutExpansionAndSizesOverTheLimit() async throws {
        let classes = lookup([try storageClass("fast", maxSize: "4Gi"), try storageClass("fixed", expansion: false)])
        let bound = AnyResource.volumeClaim(try claim("d", size: "2Gi", volume: "v1"))
        await #expect(throws: APIFailure.self) { try await StorageAdmission.check(.volumeClaim(try claim("d", size: "1Gi", volume: "v1")), stored: bound, lookup: classes) }
        await #expect(throws: APIFailure.self) { try await StorageAdmission.check(.volumeClaim(try claim("d", size: "8Gi", volume: "v1")), stored: bound, lookup: classes) }
        await #expect(throws: APIFailure.self) { try await StorageAdmission.check(.volumeClaim(try claim("n", size: "8Gi")), stored: nil, lookup: classes) }
        try await StorageAdmission.check(.volumeClaim(try claim("d", size: "3Gi", volume: "v1")), stored: bound, lookup: classes)
        let fixed = AnyResource.volumeClaim(try claim("f", size: "1Gi", className: "fixed", volume: "v2"))
        do {
            try await StorageAdmission.check(.volumeClaim(try claim("f", size: "2Gi", className: "fixed", volume: "v2")), stored: fixed, lookup: classes)
            Issue.record("growth without allowVolumeExpansion was admitted")
        } catch let failure as APIFailure {
            #expect(failure.body.message.contains("allowVolumeExpansion") && failure.body.message.contains("spec.size"))
        }
        do {
            try await StorageAdmission.check(.volumeClaim(try claim("d", size: "2Gi", className: "other", volume: "v1")), stored: bound, lookup: classes)
            Issue.record("a bound claim changed class")
        } catch let failure as APIFailure {
            #expect(failure.body.message.contains("spec.storageClassName"))
        }
    }

    @Test func aVolumeHeldByALivingClaimIsNotDeletedOutFromUnderIt() throws {
        let held = try volume("v1", claim: "data")
        #expect(StorageAdmission.volumeDeletion(held, claims: [.volumeClaim(try claim("data", volume: "v1"))]) != nil)
        #expect(StorageAdmission.volumeDeletion(held, claims: []) == nil)
    }

    // MARK: Who writes what

    @Test func nodesWriteTheStatusOfTheirOwnVolumesOnly() throws {
        let node = Principal(role: .node, node: "n1", tokenID: "n")
        let mine = AnyResource.volume(try volume("v1", claim: nil, node: "n1"))
        let theirs = AnyResource.volume(try volume("v2", claim: nil, node: "n2"))
        #expect(Authorizer.denial(node, .updateStatus, kind: "Volume", name: "v1", object: mine, stored: mine) == nil)
        #expect(Authorizer.denial(node, .updateStatus, kind: "Volume", name: "v2", object: theirs, stored: theirs) != nil)
        #expect(Authorizer.denial(node, .update, kind: "Volume", name: "v1", object: mine, stored: mine) != nil)
        #expect(Authorizer.denial(node, .read, kind: "StorageClass", name: nil) == nil)
        #expect(Authorizer.denial(node, .create, kind: "StorageClass", name: "x") != nil)
    }

    @Test func clientsCannotWriteClaimOrVolumeStatus() throws {
        let admin = Principal(role: .admin, tokenID: "a")
        var stored = try claim("data", volume: "v1")
        stored.status = VolumeClaimStatus(phase: .bound, capacity: try Quantity(parsing: "1Gi"))
        var sent = stored
        sent.status = VolumeClaimStatus(phase: .lost)
        guard case .volumeClaim(let kept) = try SystemFields.clientWrite(.volumeClaim(sent), stored: .volumeClaim(stored), by: admin) else { Issue.record("not a claim"); return }
        #expect(kept.status.phase == .bound)
        guard case .volumeClaim(let created) = try SystemFields.clientWrite(.volumeClaim(sent), stored: nil, by: admin) else { Issue.record("not a claim"); return }
        #expect(created.status.phase == .pending)
    }

    @Test func storageClassesFromTheConfigAreKeptAsWrittenThere() async throws {
        let path = NSTemporaryDirectory() + "capstan-classes-\(UUID().uuidString.prefix(8)).db"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let store = try ResourceStore(path: path, bus: EventBus())
        // An operator's own class of a name the config also uses is left alone.
        _ = try store.create(.storageClass(try storageClass("mine")))
        try await ControlPlane.keepConfiguredStorageClasses(["fast": StorageClassSpec(provisioner: "loopback"), "mine": StorageClassSpec(provisioner: "hostpath")], in: StoreWriter(store: store))
        guard case .storageClass(let fast)? = try store.get(kind: "StorageClass", name: "fast"),
              case .storageClass(let mine)? = try store.get(kind: "StorageClass", name: "mine") else { Issue.record("classes missing"); return }
        #expect(fast.metadata.owner == "Config" && fast.spec.provisioner == "loopback")
        #expect(mine.metadata.owner == nil && mine.spec.provisioner == "loopback")
        // Changed in the config: updated; gone from it: removed.
        try await ControlPlane.keepConfiguredStorageClasses(["slow": StorageClassSpec(provisioner: "hostpath")], in: StoreWriter(store: store))
        #expect(try store.get(kind: "StorageClass", name: "fast") == nil)
        #expect(try store.get(kind: "StorageClass", name: "slow") != nil)
        #expect(try store.get(kind: "StorageClass", name: "mine") != nil)
    }
}
