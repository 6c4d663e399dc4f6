import CapstanCore
import CapstanEtcd
import CapstanStore
import CapstanTestSupport
import Foundation
import Testing

/// What every store backend must do, run against both: the embedded SQLite store and the etcd
/// one (issue 13: "the same store test suite runs against both backends").
protocol StoreUnderTest: Sendable {
    func create(_ object: AnyResource) async throws(StoreError) -> AnyResource
    func update(_ object: AnyResource) async throws(StoreError) -> AnyResource
    func delete(kind: String, name: String, revision: UInt64?) async throws(StoreError) -> AnyResource
    func get(kind: String, name: String) async throws(StoreError) -> AnyResource?
    func list(kind: String) async throws(StoreError) -> (items: [AnyResource], revision: UInt64)
    /// The raw stored bytes of an object (to check secrets are sealed at rest).
    func raw(kind: String, name: String) async throws -> Data?
}

struct SQLiteUnderTest: StoreUnderTest {
    let store: ResourceStore
    func create(_ object: AnyResource) async throws(StoreError) -> AnyResource { try store.create(object) }
    func update(_ object: AnyResource) async throws(StoreError) -> AnyResource { try store.update(object) }
    func delete(kind: String, name: String, revision: UInt64?) async throws(StoreError) -> AnyResource { try store.delete(kind: kind, name: name, revision: revision) }
    func get(kind: String, name: String) async throws(StoreError) -> AnyResource? { try store.get(kind: kind, name: name) }
    func list(kind: String) async throws(StoreError) -> (items: [AnyResource], revision: UInt64) { try store.list(kind: kind) }
    /// The database and its write-ahead log (where a fresh write still sits).
    func raw(kind: String, name: String) async throws -> Data? {
        (FileManager.default.contents(atPath: store.path) ?? Data()) + (FileManager.default.contents(atPath: store.path + "-wal") ?? Data())
    }
}

struct EtcdUnderTest: StoreUnderTest {
    let store: EtcdObjectStore
    func create(_ object: AnyResource) async throws(StoreError) -> AnyResource { try await store.create(object) }
    func update(_ object: AnyResource) async throws(StoreError) -> AnyResource { try await store.update(object) }
    func delete(kind: String, name: String, revision: UInt64?) async throws(StoreError) -> AnyResource { try await store.delete(kind: kind, name: name, revision: revision) }
    func get(kind: String, name: String) async throws(StoreError) -> AnyResource? { try await store.get(kind: kind, name: name) }
    func list(kind: String) async throws(StoreError) -> (items: [AnyResource], revision: UInt64) { try await store.list(kind: kind) }
    func raw(kind: String, name: String) async throws -> Data? {
        try await store.client.range(Array("\(store.prefix)\(kind)/\(name)".utf8)).kvs.first.map { Data($0.value) }
    }
}

enum StoreSemantics {
    static func workload(_ name: String, replicas: Int = 1) -> AnyResource {
        .workload(Workload(name: name, spec: WorkloadSpec(replicas: replicas, template: InstanceTemplate(command: ["sleep", "60"]))))
    }

    /// The whole suite against one backend.
    static func run(_ store: some StoreUnderTest) async throws {
        // Create: a uid, a creation time, generation 1, a revision; twice is alreadyExists.
        let created = try await store.create(workload("web"))
        let first = try #require(created.metadata.revision)
        #expect(created.metadata.uid != nil && created.metadata.creationTimestamp != nil && created.metadata.generation == 1)
        await #expect(throws: StoreError.alreadyExists(kind: "Workload", name: "web")) { _ = try await store.create(workload("web")) }
        #expect(try await store.get(kind: "Workload", name: "web")?.metadata.revision == first)

        // Update: a higher revision, the uid kept; generation only for spec changes.
        var labelled = created
        labelled.metadata.labels["tier"] = "front"
        let relabelled = try await store.update(labelled)
        let second = try #require(relabelled.metadata.revision)
        #expect(second > first && relabelled.metadata.uid == created.metadata.uid && relabelled.metadata.generation == 1)
        guard case .workload(var scaled) = relabelled else { Issue.record("not a workload"); return }
        scaled.spec.replicas = 3
        let rescaled = try await store.update(.workload(scaled))
        #expect(rescaled.metadata.generation == 2 && (rescaled.metadata.revision ?? 0) > second)

        // Compare-and-swap: a write over a stale revision conflicts and changes nothing.
        var stale = labelled
        stale.metadata.revision = first
        do {
            _ = try await store.update(stale)
            Issue.record("a stale update was written")
        } catch StoreError.conflict(_, _, let expected, let stored) {
            #expect(expected == first && stored == rescaled.metadata.revision)
        }
        guard case .workload(let still)? = try await store.get(kind: "Workload", name: "web") else { Issue.record("gone"); return }
        #expect(still.spec.replicas == 3)
        await #expect(throws: StoreError.self) { _ = try await store.delete(kind: "Workload", name: "web", revision: first) }

        // Bad input is refused before anything is stored.
        var invalid = Workload(name: "bad", spec: WorkloadSpec(replicas: -1, template: InstanceTemplate(command: ["true"])))
        invalid.metadata.labels = [:]
        await #expect(throws: StoreError.self) { _ = try await store.create(.workload(invalid)) }
        #expect(try await store.get(kind: "Workload", name: "bad") == nil)
        var big = Workload(name: "big", spec: WorkloadSpec(replicas: 1, template: InstanceTemplate(command: ["true"])))
        big.metadata.annotations = Dictionary(uniqueKeysWithValues: (0..<400).map { ("k\($0)", String(repeating: "x", count: 4000)) })
        await #expect(throws: StoreError.self) { _ = try await store.create(.workload(big)) }
        #expect(try await store.get(kind: "Workload", name: "big") == nil)
        await #expect(throws: StoreError.notFound(kind: "Workload", name: "nobody")) { _ = try await store.update(workload("nobody")) }

        // Lists by kind, at a revision no older than the last write.
        _ = try await store.create(workload("api"))
        let listed = try await store.list(kind: "Workload")
        #expect(listed.items.map(\.name).sorted() == ["api", "web"])
        #expect(listed.revision >= (listed.items.compactMap(\.metadata.revision).max() ?? 0))
        // Secrets are sealed where they rest, opened on read.
        let secret = try await store.create(.secret(Secret(name: "db", spec: SecretSpec(data: ["password": Array("hunter2-plain".utf8)]))))
        let raw = try await store.raw(kind: "Secret", name: "db") ?? Data()
        #expect(raw.range(of: Data("hunter2-plain".utf8)) == nil, "a secret's value is stored in the clear")
        guard case .secret(let opened)? = try await store.get(kind: "Secret", name: "db") else { Issue.record("no secret"); return }
        #expect(opened.spec.data["password"] == Array("hunter2-plain".utf8) && opened.metadata.uid == secret.metadata.uid)

        // Delete: returns what was there; then it is gone; deleting again is notFound.
        let deleted = try await store.delete(kind: "Workload", name: "web", revision: rescaled.metadata.revision)
        #expect(deleted.metadata.uid == created.metadata.uid)
        #expect((deleted.metadata.revision ?? 0) > (rescaled.metadata.revision ?? 0), "a delete takes a revision of its own")
        #expect(try await store.get(kind: "Workload", name: "web") == nil)
        await #expect(throws: StoreError.notFound(kind: "Workload", name: "web")) { _ = try await store.delete(kind: "Workload", name: "web", revision: nil) }
        // A new object of the old name is a new object.
        let again = try await store.create(workload("web"))
        #expect(again.metadata.uid != created.metadata.uid && again.metadata.generation == 1)
        // A kind larger than one page of etcd's range (500 keys) is listed whole, once each, in
        // name order, consistent at one revision.
        await withTaskGroup(of: Void.self) { group in
            for writer in 0..<8 {
                group.addTask { for index in stride(from: writer, to: 1_203, by: 8) { _ = try? await store.create(workload(String(format: "bulk-%04d", index))) } }
            }
        }
        let bulk = try await store.list(kind: "Workload").items.map(\.name).filter { $0.hasPrefix("bulk-") }
        #expect(bulk == (0..<1_203).map { String(format: "bulk-%04d", $0) })
    }
}

@Suite(.timeLimit(.minutes(2))) struct StoreSemanticsTests {
    let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-semantics-\(UUID().uuidString.prefix(8))")

    @Test func theSQLiteStoreKeepsTheContract() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let store = try ResourceStore(path: directory.appendingPathComponent("capstan.db").path, bus: EventBus())
        try await StoreSemantics.run(SQLiteUnderTest(store: store))
    }

    @Test(.enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"))
    func theEtcdStoreKeepsTheSameContractAndWatchesFromARevision() async throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await withEtcd { _, client in
            let store = EtcdObjectStore(client: client, cipher: try SecretCipher(path: directory.appendingPathComponent("secrets.key").path))
            let start = try await store.list(kind: "Workload").revision
            try await StoreSemantics.run(EtcdUnderTest(store: store))
            // Every committed write, in revision order, as the bus would carry it.
            var seen: [(String, String, UInt64)] = []
            for try await (event, revision) in store.events(after: start) {
                seen.append((event.change.rawValue, "\(event.object.kind)/\(event.object.name)", revision))
                if seen.count == 7 { break }
            }
            #expect(seen.map { "\($0.0) \($0.1)" } == ["Added Workload/web", "Modified Workload/web", "Modified Workload/web", "Added Workload/api", "Added Secret/db", "Deleted Workload/web", "Added Workload/web"])
            #expect(seen.map(\.2) == seen.map(\.2).sorted() && Set(seen.map(\.2)).count == seen.count)
            // Writes fenced by a term: refused once another term holds the leader key.
            let leaderKey = Array("/capstan/leader".utf8)
            let term = try await client.put(leaderKey, Array("a".utf8))
            let fence = [EtcdClient.Compare.unchanged(leaderKey, since: term)]
            _ = try await store.create(StoreSemantics.workload("fenced"), fence: fence)
            _ = try await client.put(leaderKey, Array("b".utf8))
            do {
                _ = try await store.create(StoreSemantics.workload("deposed"), fence: fence)
                Issue.record("a deposed leader's write was stored")
            } catch let error as StoreError {
                #expect(error.description.contains("no longer the leader"))
            }
            #expect(try await store.get(kind: "Workload", name: "deposed") == nil)
            // A second server's store on the same etcd sees the same objects and revisions.
            let other = EtcdObjectStore(client: EtcdClient(endpoints: client.endpoints), cipher: try SecretCipher(path: directory.appendingPathComponent("secrets.key").path))
            #expect(try await other.get(kind: "Workload", name: "api") == (try await store.get(kind: "Workload", name: "api")))
        }
    }
}
