import CapstanAPI
import CapstanCore
import CapstanStore
import Foundation
import Testing
@testable import CapstanServer

/// The workload controller's decisions (`WorkloadController.plan`), without a store: names,
/// scaling, rolling updates within maxSurge/maxUnavailable, cascading deletes, status.
@Suite struct WorkloadControllerTests {
    func workload(replicas: Int, command: String = "v1", surge: Int = 1, unavailable: Int = 0) -> Workload {
        var workload = Workload(name: "web", spec: WorkloadSpec(replicas: replicas, template: InstanceTemplate(command: ["sh", "-c", command]),
                                                                strategy: RolloutStrategy(maxSurge: surge, maxUnavailable: unavailable)))
        workload.metadata.revision = 1
        return workload
    }

    /// Instances as the controller would have made them, bound to a node, Ready or not.
    func instances(of workload: Workload, ordinals: [Int], ready: Bool = true) -> [Instance] {
        let hash = TemplateHash.of(workload.spec)
        return ordinals.map { ordinal in
            var instance = WorkloadController.makeInstance(workload, hash: hash, ordinal: ordinal)
            instance.spec.nodeName = "node-1"
            instance.status.phase = .running
            instance.status.ready = ready
            return instance
        }
    }

    func created(_ plan: WorkloadController.Plan) -> [String] {
        plan.operations.compactMap { if case .create(let object) = $0 { object.name } else { nil } }
    }

    /// Instances marked for deletion (graceful) or deleted outright.
    func removed(_ plan: WorkloadController.Plan) -> [String] {
        plan.operations.compactMap { operation in
            switch operation {
            case .update(.instance(let instance)) where instance.metadata.deletionTimestamp != nil: instance.metadata.name
            case .delete(_, let name, _): name
            default: nil
            }
        }.sorted()
    }

    @Test func scalingUpFillsTheLowestFreeOrdinalsWithDeterministicNames() {
        let web = workload(replicas: 4)
        let hash = TemplateHash.of(web.spec)
        let plan = WorkloadController.plan(workload: web, owned: instances(of: web, ordinals: [0, 2]))
        #expect(created(plan) == ["web-\(hash)-1", "web-\(hash)-3"])
        #expect(removed(plan).isEmpty)
        let instance = plan.operations.compactMap { if case .create(.instance(let i)) = $0 { i } else { nil } }.first
        #expect(instance?.metadata.owner == "Workload/web")
        #expect(instance?.metadata.labels[WellKnown.templateHashLabel] == hash)
        #expect(instance?.metadata.labels[WellKnown.workloadLabel] == "web")
    }

    @Test func scalingDownRemovesTheHighestOrdinalsGracefully() {
        let web = workload(replicas: 1)
        let hash = TemplateHash.of(web.spec)
        let plan = WorkloadController.plan(workload: web, owned: instances(of: web, ordinals: [0, 1, 2]))
        #expect(removed(plan) == ["web-\(hash)-1", "web-\(hash)-2"])
        // Bound instances are marked, not deleted: their agent stops them first.
        #expect(plan.operations.allSatisfy { if case .delete = $0 { false } else { true } })
    }

    @Test func aRollingUpdateSurgesByOneAndKeepsEveryReadyInstance() {
        let old = workload(replicas: 3, command: "v1")
        let new = workload(replicas: 3, command: "v2")
        let plan = WorkloadController.plan(workload: new, owned: instances(of: old, ordinals: [0, 1, 2]))
        // maxSurge 1, maxUnavailable 0: one new instance, no old one removed yet.
        #expect(created(plan).count == 1)
        #expect(removed(plan).isEmpty)
        // Once the new one is Ready, one old one may go.
        let next = instances(of: old, ordinals: [0, 1, 2]) + instances(of: new, ordinals: [0])
        let step = WorkloadController.plan(workload: new, owned: next)
        #expect(removed(step).count == 1)
        #expect(created(step).isEmpty, "4 live instances already: the surge budget is spent")
    }

    @Test func maxUnavailableLetsOldInstancesGoBeforeNewOnesAreReady() {
        let old = workload(replicas: 4, command: "v1")
        let new = workload(replicas: 4, command: "v2", surge: 0, unavailable: 2)
        let plan = WorkloadController.plan(workload: new, owned: instances(of: old, ordinals: [0, 1, 2, 3]))
        #expect(removed(plan).count == 2)
        #expect(created(plan).isEmpty, "no surge: new instances wait for room")
    }

    @Test func oldInstancesThatAreNotReadyGoFirst() {
        let old = workload(replicas: 2, command: "v1")
        let new = workload(replicas: 2, command: "v2")
        var owned = instances(of: old, ordinals: [0, 1])
        owned[1].status.ready = false
        let plan = WorkloadController.plan(workload: new, owned: owned)
        #expect(removed(plan) == [owned[1].metadata.name])
    }

    @Test func aDeletedWorkloadRemovesEveryInstance() {
        let web = workload(replicas: 2)
        var owned = instances(of: web, ordinals: [0, 1])
        owned[0].spec.nodeName = nil
        let plan = WorkloadController.plan(workload: nil, owned: owned)
        #expect(removed(plan) == owned.map(\.metadata.name).sorted())
        // The unbound one is deleted outright, the bound one marked.
        #expect(plan.operations.contains { if case .delete(_, let name, _) = $0 { name == owned[0].metadata.name } else { false } })
    }

    @Test func statusCountsReadyAndUpdatedInstancesAndIsWrittenOnlyOnChange() throws {
        var web = workload(replicas: 2)
        web.metadata.generation = 3
        var owned = instances(of: web, ordinals: [0, 1])
        owned[1].status.ready = false
        let plan = WorkloadController.plan(workload: web, owned: owned)
        let status = try #require(plan.operations.compactMap { if case .update(.workload(let w)) = $0 { w.status } else { nil } }.first)
        #expect(status.replicas == 2 && status.readyReplicas == 1 && status.updatedReplicas == 2)
        #expect(status.templateHash == TemplateHash.of(web.spec))
        // Issue 9: the status says which spec it describes.
        #expect(status.observedGeneration == 3)
        var settled = web
        settled.status = status
        #expect(WorkloadController.plan(workload: settled, owned: owned).operations.isEmpty, "an unchanged status is not rewritten")
    }

    @Test func namesStayDNSLabelsForLongWorkloadNames() {
        let name = WorkloadController.instanceName(workload: String(repeating: "a", count: 70), hash: "0123abcd", ordinal: 12)
        #expect(name.count <= 63)
        #expect(DNSLabel.problem(with: name) == nil)
        #expect(EventRecorder.name(involved: "Instance/" + String(repeating: "b", count: 70), reason: "CrashLoopBackOff").count <= 63)
    }

    @Test func theTemplateHashChangesWithTheTemplateOnly() {
        let a = workload(replicas: 1, command: "v1")
        var b = a
        b.spec.replicas = 5
        #expect(TemplateHash.of(a.spec) == TemplateHash.of(b.spec), "scaling is not a new template")
        #expect(TemplateHash.of(a.spec) != TemplateHash.of(workload(replicas: 1, command: "v2").spec))
        #expect(TemplateHash.of(a.spec).count == 8)
    }

    /// A workload stored before its numbers were range-checked (issue 10: maxSurge near Int.max
    /// overflowed the controller on every restart) gets a `Valid: false` condition and an Event
    /// once, and nothing else happens to it; the plan never traps.
    @Test func aStoredWorkloadOutOfRangeGetsAConditionNotACrash() {
        var bad = workload(replicas: 3, surge: .max)
        bad.spec.template.command = ["sh", "-c", "v2"]
        let old = instances(of: workload(replicas: 3), ordinals: [0, 1, 2])
        let plan = WorkloadController.plan(workload: bad, owned: old)
        #expect(created(plan).isEmpty && removed(plan).isEmpty)
        #expect(plan.events.map(\.reason) == ["InvalidSpec"])
        guard case .update(.workload(let updated))? = plan.operations.first else {
            Issue.record("expected a status update")
            return
        }
        let condition = updated.status.conditions.first
        #expect(condition?.type == "Valid" && condition?.status == false && condition?.reason == "InvalidSpec")
        #expect(condition?.message.contains("spec.strategy.maxSurge") == true)
        // Once the condition is there, the next pass writes nothing more.
        #expect(WorkloadController.plan(workload: updated, owned: old).operations.isEmpty)
        // Fixed: the condition goes and the rollout proceeds.
        var fixed = updated
        fixed.spec.strategy = RolloutStrategy(maxSurge: 1, maxUnavailable: 0)
        let resumed = WorkloadController.plan(workload: fixed, owned: old)
        #expect(created(resumed).count == 1)
        #expect(resumed.operations.contains { if case .update(.workload(let w)) = $0 { w.status.conditions.isEmpty } else { false } })
    }
}
