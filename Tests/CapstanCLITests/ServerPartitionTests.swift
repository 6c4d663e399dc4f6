import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Three machines, each an etcd member and a `capstan server` on one etcd cluster (issue 13):
/// the leader's machine is cut off the network and healed. Its server stops leading before
/// another starts — at no moment do two servers believe they lead — a server on the majority
/// side leads and serves writes, and after the heal the cut-off one follows.
/// In the networking suite: test hosts are CPU-heavy on two cores and must not run beside
/// another such test.
extension NetworkingTests {
    static var etcdReady: Bool { TestHosts.available && FileManager.default.isExecutableFile(atPath: "/usr/bin/etcd") && FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") }

    @Test(.enabled(if: NetworkingTests.etcdReady, "needs root (network namespaces), Debian's etcd-server and curl (CI installs them)"), .timeLimit(.minutes(3)))
    func aPartitionedLeaderStepsDownBeforeAnotherLeadsAndFollowsAfterTheHeal() async throws {
        let hosts = try TestHosts(count: 3)
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("capstan-partition-\(hosts.id)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer {
            hosts.tearDown()
            try? FileManager.default.removeItem(at: directory)
        }
        let capstan = PluginsCLITests.products.appendingPathComponent("capstan").path
        // --pre-vote (etcd 3.5's default): a member coming back from a partition does not
        // disrupt the others' leader.
        let cluster = (1...3).map { "m\($0)=http://\(hosts.address($0)):2380" }.joined(separator: ",")
        for host in 1...3 {
            try hosts.start(in: host, "/usr/bin/etcd", ["--name", "m\(host)", "--data-dir", directory.appendingPathComponent("etcd\(host)").path,
                                                       "--listen-client-urls", "http://\(hosts.address(host)):2379", "--advertise-client-urls", "http://\(hosts.address(host)):2379",
                                                       "--listen-peer-urls", "http://\(hosts.address(host)):2380", "--initial-advertise-peer-urls", "http://\(hosts.address(host)):2380",
                                                       "--initial-cluster", cluster, "--pre-vote"], directory: directory, log: "etcd\(host).log")
        }
        let store = "etcd://" + (1...3).map { "\(hosts.address($0)):2379" }.joined(separator: ",")
        func startServer(_ host: Int) throws {
            try hosts.start(in: host, capstan, ["server", "--store", store, "--allow-plaintext-etcd", "--insecure", "--name", "s\(host)",
                                                "--listen", "\(hosts.address(host)):7070", "--data-dir", directory.appendingPathComponent("s\(host)").path],
                            directory: directory, environment: ["CAPSTAN_CONFIG": directory.appendingPathComponent("config-\(host)").path], log: "server\(host).log")
        }
        func log() -> String {
            (1...3).map { "--- server \($0):\n" + ((try? String(contentsOf: directory.appendingPathComponent("server\($0).log"), encoding: .utf8)) ?? "").suffix(3000) }.joined(separator: "\n")
        }
        do {
            try startServer(1)
            let token = directory.appendingPathComponent("s1/admin.token")
            try await eventually("server 1 starts (etcd elected its leader)", timeout: 60) { FileManager.default.fileExists(atPath: token.path) }
            for host in 2...3 {
                try FileManager.default.createDirectory(at: directory.appendingPathComponent("s\(host)"), withIntermediateDirectories: true)
                try FileManager.default.copyItem(at: directory.appendingPathComponent("s1/secrets.keys"), to: directory.appendingPathComponent("s\(host)/secrets.keys"))
                try startServer(host)
            }
            let admin = try String(contentsOf: token, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            /// Whether the server on `host` believes it leads (its own /metrics), nil if unreachable.
            func leads(_ host: Int) async -> Bool? {
                guard let answer = try? await hosts.run(in: host, "curl -s -m 1 -H 'Authorization: Bearer \(admin)' http://\(hosts.address(host)):7070/metrics"),
                      answer.status == 0, let line = answer.output.split(separator: "\n").first(where: { $0.hasPrefix("capstan_leader ") }) else { return nil }
                return line.hasSuffix(" 1.0")
            }
            func leaders() async -> [Int] {
                var found: [Int] = []
                for host in 1...3 where await leads(host) == true { found.append(host) }
                return found
            }
            var leader = 0
            try await eventually("one of three servers leads", timeout: 60) {
                let now = await leaders()
                if now.count == 1 { leader = now[0] }
                guard now.count == 1 else { return false }
                for host in 1...3 where await leads(host) == nil { return false }
                return true
            }
            // Cut the leader's machine off; sample who believes it leads until another does.
            _ = try TestHosts.shell("ip -n \(hosts.lan) link set v\(hosts.id)\(leader) down")
            let cut = ContinuousClock.now
            var steppedDown: Duration?
            var newLeader: (host: Int, after: Duration)?
            var twoAtOnce = false
            while ContinuousClock.now - cut < .seconds(40), newLeader == nil || steppedDown == nil {
                let now = await leaders()
                if now.count > 1 { twoAtOnce = true }
                if steppedDown == nil, !now.contains(leader) { steppedDown = ContinuousClock.now - cut }
                if newLeader == nil, let other = now.first(where: { $0 != leader }) { newLeader = (other, ContinuousClock.now - cut) }
                try await Task.sleep(for: .milliseconds(50))
            }
            print("partition: the cut-off leader s\(leader) stopped leading after \(steppedDown.map { "\($0)" } ?? "never"); s\(newLeader.map { "\($0.host)" } ?? "?") led after \(newLeader.map { "\($0.after)" } ?? "never")")
            let down = try #require(steppedDown, "the cut-off leader kept leading\n\(log())")
            let next = try #require(newLeader, "no server on the majority side led\n\(log())")
            #expect(down < next.after && !twoAtOnce, "two servers believed they led at once")
            // The majority side serves writes.
            let majority = next.host
            let apply = try await hosts.run(in: majority, "printf 'kind: Secret\\nmetadata: {name: during-partition}\\nspec: {data: {k: dg==}}\\n' | \(capstan) apply -f - --server http://\(hosts.address(majority)):7070 --token \(admin)")
            #expect(apply.status == 0, "\(apply.output)")
            // Heal: the old leader follows; still one leader.
            _ = try TestHosts.shell("ip -n \(hosts.lan) link set v\(hosts.id)\(leader) up")
            try await eventually("the healed server answers", timeout: 40) {
                await leads(leader) != nil
            }
            // Still never two at once, and one leader when it settles.
            var after: [Int] = []
            for _ in 0..<40 {
                after = await leaders()
                if after.count > 1 { twoAtOnce = true }
                try await Task.sleep(for: .milliseconds(50))
            }
            #expect(after.count == 1 && !twoAtOnce, "one leader after the heal: \(after)")
            // The healed server serves what was written during the partition.
            let read = try await hosts.run(in: leader, "\(capstan) get secrets --server http://\(hosts.address(leader)):7070 --token \(admin)")
            #expect(read.output.contains("during-partition"), "\(read.output)")
        } catch {
            Issue.record("\(error)\n\(log())")
        }
    }
}
