import CapstanEtcd
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Leader failover on a real etcd (Debian's etcd-server, started here on loopback): a leader
/// stops renewing as if killed (its campaign ends without resigning), and the time until a
/// waiting member leads is measured, 10 times. This is the election alone — the part of
/// "leader killed → new leader scheduling again" that etcd and the lease TTL decide.
///
///   .build/release/capstan-bench election          # CAPSTAN_BENCH_TTL=2 by default, the servers' TTL
enum ElectionBenchmark {
    static func run() async {
        guard let binary = ["/usr/bin/etcd", "/usr/local/bin/etcd"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            print("## leader election\nskipped: needs Debian's etcd-server\n")
            return
        }
        let ttl = Int64(ProcessInfo.processInfo.environment["CAPSTAN_BENCH_TTL"] ?? "") ?? 2
        let directory = NSTemporaryDirectory() + "capstan-bench-etcd-\(UUID().uuidString.prefix(8))"
        let client = 24_000 + Int.random(in: 0..<2000)
        let etcd = Process()
        etcd.executableURL = URL(fileURLWithPath: binary)
        etcd.arguments = ["--name", "b", "--data-dir", directory, "--listen-client-urls", "http://127.0.0.1:\(client)", "--advertise-client-urls", "http://127.0.0.1:\(client)",
                          "--listen-peer-urls", "http://127.0.0.1:\(client + 1)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(client + 1)",
                          "--initial-cluster", "b=http://127.0.0.1:\(client + 1)"]
        etcd.standardOutput = FileHandle.nullDevice
        etcd.standardError = FileHandle.nullDevice
        defer {
            kill(etcd.processIdentifier, SIGKILL)
            etcd.waitUntilExit()
            try? FileManager.default.removeItem(atPath: directory)
        }
        do {
            try etcd.run()
            let endpoint = "http://127.0.0.1:\(client)"
            for _ in 0..<100 {
                if (try? await EtcdClient(endpoints: [endpoint]).range(Array("x".utf8))) != nil { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            var samples: [Double] = []
            for round in 0..<10 {
                let leader = LeaderElection(client: EtcdClient(endpoints: [endpoint]), key: "/bench/leader", identity: "a\(round)", ttl: ttl, resignsOnCancel: false)
                var leading: AsyncStream<LeaderElection.State>? = leader.campaign()
                var a = leading!.makeAsyncIterator()
                guard case .leading? = await a.next() else { continue }
                let follower = LeaderElection(client: EtcdClient(endpoints: [endpoint]), key: "/bench/leader", identity: "b\(round)", ttl: ttl)
                let following = follower.campaign()
                var b = following.makeAsyncIterator()
                _ = await b.next()
                let killed = ContinuousClock.now
                _ = consume a
                leading = nil
                while let state = await b.next() {
                    if case .leading = state { break }
                }
                let elapsed = ContinuousClock.now - killed
                samples.append(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
                _ = following
            }
            samples.sort()
            print("## leader election (etcd 3.4 on loopback, lease TTL \(ttl) s)")
            print("failover after the leader stops renewing, \(samples.count) times: p50 \(format(samples[samples.count / 2], 2)) s, p99 \(format(samples.last ?? 0, 2)) s\n")
        } catch {
            print("## leader election\nfailed: \(error)\n")
        }
    }
}
