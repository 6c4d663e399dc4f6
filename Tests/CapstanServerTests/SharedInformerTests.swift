import CapstanCore
import CapstanStore
import Foundation
import Testing
@testable import CapstanServer

/// The shared informer (issue 9): one subscription and one list feed every loop, and its
/// indexes follow the store.
@Suite struct SharedInformerTests {
    func store() throws -> ResourceStore {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("capstan-informer-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return try ResourceStore(path: directory.appendingPathComponent("capstan.db").path, bus: EventBus())
    }

    func instance(_ name: String, node: String?, owner: String?) -> AnyResource {
        var instance = Instance(name: name, spec: InstanceSpec(template: InstanceTemplate(command: ["sleep", "60"]), nodeName: node))
        instance.metadata.owner = owner
        return .instance(instance)
    }

    @Test func feedsStartWithAResyncThenFollowTheStoreAndTheIndexesKeepUp() async throws {
        let store = try store()
        _ = try store.create(instance("a", node: "n1", owner: "Workload/web"))
        let informer = SharedInformer(writer: StoreWriter(store: store))
        let first = informer.feed()
        let second = informer.feed()
        let running = Task { try await informer.run() }
        defer { running.cancel() }

        // Each feed's first batch is the resync after the one list; the cache holds the list.
        var firstBatches = first.batches(every: .seconds(60)).makeAsyncIterator()
        var secondBatches = second.batches(every: .seconds(60)).makeAsyncIterator()
        for iterator in [0, 1] {
            let batch = iterator == 0 ? await firstBatches.next() : await secondBatches.next()
            #expect(batch?.contains { if case .resync = $0 { true } else { false } } == true)
        }
        #expect(informer.read { $0.instances(onNode: "n1").map(\.metadata.name) } == ["a"])
        #expect(informer.read { $0.instances(ownedBy: "Workload/web").map(\.metadata.name) } == ["a"])

        // Writes reach every feed, in order, and move the indexes.
        _ = try store.create(instance("b", node: nil, owner: "Workload/web"))
        guard case .instance(var moved)? = try store.get(kind: "Instance", name: "a") else { return }
        moved.spec.nodeName = "n2"
        _ = try store.update(.instance(moved))
        _ = try store.create(.volumeClaim(VolumeClaim(name: "data", spec: VolumeClaimSpec(size: try Quantity(parsing: "1Gi"), volumeName: "vol-1"))))
        var seen: [String] = []
        while seen.count < 3, let batch = await firstBatches.next() {
            for case .event(let event) in batch { seen.append("\(event.change) \(event.object.name)") }
        }
        #expect(seen == ["added b", "modified a", "added data"])
        var secondSeen: [String] = []
        while secondSeen.count < 3, let batch = await secondBatches.next() {
            for case .event(let event) in batch { secondSeen.append("\(event.change) \(event.object.name)") }
        }
        #expect(secondSeen == seen, "every feed sees the same changes")
        #expect(informer.read { $0.instances(onNode: "n1") }.isEmpty)
        #expect(informer.read { $0.instances(onNode: "n2").map(\.metadata.name) } == ["a"])
        #expect(informer.read { Set($0.instances(ownedBy: "Workload/web").map(\.metadata.name)) } == ["a", "b"])
        #expect(informer.read { $0.claimsByVolume["vol-1"] } == "data")
        _ = try store.delete(kind: "Instance", name: "a")
        while let batch = await firstBatches.next(), !batch.contains(where: { if case .event(let event) = $0 { event.change == .deleted } else { false } }) {}
        #expect(informer.read { $0.instances(onNode: "n2") }.isEmpty)
        #expect(informer.read { $0.workloadNames() } == ["web"])
    }

    /// A feed asking for some kinds gets only their changes (and every resync): a burst of
    /// Events does not wake the loops that pass over them.
    @Test func aFeedForSomeKindsIsNotWokenByOthers() async throws {
        let store = try store()
        let informer = SharedInformer(writer: StoreWriter(store: store))
        let instances = informer.feed(kinds: ["Instance"])
        let none = informer.feed(kinds: [])
        let all = informer.feed()
        let running = Task { try await informer.run() }
        defer { running.cancel() }
        var instanceBatches = instances.batches(every: .seconds(60)).makeAsyncIterator()
        var noneBatches = none.batches(every: .seconds(60)).makeAsyncIterator()
        var allBatches = all.batches(every: .seconds(60)).makeAsyncIterator()
        for batch in [await instanceBatches.next(), await noneBatches.next(), await allBatches.next()] {
            #expect(batch?.contains { if case .resync = $0 { true } else { false } } == true, "every feed gets the resync")
        }
        for index in 0..<5 {
            _ = try store.create(.event(Event(name: "e\(index)", spec: EventSpec(involvedObject: "Node/n1", reason: "Test", message: "m", source: "test"))))
        }
        _ = try store.create(instance("a", node: nil, owner: nil))
        var seenByAll: [String] = []
        while seenByAll.count < 6, let batch = await allBatches.next() {
            for case .event(let event) in batch { seenByAll.append(event.object.kind) }
        }
        #expect(seenByAll == Array(repeating: "Event", count: 5) + ["Instance"])
        // The Instance came after the Events: had they been delivered, they would be here first.
        let batch = await instanceBatches.next() ?? []
        #expect(batch.map { if case .event(let event) = $0 { event.object.kind } else { "resync" } } == ["Instance"])
        // Nothing for the feed that takes no changes: its next batch would be its 60 s tick.
        none.deliver(.resync)
        #expect(await noneBatches.next()?.count == 1, "only the resync queued here since")
    }

    /// A consumer busy with one batch gets everything that arrived meanwhile as the next batch,
    /// not as many small ones (one scheduling pass for 10,000 instances, not thousands).
    @Test func aBusyConsumerGetsOneBatchOfWhatArrivedMeanwhile() async throws {
        let feed = SharedInformer.Feed()
        var batches = feed.batches(every: .seconds(60)).makeAsyncIterator()
        feed.deliver(.resync)
        #expect(await batches.next()?.count == 1)
        for index in 0..<100 {
            feed.deliver(.event(ResourceEvent(.added, instance("i\(index)", node: nil, owner: nil))))
        }
        #expect(await batches.next()?.count == 100)
        feed.finish()
        #expect(await batches.next() == nil)
    }
}
