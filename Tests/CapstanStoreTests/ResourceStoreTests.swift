import CapstanCore
@testable import CapstanStore
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

    /// An update compares the stored spec as SQLite renders it (`json_extract`) with the new one
    /// as the encoder writes it: that holds only while what is stored is exactly what the
    /// encoder writes (sorted keys, minified, its escapes) — a binding, a spec change, then the
    /// same spec again, with strings SQLite and Foundation could render differently.
    @Test func aSpecChangeIsStoredAsTheEncoderWritesIt() throws {
        let store = try ResourceStore(path: directory + "/db.sqlite", bus: EventBus())
        var template = InstanceTemplate(command: ["sh", "-c", "echo \"é ü 日本\" / \\ \u{01}\t'x' </script>"])
        template.env = ["URL": "https://example.test/a?b=c&d=e", "EMPTY": ""]
        template.resources = ResourceRequirements(requests: ["cpu": "100m", "memory": "1.5Gi"])
        var instance = Instance(name: "tricky", labels: ["app.kubernetes.io/name": "x/y"], spec: InstanceSpec(template: template))
        instance.metadata.annotations["note"] = "quotes \" and \\ and \u{2028}"
        guard case .instance(var created) = try store.create(.instance(instance)) else { Issue.record("not an instance"); return }
        created.spec.nodeName = "node-7"
        created.spec.gpuDevices = [0, 3]
        created.status.phase = .scheduled
        let bound = try store.update(.instance(created))
        #expect(bound.metadata.generation == 2)
        let stored = try #require(try store.storedJSON(kind: "Instance", name: "tricky"))
        let reread = try #require(try store.get(kind: "Instance", name: "tricky"))
        #expect(String(decoding: stored, as: UTF8.self) == String(decoding: try ResourceStore.encode(reread), as: UTF8.self))
        #expect(reread == bound)
        // The same spec written again is not a change.
        #expect(try store.update(reread).metadata.generation == 2)
    }

    /// Issue 9: `metadata.generation` is the store's, and moves only with `spec`.
    @Test func generationCountsSpecChangesOnly() throws {
        let store = try ResourceStore(path: directory + "/db.sqlite", bus: EventBus())
        var object = workload("web")
        object.metadata.generation = 42                 // a client's value is ignored
        let created = try store.create(object)
        #expect(created.metadata.generation == 1)
        guard case .workload(var web) = created else { return }
        web.status.readyReplicas = 1                    // status: same generation
        web.metadata.labels["tier"] = "front"           // labels: same generation
        let statusOnly = try store.update(.workload(web))
        #expect(statusOnly.metadata.generation == 1)
        guard case .workload(var again) = statusOnly else { return }
        again.spec.replicas = 3
        again.metadata.generation = 7
        let specChanged = try store.update(.workload(again))
        #expect(specChanged.metadata.generation == 2)
        #expect(try store.get(kind: "Workload", name: "web")?.metadata.generation == 2)
        // Secrets are sealed at rest: their spec is still compared.
        let secret = try store.create(.secret(Secret(name: "db", spec: SecretSpec(data: ["password": Array("one".utf8)]))))
        #expect(secret.metadata.generation == 1)
        guard case .secret(var changed) = secret else { return }
        let same = try store.update(.secret(changed))
        #expect(same.metadata.generation == 1)
        changed.metadata.revision = same.metadata.revision
        changed.spec = SecretSpec(data: ["password": Array("two".utf8)])
        #expect(try store.update(.secret(changed)).metadata.generation == 2)
    }

    /// The spec comparison reads the stored spec as SQLite renders it and the new one from the
    /// encoder: escapes, slashes, non-ASCII text and fractional numbers must compare equal when
    /// unchanged (or every status write would look like a spec change).
    @Test func anUnchangedSpecWithEscapesAndFractionsKeepsItsGeneration() throws {
        let store = try ResourceStore(path: directory + "/db.sqlite", bus: EventBus())
        var template = InstanceTemplate(command: ["sh", "-c", "echo \"a/b\" \\ \t é 中 😀 \u{1}"], env: ["PATH": "/usr/bin:/bin", "Ünïcode": "ö"], workingDir: "/srv/app")
        template.terminationGracePeriodSeconds = 0.1
        template.livenessProbe = Probe(exec: ["test", "-f", "/tmp/ok"], periodSeconds: 1.5, timeoutSeconds: 0.3)
        var object = Workload(name: "tricky", spec: WorkloadSpec(replicas: 1, template: template))
        object.spec.restartBackoff = RestartBackoff(initialSeconds: 0.25)
        guard case .workload(var stored) = try store.create(.workload(object)) else { return }
        #expect(stored.metadata.generation == 1)
        stored.status.readyReplicas = 1
        guard case .workload(var updated) = try store.update(.workload(stored)) else { return }
        #expect(updated.metadata.generation == 1, "an unchanged spec with escapes and fractions moved the generation")
        updated.spec.template.env["PATH"] = "/bin"
        #expect(try store.update(.workload(updated)).metadata.generation == 2)
    }

    /// `performAll` queues many writes at once (they fill whole transactions) and answers each
    /// in order; one refused write fails alone.
    @Test func performAllAnswersEachWriteInOrder() async throws {
        let store = try ResourceStore(path: directory + "/db.sqlite", bus: EventBus())
        let writer = StoreWriter(store: store, maxBatch: 64)
        _ = try store.create(workload("w-7"))
        let results = await writer.performAll((0..<300).map { .create(workload("w-\($0)")) })
        #expect(results.count == 300)
        for (index, result) in results.enumerated() {
            switch result {
            case .success(let object): #expect(index != 7 && object.name == "w-\(index)")
            case .failure(let error): #expect(index == 7 && error == .alreadyExists(kind: "Workload", name: "w-7"))
            }
        }
        #expect(try store.list(kind: "Workload").items.count == 300)
        #expect(await writer.performAll([]).isEmpty)
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
            #expect(validation.problems.map(\.description) == ["spec.replicas: -1 is negative; give 0 to 10000"])
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

    // MARK: Limits and failures (issue 10)

    @Test func anObjectLargerThanTheLimitIsRefusedAndNothingChanges() throws {
        let store = try ResourceStore(path: directory + "/db.sqlite", bus: EventBus())
        var big = Workload(name: "big", spec: WorkloadSpec(replicas: 1, template: InstanceTemplate(command: ["true"])))
        big.metadata.annotations["note"] = String(repeating: "x", count: FieldLimits.maxObjectBytes)
        #expect {
            try store.create(.workload(big))
        } throws: { error in
            guard case StoreError.invalid(let validation) = error else { return false }
            return validation.problems.first?.message.contains("at most \(FieldLimits.maxObjectBytes) bytes") == true
        }
        #expect(try store.revision == 0)
        #expect(try store.get(kind: "Workload", name: "big") == nil)
    }

    @Test func aDatabaseThatLostItsWALIsRefusedUnlessAccepted() throws {
        let path = directory + "/db.sqlite"
        let store = try ResourceStore(path: path, bus: EventBus())
        try store.create(workload("one"))
        // Checkpoint what is there, then write more that lives only in the WAL.
        let copy = directory + "/copy"
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        _ = try ResourceStore.backup(databaseAt: path, to: copy + "/db.sqlite")
        for name in ["two", "three", "four"] { try store.create(workload(name)) }
        // The data directory as it would be had the WAL been deleted: the older database file
        // beside the marker that says revision 4 was committed.
        try FileManager.default.copyItem(atPath: path + ResourceStore.markerSuffix, toPath: copy + "/db.sqlite" + ResourceStore.markerSuffix)
        #expect(throws: StoreError.rolledBack(path: copy + "/db.sqlite", stored: 1, recorded: 4)) {
            try ResourceStore(path: copy + "/db.sqlite", bus: EventBus())
        }
        let message = StoreError.rolledBack(path: "/d/capstan.db", stored: 1, recorded: 4).description
        #expect(message.contains("/d/capstan.db-wal") && message.contains("--accept-rollback") && message.contains("capstan store restore"))
        // Accepting it runs on the older state and records it as the new truth.
        let accepted = try ResourceStore(path: copy + "/db.sqlite", bus: EventBus(), acceptRollback: true)
        #expect(try accepted.list(kind: "Workload").items.map(\.name) == ["one"])
        #expect(try ResourceStore(path: copy + "/db.sqlite", bus: EventBus()).revision == 1)
    }

    @Test func aDeletedDatabaseIsRefusedToo() throws {
        let path = directory + "/db.sqlite"
        do {
            let store = try ResourceStore(path: path, bus: EventBus())
            try store.create(workload("one"))
            store.close()
        }
        for file in [path, path + "-wal", path + "-shm"] { try? FileManager.default.removeItem(atPath: file) }
        #expect(throws: StoreError.rolledBack(path: path, stored: 0, recorded: 1)) { try ResourceStore(path: path, bus: EventBus()) }
    }

    @Test func backupAndRestoreRoundTrip() throws {
        let path = directory + "/db.sqlite"
        let store = try ResourceStore(path: path, bus: EventBus())
        try store.create(workload("one"))
        try store.create(workload("two"))
        let backup = directory + "/backup.db"
        #expect(try ResourceStore.backup(databaseAt: path, to: backup) == 2)
        #expect(throws: StoreError.self) { try ResourceStore.backup(databaseAt: path, to: backup) }
        let attributes = try FileManager.default.attributesOfItem(atPath: backup)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        try store.create(workload("three"))

        let target = directory + "/restored/db.sqlite"
        #expect(try ResourceStore.restore(backup: backup, to: target) == 2)
        let restored = try ResourceStore(path: target, bus: EventBus())
        #expect(try restored.list(kind: "Workload").items.map(\.name) == ["one", "two"])
        // A file that is not a store is refused with a reason.
        let junk = directory + "/junk.db"
        _ = FileManager.default.createFile(atPath: junk, contents: Data())
        #expect(throws: StoreError.self) { try ResourceStore.restore(backup: junk, to: directory + "/other/db.sqlite") }
    }

    /// A write refused for a full disk publishes nothing, and the next write after space is
    /// freed takes the next revision (before: a phantom `Added` event, then "bus revisions must
    /// grow" killed the server). Needs root to mount a 1 MiB tmpfs.
    @Test(.enabled(if: getuid() == 0, "needs root to mount a small tmpfs"))
    func aFullDiskPublishesNoPhantomEvent() async throws {
        let mountPoint = directory + "/small"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        try run("/bin/mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mountPoint)
        defer { try? run("/bin/umount", mountPoint) }
        let bus = EventBus()
        let store = try ResourceStore(path: mountPoint + "/db.sqlite", bus: bus)
        try store.create(workload("before"))
        let events = try bus.subscribe(to: .resources)
        // Fill the filesystem.
        let filler = mountPoint + "/filler"
        _ = FileManager.default.createFile(atPath: filler, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: filler))
        let chunk = Data(repeating: 0, count: 4096)
        while (try? handle.write(contentsOf: chunk)) != nil {}
        try? handle.close()

        var big = Workload(name: "refused", spec: WorkloadSpec(replicas: 1, template: InstanceTemplate(command: ["true"])))
        big.metadata.annotations["note"] = String(repeating: "x", count: 200_000)
        #expect {
            try store.create(.workload(big))
        } throws: { error in
            if case StoreError.storage = error { return true }
            return false
        }
        try FileManager.default.removeItem(atPath: filler)
        let after = try store.create(workload("after"))
        #expect(after.metadata.revision == 2)
        #expect(try store.get(kind: "Workload", name: "refused") == nil)
        for await delivery in events {
            guard case .event(let revision, let event) = delivery else { continue }
            #expect(revision == 2 && event.object.name == "after")
            break
        }
    }

    private func run(_ arguments: String...) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        try process.run()
        process.waitUntilExit()
        if process.terminationStatus != 0 { throw StoreError.storage("\(arguments.joined(separator: " ")) exited \(process.terminationStatus)") }
    }

    // MARK: Secrets at rest (issue 10)

    func secret(_ value: String) -> AnyResource {
        .secret(Secret(name: "db", spec: SecretSpec(data: ["password": Array(value.utf8)])))
    }

    /// The bytes of the database files: what a stolen copy or a backup holds.
    func rawFiles(_ path: String) -> Data {
        [path, path + "-wal"].compactMap { FileManager.default.contents(atPath: $0) }.reduce(Data(), +)
    }

    @Test func secretValuesAreSealedOnDiskAndOpenedOnRead() throws {
        let path = directory + "/db.sqlite"
        let store = try ResourceStore(path: path, bus: EventBus())
        try store.create(secret("correct-horse-battery-staple"))
        let raw = rawFiles(path)
        #expect(raw.range(of: Data("correct-horse-battery-staple".utf8)) == nil)
        #expect(raw.range(of: Data(Data("correct-horse-battery-staple".utf8).base64EncodedString().utf8)) == nil)
        #expect(raw.range(of: Data("aesgcm-v1".utf8)) != nil)
        guard case .secret(let read)? = try store.get(kind: "Secret", name: "db") else { Issue.record("not stored"); return }
        #expect(read.spec.data["password"] == Array("correct-horse-battery-staple".utf8))
        let mode = (try FileManager.default.attributesOfItem(atPath: directory + "/secrets.keys")[.posixPermissions] as? NSNumber)?.intValue
        #expect(mode == 0o600)
    }

    @Test func rotatingTheKeySealsAgainAndOldKeysStillOpenBackups() throws {
        let path = directory + "/db.sqlite"
        let store = try ResourceStore(path: path, bus: EventBus())
        try store.create(secret("v1"))
        let backup = directory + "/backup.db"
        _ = try ResourceStore.backup(databaseAt: path, to: backup)
        let before = try String(contentsOfFile: directory + "/secrets.keys", encoding: .utf8).split(separator: " ").first.map(String.init)
        let (key, count) = try store.rotateSecretsKey()
        #expect(count == 1 && key != before)
        #expect(rawFiles(path).range(of: Data("aesgcm-v1:\(key):".utf8)) != nil)
        guard case .secret(let read)? = try store.get(kind: "Secret", name: "db") else { Issue.record("gone"); return }
        #expect(read.spec.data["password"] == Array("v1".utf8))
        // The backup, sealed with the old key, still opens with the keyring beside it.
        let restored = directory + "/restored/db.sqlite"
        _ = try ResourceStore.restore(backup: backup, to: restored)
        try FileManager.default.copyItem(atPath: directory + "/secrets.keys", toPath: directory + "/restored/secrets.keys")
        guard case .secret(let old)? = try ResourceStore(path: restored, bus: EventBus()).get(kind: "Secret", name: "db") else { Issue.record("gone"); return }
        #expect(old.spec.data["password"] == Array("v1".utf8))
    }

    @Test func aMissingKeyIsNamedNotSilentlyWrong() throws {
        let path = directory + "/db.sqlite"
        do {
            let store = try ResourceStore(path: path, bus: EventBus())
            try store.create(secret("v1"))
            store.close()
        }
        try FileManager.default.removeItem(atPath: directory + "/secrets.keys")
        let reopened = try ResourceStore(path: path, bus: EventBus())
        #expect {
            _ = try reopened.get(kind: "Secret", name: "db")
        } throws: { error in
            "\(error)".contains("which \(self.directory)/secrets.keys does not hold")
        }
    }
}
