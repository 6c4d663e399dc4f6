import CapstanCore
import Testing

@Suite struct EventBusTests {
    func collect<P>(_ subscription: BusSubscription<P>, count: Int) async -> [BusDelivery<P>] {
        var received: [BusDelivery<P>] = []
        for await delivery in subscription {
            received.append(delivery)
            if received.count == count { break }
        }
        return received
    }

    func revisions<P>(_ deliveries: [BusDelivery<P>]) -> [UInt64] {
        deliveries.compactMap { if case .event(let revision, _) = $0 { revision } else { nil } }
    }

    @Test func deliversInOrderWithGrowingRevisions() async throws {
        let bus = EventBus()
        let topic = Topic<Int>("numbers")
        let subscription = try bus.subscribe(to: topic)
        for value in 1...100 { bus.publish(value, on: topic) }
        let received = await collect(subscription, count: 100)
        #expect(revisions(received) == Array(1...100))
        #expect(received.compactMap { if case .event(_, let payload) = $0 { payload } else { nil } } == Array(1...100))
    }

    /// `nextBatch()` (SDK 1.6) hands over everything waiting at once, in order, and mixes with
    /// `next()`: what `next()` left of a batch comes first.
    @Test func nextBatchTakesEverythingWaitingInOrder() async throws {
        let channel = BusChannel<Int>()
        let subscription = try channel.subscribe()
        var iterator = subscription.makeAsyncIterator()
        for value in 1...5 { channel.publish(value) }
        let first = await iterator.next()
        #expect(revisions([try #require(first)]) == [1])
        let rest = try #require(await iterator.nextBatch())
        #expect(revisions(Array(rest)) == [2, 3, 4, 5])
        for value in 6...8 { channel.publish(value) }
        let next = try #require(await iterator.nextBatch())
        #expect(revisions(Array(next)) == [6, 7, 8])
        // A waiting batch read is woken by the next publish.
        let later = try channel.subscribe()
        let waiting = Task { var iterator = later.makeAsyncIterator(); return await iterator.nextBatch().map { Array($0) } }
        try await Task.sleep(for: .milliseconds(50))
        channel.publish(9)
        #expect(revisions(try #require(await waiting.value)) == [9])
        subscription.cancel()
        #expect(await iterator.nextBatch() == nil)
    }

    @Test func slowSubscriberGetsAResyncMarkerNotUnboundedMemory() async throws {
        let channel = BusChannel<Int>(subscriberCapacity: 8, replayWindow: 16)
        let subscription = try channel.subscribe()
        for value in 1...20 { channel.publish(value) }
        // 1…8 buffered; 9 overflowed (marker replaces the buffer); 10…16 fit after it; 17 overflows again.
        var received: [BusDelivery<Int>] = []
        for value in 21...21 { channel.publish(value) }
        received = await collect(subscription, count: 5)
        guard case .resync(let revision) = received.first else {
            Issue.record("expected a resync marker first, got \(received)")
            return
        }
        #expect(revision == 17)
        #expect(revisions(Array(received.dropFirst())) == [18, 19, 20, 21])
    }

    @Test func resumesFromARevisionInTheWindow() async throws {
        let channel = BusChannel<String>(replayWindow: 10)
        for index in 1...25 { channel.publish("e\(index)") }
        let subscription = try channel.subscribe(after: 20)
        channel.publish("e26")
        #expect(revisions(await collect(subscription, count: 6)) == [21, 22, 23, 24, 25, 26])
    }

    @Test func batchPublishGetsConsecutiveRevisionsAndFillsTheWindow() async throws {
        let channel = BusChannel<String>(replayWindow: 4)
        let first = try channel.subscribe()
        channel.publish("a")
        #expect(channel.publish(contentsOf: ["b", "c", "d", "e", "f"]) == 6)
        #expect(channel.publish(contentsOf: [String]()) == 6)
        let received = await collect(first, count: 6)
        #expect(revisions(received) == Array(1...6))
        #expect(received.compactMap { if case .event(_, let payload) = $0 { payload } else { nil } } == ["a", "b", "c", "d", "e", "f"])
        // The window holds the last 4 (3…6): resuming after 2 works, after 1 does not.
        #expect(revisions(await collect(try channel.subscribe(after: 2), count: 4)) == [3, 4, 5, 6])
        #expect(throws: BusError.revisionTooOld(requested: 1, oldest: 2)) { try channel.subscribe(after: 1) }
    }

    @Test func tooOldRevisionIsRefused() throws {
        let channel = BusChannel<String>(replayWindow: 10)
        for index in 1...25 { channel.publish("e\(index)") }
        #expect(throws: BusError.revisionTooOld(requested: 3, oldest: 15)) { try channel.subscribe(after: 3) }
        #expect(throws: Never.self) { try channel.subscribe(after: 15) }
    }

    @Test func callerAssignedRevisionsMustGrow() async throws {
        let channel = BusChannel<String>()
        let subscription = try channel.subscribe()
        channel.publish("a", revision: 10)
        channel.publish("b", revision: 42)
        #expect(revisions(await collect(subscription, count: 2)) == [10, 42])
        #expect(channel.lastRevision == 42)
    }

    @Test func manyPublishersEverySubscriberSeesTheSameTotalOrder() async throws {
        let channel = BusChannel<Int>(subscriberCapacity: 100_000)
        let first = try channel.subscribe()
        let second = try channel.subscribe()
        await withTaskGroup(of: Void.self) { group in
            for publisher in 0..<8 {
                group.addTask {
                    for index in 0..<1000 { channel.publish(publisher * 1000 + index) }
                }
            }
        }
        let a = await collect(first, count: 8000)
        let b = await collect(second, count: 8000)
        #expect(revisions(a) == Array(1...8000))
        let payloadsA = a.compactMap { if case .event(_, let p) = $0 { p } else { nil } }
        let payloadsB = b.compactMap { if case .event(_, let p) = $0 { p } else { nil } }
        #expect(payloadsA == payloadsB)
        #expect(Set(payloadsA).count == 8000)
        // Each publisher's own events stay in its order.
        for publisher in 0..<8 {
            let own = payloadsA.filter { $0 / 1000 == publisher }
            #expect(own == own.sorted())
        }
    }

    @Test func cancellingEndsTheSubscription() async throws {
        let channel = BusChannel<Int>()
        let subscription = try channel.subscribe()
        #expect(channel.subscriberCount == 1)
        let task = Task { await collect(subscription, count: 1) }
        try await Task.sleep(for: .milliseconds(20))
        task.cancel()
        #expect(await task.value.isEmpty)
        #expect(channel.subscriberCount == 0)
    }

    @Test func finishEndsEveryIterator() async throws {
        let bus = EventBus()
        let subscription = try bus.subscribe(to: Topic<Int>("x"))
        bus.finish()
        #expect(await collect(subscription, count: 1).isEmpty)
        #expect(throws: BusError.finished) { try bus.subscribe(to: Topic<Int>("x")) }
    }
}
