import CapstanAPI
import CapstanCore
import CapstanEtcd
import CapstanStore
import CapstanTestSupport
import Foundation
import ServiceLifecycle
import Synchronization
import Testing
@testable import CapstanServer
#if canImport(Glibc)
import Glibc
#endif

/// `capstan store migrate` from a real SQLite store into a real etcd, run again and again.
@Suite(.serialized, .timeLimit(.minutes(2)), .enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"))
struct StoreMigrationTests {
    static func migrate(_ from: URL, _ endpoint: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = ServerProcess.products.appendingPathComponent("capstan")
        process.arguments = ["store", "migrate", "--from", "sqlite:" + from.path, "--to", "etcd://" + endpoint.replacingOccurrences(of: "http://", with: "")]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    @Test func migrationCopiesObjectsAndTokensIsSafeToRepeatAndNeverOverwritesWhatEtcdGotOtherwise() async throws {
        try await withEtcd { etcd, client in
            let root = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-migrate-\(UUID().uuidString.prefix(8))")
            defer { try? FileManager.default.removeItem(at: root) }
            let data = root.appendingPathComponent("data")
            let store = try ResourceStore(path: data.appendingPathComponent("capstan.db").path, bus: EventBus())
            let workload = try store.create(.workload(Workload(name: "web", spec: WorkloadSpec(replicas: 2, template: InstanceTemplate(command: ["sleep", "1"])))))
            _ = try store.create(.secret(Secret(name: "db", spec: SecretSpec(data: ["password": Array("hunter2".utf8)]))))
            let viewer = try store.createToken(role: "viewer", description: "made before the migration")

            var run = try Self.migrate(data, etcd.endpoint)
            #expect(run.status == 0, "\(run.output)")
            #expect(run.output.contains("2 objects added, 0 updated, 0 already there, 0 kept as etcd has them") && run.output.contains("; 1 API token(s) added"), "\(run.output)")
            // Again: nothing new.
            run = try Self.migrate(data, etcd.endpoint)
            #expect(run.status == 0 && run.output.contains("0 objects added, 0 updated, 2 already there, 0 kept as etcd has them") && run.output.contains("; 0 API token(s) added"), "\(run.output)")
            // Changed in SQLite since: brought up to date.
            guard case .secret(var secret)? = try store.get(kind: "Secret", name: "db") else { Issue.record("no secret"); return }
            secret.spec.data["password"] = Array("hunter3".utf8)
            _ = try store.update(.secret(secret))
            run = try Self.migrate(data, etcd.endpoint)
            #expect(run.status == 0 && run.output.contains("0 objects added, 1 updated, 1 already there"), "\(run.output)")
            // Changed in etcd since (as a server would) and in SQLite too: etcd's is kept. A
            // token revoked in etcd since stays revoked.
            let objects = EtcdObjectStore(client: client, cipher: try SecretCipher(path: data.appendingPathComponent("secrets.keys").path))
            guard case .workload(var inEtcd)? = try await objects.get(kind: "Workload", name: "web") else { Issue.record("web missing"); return }
            inEtcd.spec.replicas = 5
            _ = try await objects.update(.workload(inEtcd))
            guard case .workload(var inSQLite)? = try store.get(kind: "Workload", name: "web") else { Issue.record("web missing"); return }
            inSQLite.spec.replicas = 7
            _ = try store.update(.workload(inSQLite))
            let doomed = try store.createToken(role: "viewer", description: "revoked after the migration")
            run = try Self.migrate(data, etcd.endpoint)
            #expect(run.output.contains("; 1 API token(s) added"), "\(run.output)")
            _ = try await EtcdTokens(client: client).revoke(id: doomed.record.id)
            run = try Self.migrate(data, etcd.endpoint)
            #expect(run.status == 0 && run.output.contains("0 updated, 1 already there, 1 kept as etcd has them") && run.output.contains("; 0 API token(s) added"), "\(run.output)")
            guard case .workload(let kept)? = try await objects.get(kind: "Workload", name: "web") else { Issue.record("web missing"); return }
            #expect(kept.spec.replicas == 5)
            #expect(try await client.range(Array("/capstan/tokens/\(doomed.record.id)".utf8)).kvs.isEmpty)
            // An object etcd got by other means is left alone, named, and the run fails.
            _ = try await objects.create(.workload(Workload(name: "api", spec: WorkloadSpec(replicas: 1, template: InstanceTemplate(command: ["etcd-side"])))))
            _ = try store.create(.workload(Workload(name: "api", spec: WorkloadSpec(replicas: 1, template: InstanceTemplate(command: ["sqlite-side"])))))
            run = try Self.migrate(data, etcd.endpoint)
            #expect(run.status == 1 && run.output.contains("Workload \"api\": etcd holds another object of that name"), "\(run.output)")
            guard case .workload(let other)? = try await objects.get(kind: "Workload", name: "api") else { Issue.record("api gone"); return }
            #expect(other.spec.template.command == ["etcd-side"])
            store.close()

            // A server on etcd with that data directory serves what was migrated: same uid, the
            // old token, the secret opened with the shared key.
            let server = try ServerProcess(name: "migrated", etcd: [etcd.endpoint], secretsFrom: root)
            defer { server.stop() }
            try await server.ready()
            let api = APIClient(server: server.address, token: viewer.token)
            #expect(try await api.get(.workload, "web").metadata.uid == workload.metadata.uid)
            let admin = APIClient(server: server.address, token: server.adminToken)
            guard case .secret(let migrated) = try await admin.get(ResourceKind.kind("Secret")!, "db") else { Issue.record("no secret"); return }
            #expect(migrated.spec.data["password"] == Array("hunter3".utf8))
        }
    }
}

/// A leader's loop that ends on its own: the server gives up the lead and leads again with a
/// fresh set of loops (a new term), instead of leading without it.
@Suite(.timeLimit(.minutes(1)), .enabled(if: EtcdServer.available, "needs Debian's etcd-server (CI installs it)"))
struct LeadershipLoopTests {
    /// Fails the first time it runs, then runs until cancelled.
    final class FailsOnce: ServiceLifecycle.Service, Sendable {
        let runs = Mutex(0)
        struct Broke: Error {}
        func run() async throws {
            let run = runs.withLock { $0 += 1; return $0 }
            if run == 1 {
                try await Task.sleep(for: .milliseconds(200))
                throw Broke()
            }
            while !Task.isCancelled { try? await Task.sleep(for: .milliseconds(50)) }
        }
    }

    @Test func aLoopThatFailsMakesTheLeaderResignAndLeadAgainWithFreshLoops() async throws {
        try await withEtcd { etcd, client in
            let directory = NSTemporaryDirectory() + "capstan-leadership-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let cluster = try await EtcdCluster(client: client, cipher: try SecretCipher(path: directory + "/secrets.keys"), bus: EventBus())
            let writer = StoreWriter(etcd: cluster)
            let informer = SharedInformer(writer: writer)
            let state = LeadershipState(server: "solo", leading: false)
            let loop = FailsOnce()
            let leadership = Leadership(election: LeaderElection(client: client, identity: "solo", ttl: 2), state: state, informer: informer,
                                        writer: writer, cluster: cluster, compactionInterval: .seconds(300), log: { _ in }, makeLoops: { _ in [(loop, nil)] })
            let running = Task { try await leadership.run() }
            defer { running.cancel() }
            var firstTerm: Int64?
            var secondTerm: Int64?
            for _ in 0..<1200 where secondTerm == nil {   // up to 30 s: slow under a loaded CI machine
                let now = state.snapshot
                if now.leading, let term = now.term {
                    if firstTerm == nil { firstTerm = term } else if term != firstTerm { secondTerm = term }
                }
                try await Task.sleep(for: .milliseconds(25))
            }
            #expect(firstTerm != nil, "it led")
            #expect(secondTerm != nil && secondTerm != firstTerm, "it led again, in a new term, after the loop failed")
            // The new term's loops start just after it is reported.
            for _ in 0..<200 where loop.runs.withLock({ $0 }) < 2 { try await Task.sleep(for: .milliseconds(25)) }
            #expect(loop.runs.withLock { $0 } == 2, "the loop ran again")
            #expect(state.snapshot.transitions >= 3)
        }
    }
}
