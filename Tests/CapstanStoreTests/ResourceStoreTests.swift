import CapstanCore
import CapstanStore
import Foundation
import Testing

@Suite struct ResourceStoreTests {
    let directory: String = {
        let path = NSTemporaryDirectory() + "capstan-store-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }()

    func workload(_ name: String, replicas: Int = 1) -> AnyResource {
        .workload(Workload(name: name, spec: WorkloadSpec(replicas: replicas, template: InstanceTemplate(command: ["sleep", "60"]))))
    }

    func replicas(_ object: AnyResource?) -> Int? {
        if case .workload(let workload) = object { return workload.spec.replicas }
        return nil
    }

    @Test func writesTakeGrowingRevisionsAndPublishThemInOrder() async throws {
        let bus = EventBus()
        let store = try ResourceStore(path: directory + "/db.sqlite", bus: bus)
        let events = try bus.subscribe(to: .resources)
        let created = try store.create(workload("web"))
        #expect(created.metadata.revision == 1 && created.metadata.uid != nil && created.metadata.creationTimestamp != nil)
        var changed = created
        if case .workload(var w) = changed { w.spec.replicas = 3; changed = .workload(w) }
        let updated = try store.update(changed)
        #expect(updated.metadata.revision == 2 && updated.metadata.uid == created.metadata.uid)
        try store.create(workload("api"))
        let deleted = try store.delete(kind: "Workload", name: "api")
        #expect(deleted.metadata.revision == 4)
        #expect(try store.revision == 4)
        #expect(replicas(try store.get(kind: "Workload", name: "web")) == 3)
        #expect(try store.get(kind: "Workload", name: "api") == nil)
        let (items, revision) = try store.list(kind: "Workload")
        #expect(items.map(\.name) == ["web"] && revision == 4)

        var seen: [(UInt64, ResourceEvent.Change, String)] = []
        for await delivery in events {
            guard case .event(let revision, let event) = delivery else { Issue.record("unexpected \(delivery)"); break }
            seen.append((revision, event.change, event.object.name))
            if seen.count == 4 { break }
        }
        #expect(seen.map(\.0) == [1, 2, 3, 4])
        #expect(seen.map(\.1) == [.added, .modified, .added, .deleted])
        #expect(seen.map(\.2) == ["web", "web", "api", "api"])
    }

    @Test func staleRevisionsConflictAndChangeNothing() throws {
        let store = try ResourceStore(path: directory + "/db.sqlite", bus: EventBus())
        let first = try store.create(workload("web"))
        var newer = first
        if case .workload(var w) = newer { w.spec.replicas = 2; newer = .workload(w) }
        try store.update(newer)                      // revision 1 → 2
        var stale = first                            // still says revision 1
        if case .workload(var w) = stale { w.spec.replicas = 9; stale = .workload(w) }
        #expect(throws: StoreError.conflict(kind: "Workload", name: "web", expected: 1, stored: 2)) { try store.update(stale) }
        #expect(throws: StoreError.conflict(kind: "Workload", name: "web", expected: 1, stored: 2)) { try store.delete(kind: "Workload", name: "web", revision: 1) }
        #expect(replicas(try store.get(kind: "Workload", name: "web")) == 2)
        #expect(try store.revision == 2)
    }

    @Test func badWritesAreRefusedWithReasonsAndStoreNothing() throws {
        let store = try ResourceStore(path: directory + "/db.sqlite", bus: EventBus())
        try store.create(workload("web"))
        #expect(throws: StoreError.alreadyExists(kind: "Workload", name: "web")) { try store.create(workload("web")) }
        #expect(throws: StoreError.notFound(kind: "Workload", name: "nope")) { try store.update(workload("nope")) }
        #expect(throws: StoreError.notFound(kind: "Workload", name: "nope")) { try store.delete(kind: "Workload", name: "nope") }
        do {
            try store.update(workload("web", replicas: -1))
            Issue.record("expected invalid")
        } catch {
            guard case .invalid(let validation) = error else { Issue.record("unexpected \(error)"); return }
            #expect(validation.problems.map(\.description) == ["spec.replicas: -1 is negative"])
        }
        #expect(replicas(try store.get(kind: "Workload", name: "web")) == 1)
        #expect(try store.revision == 1)
    }

    @Test func reopeningKeepsObjectsAndTheRevision() async throws {
        let path = directory + "/db.sqlite"
        do {
            let store = try ResourceStore(path: path, bus: EventBus())
            try store.create(workload("web"))
            try store.create(workload("api"))
        }
        let bus = EventBus()
        let reopened = try ResourceStore(path: path, bus: bus)
        #expect(try reopened.list(kind: "Workload").items.map(\.name) == ["api", "web"])
        #expect(try reopened.revision == 2)
        // The bus continues from the stored revision.
        let events = try bus.subscribe(to: .resources)
        try reopened.create(workload("db"))
        for await delivery in events {
            if case .event(let revision, _) = delivery { #expect(revision == 3) }
            break
        }
    }

    @Test func anUnreadableFileIsAStorageError() {
        let path = directory + "/not-a-db.sqlite"
        _ = FileManager.default.createFile(atPath: path, contents: Data(repeating: 0x41, count: 4096))
        #expect(throws: StoreError.self) { try ResourceStore(path: path, bus: EventBus()) }
    }
}
