import CapstanSDK
import Foundation
import PluginHost
import Testing

/// The runc runtime, through its .so. Tests that run containers need root, runc and Debian's
/// busybox-static (their root file system is built with Examples/busybox-rootfs); the others run
/// anywhere.
@Suite struct RuncRuntimeTests {
    let directory = Fixtures.temporaryDirectory("capstan-runc")

    /// True where containers can run: root, runc on PATH (or in /usr/sbin), a static busybox.
    static let canRunContainers: Bool = {
        geteuid() == 0 && runc != nil && FileManager.default.isExecutableFile(atPath: "/bin/busybox")
    }()

    static let runc: String? = ["/usr/local/sbin/runc", "/usr/sbin/runc", "/usr/bin/runc", "/sbin/runc"].first { FileManager.default.isExecutableFile(atPath: $0) }
    static let umoci: String? = ["/usr/local/bin/umoci", "/usr/bin/umoci"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// A busybox root file system built once per test run with the example's script.
    static let rootfs = Task<String, any Error> {
        let destination = Fixtures.temporaryDirectory("capstan-rootfs").appendingPathComponent("rootfs").path
        let script = Fixtures.repository.appendingPathComponent("Examples/busybox-rootfs/build-rootfs.sh").path
        try await Fixtures.run("/bin/sh", [script, destination])
        return destination
    }

    /// Ids are unique per test run: cgroups (`/capstan/<id>`) are shared by every runtime root.
    func uniqueID(_ name: String) -> String { "\(name)-\(UUID().uuidString.prefix(6).lowercased())" }

    func runtime(root: String? = nil, library: String = Fixtures.plugin("CapstanRuncRuntime")) throws -> any RuntimePlugin {
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: library, config: .object(["root": .string(root ?? directory.appendingPathComponent("root").path)]))], stateDirectory: directory.appendingPathComponent("state").path)
        let host = PluginHost.load(configuration)
        #expect(host.isClean, "\(host.reports)")
        return try #require(host.registry.runtime(named: "runc"))
    }


    /// Creates and starts a busybox container.
    func run(_ runtime: any RuntimePlugin, _ id: String, _ script: String, limits: ResourceVector = ResourceVector(), env: [String: String] = [:], hostname: String? = nil, mounts: [RuntimeMount] = [], labels: [String: String] = [:], securityContext: SecurityContext? = nil) async throws -> RuntimeInstanceStatus {
        let rootfs = try await Self.rootfs.value
        var request = CreateInstanceRequest(id: id, command: ["sh", "-c", script], env: env, image: rootfs, limits: limits, mounts: mounts, hostname: hostname, labels: labels)
        request.securityContext = securityContext
        _ = try await runtime.create(request)
        return try await runtime.start(id)
    }

    // MARK: securityContext (issue 10: instances run with less than root)

    static let statusScript = "id -u; id -g; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status"

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers)) func containersGetAReducedCapabilitySetNoNewPrivilegesAndSeccomp() async throws {
        let runtime = try runtime()
        let id = uniqueID("defaults")
        _ = try await run(runtime, id, Self.statusScript)
        _ = try await waitFor(runtime, id, .exited)
        let lines = try await text(runtime, id).split(separator: "\n").map(String.init)
        #expect(lines.first == "0")
        // CAP_AUDIT_WRITE (29), CAP_KILL (5), CAP_NET_BIND_SERVICE (10) and nothing else.
        #expect(lines.contains { $0.hasPrefix("CapEff:") && $0.hasSuffix("0000000020000420") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("NoNewPrivs:") && $0.hasSuffix("1") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("Seccomp:") && $0.hasSuffix("2") }, "\(lines)")
        try await runtime.remove(id)
    }

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers)) func runAsUserGroupAndDroppedCapabilitiesAreHonoured() async throws {
        let runtime = try runtime()
        let id = uniqueID("nobody")
        let context = SecurityContext(runAsUser: 1000, runAsGroup: 2000, capabilities: CapabilityChanges(drop: ["ALL"]))
        _ = try await run(runtime, id, Self.statusScript + "; unshare -U true 2>&1 || echo unshare-refused", securityContext: context)
        _ = try await waitFor(runtime, id, .exited)
        let output = try await text(runtime, id)
        let lines = output.split(separator: "\n").map(String.init)
        #expect(Array(lines.prefix(2)) == ["1000", "2000"], "\(output)")
        #expect(lines.contains { $0.hasPrefix("CapEff:") && $0.hasSuffix("0000000000000000") }, "\(output)")
        // unshare is refused by the seccomp filter (EPERM), not merely absent.
        #expect(output.contains("Operation not permitted") && output.contains("unshare-refused"), "\(output)")
        try await runtime.remove(id)
    }

    @Test func aWritableRootIsRefusedWithTheField() async throws {
        let runtime = try runtime()
        var request = CreateInstanceRequest(id: uniqueID("writable"), command: ["true"], image: "/nonexistent")
        request.securityContext = SecurityContext(readOnlyRootFilesystem: false)
        do {
            _ = try await runtime.create(request)
            Issue.record("a writable root was accepted")
        } catch let error as PluginError {
            #expect(error.code == .invalidArgument && error.message.contains("securityContext.readOnlyRootFilesystem"))
        }
    }

    func runcList(_ root: String) async throws -> String {
        try await Fixtures.run(try #require(Self.runc), ["--root", "\(root)/runc", "list", "--quiet"])
    }

    // MARK: Containers

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers)) func runsAContainerWithLogsAndExitCode() async throws {
        let runtime = try runtime()
        let id = uniqueID("hello")
        let started = try await run(runtime, id, "echo hi; echo oops >&2; exit 3", labels: ["workload": "hello"])
        #expect(started.state == .running || started.state == .exited)
        // RuntimeWait (SDK 1.3): woken by `runc run`'s exit, no polling.
        let waiter = try #require(runtime as? any RuntimeWait, "the runc runtime offers RuntimeWait")
        let done = try await waiter.wait(id)
        #expect(done.exitCode == 3 && done.reason == "Error", "\(done)")
        #expect(try await text(runtime, id) == "hi\n")
        #expect(try await text(runtime, id, .stderr) == "oops\n")
        #expect(try await runtime.list().first { $0.id == id }?.labels == ["workload": "hello"])
        #expect(runtime.capabilities == RuntimeCapabilities(enforcesResourceLimits: true, runsImages: true, isolatedNetwork: false))
        try await runtime.remove(id)
    }

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers)) func aMissingProgramFailsWithRuncsMessage() async throws {
        let runtime = try runtime()
        let id = uniqueID("missing")
        _ = try await runtime.create(CreateInstanceRequest(id: id, command: ["no-such-program"], image: try await Self.rootfs.value))
        _ = try await runtime.start(id)
        let done = try await waitFor(runtime, id, .exited)
        #expect(done.exitCode == 1 && done.reason == "Error", "\(done)")
        #expect(try await text(runtime, id, .stderr).contains("no-such-program\\\": executable file not found"))
        try await runtime.remove(id)
    }

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers)) func hostnameEnvironmentAndMountsAreVisibleInside() async throws {
        let runtime = try runtime()
        let id = uniqueID("inside")
        let data = directory.appendingPathComponent("data")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try "from the host\n".write(to: data.appendingPathComponent("note"), atomically: true, encoding: .utf8)
        let script = "echo \"$(hostname) $GREETING $PATH\"; cat /data/note; touch /made-here 2>/dev/null || echo root-read-only; touch /tmp/scratch && echo tmp-writable; touch /data/x 2>/dev/null || echo data-read-only"
        _ = try await run(runtime, id, script, env: ["GREETING": "hello"], hostname: "box-1", mounts: [RuntimeMount(hostPath: data.path, containerPath: "/data", readOnly: true)])
        let done = try await waitFor(runtime, id, .exited)
        let errors = try await text(runtime, id, .stderr)
        #expect(done.exitCode == 0, "\(errors)")
        #expect(try await text(runtime, id) == "box-1 hello /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nfrom the host\nroot-read-only\ntmp-writable\ndata-read-only\n")
        // Without a hostname the container is named after its id.
        let unnamed = uniqueID("unnamed")
        _ = try await run(runtime, unnamed, "hostname")
        _ = try await waitFor(runtime, unnamed, .exited)
        #expect(try await text(runtime, unnamed) == "\(unnamed)\n")
        try await runtime.remove(id)
        try await runtime.remove(unnamed)
    }

    /// Issue 11: a container joins the network namespace the request names (made here with
    /// `ip netns add`, holding only a dummy-free loopback) and sees the resolv.conf it brings.
    @Test(.enabled(if: RuncRuntimeTests.canRunContainers && NetworkNamespace.available)) func aContainerJoinsItsNetworkNamespaceAndResolvConf() async throws {
        let runtime = try runtime()
        let id = uniqueID("netns")
        let namespace = try await NetworkNamespace.make()
        defer { namespace.remove() }
        let resolv = directory.appendingPathComponent("resolv.conf")
        try "nameserver 10.244.0.1\nsearch capstan.local\n".write(to: resolv, atomically: true, encoding: .utf8)
        let rootfs = try await Self.rootfs.value
        var request = CreateInstanceRequest(id: id, command: ["sh", "-c", "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '; cat /etc/resolv.conf"], image: rootfs)
        request.networkNamespace = namespace.path
        request.resolvConf = resolv.path
        _ = try await runtime.create(request)
        _ = try await runtime.start(id)
        let done = try await waitFor(runtime, id, .exited)
        let errors = try await text(runtime, id, .stderr)
        #expect(done.exitCode == 0, "\(errors)")
        #expect(try await text(runtime, id) == "lo\nnameserver 10.244.0.1\nsearch capstan.local\n")
        try await runtime.remove(id)
    }

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers)) func stopSendsTermToTheContainer() async throws {
        let runtime = try runtime()
        let id = uniqueID("polite")
        let running = try await run(runtime, id, "trap 'echo got-term; exit 0' TERM; while :; do sleep 0.05; done")
        #expect(running.state == .running && running.pid != nil)
        // Let the shell install its trap: pid 1 of a container ignores signals it has no handler for.
        try await Task.sleep(for: .milliseconds(200))
        let started = Date()
        let stopped = try await runtime.stop(StopInstanceRequest(id: id, gracePeriod: 10))
        #expect(stopped.state == .exited && stopped.exitCode == 0 && stopped.reason == "Completed", "\(stopped)")
        #expect(Date().timeIntervalSince(started) < 5)
        #expect(try await text(runtime, id) == "got-term\n")
        try await runtime.remove(id)
    }

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers)) func stopKillsAfterTheGracePeriod() async throws {
        let runtime = try runtime()
        let id = uniqueID("stubborn")
        _ = try await run(runtime, id, "trap 'echo got-term' TERM; while :; do sleep 0.05; done")
        try await Task.sleep(for: .milliseconds(200))
        let started = Date()
        let stopped = try await runtime.stop(StopInstanceRequest(id: id, gracePeriod: 0.5))
        let took = Date().timeIntervalSince(started)
        #expect(stopped.state == .exited && stopped.exitCode == 137 && stopped.signal == 9, "\(stopped)")
        #expect(stopped.reason == "Killed after grace period")
        // The upper bound only says it did not wait for the process (137 above is the kill); a
        // loaded test process (2 cores, every suite at once) can take seconds more.
        #expect(took >= 0.5 && took < 20, "stop took \(took) s")
        #expect(try await text(runtime, id).contains("got-term"))
        try await runtime.remove(id)
    }

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers)) func stopFinishesEvenWhenTheCallerIsCancelled() async throws {
        let runtime = try runtime()
        let id = uniqueID("cancelled")
        _ = try await run(runtime, id, "trap '' TERM; while :; do sleep 0.05; done")
        let task = Task { try await runtime.stop(StopInstanceRequest(id: id, gracePeriod: 0.3)) }
        task.cancel()
        let result = try await task.value
        #expect(result.state == .exited && result.exitCode == 137, "\(result)")
        try await runtime.remove(id)
    }

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers)) func limitsAreWrittenToTheCgroups() async throws {
        let runtime = try runtime()
        let id = uniqueID("limited")
        let running = try await run(runtime, id, "trap 'exit 0' TERM; sleep 30 & wait", limits: ResourceVector(cpuMilli: 250, memoryBytes: 64 << 20))
        #expect(running.state == .running)
        func read(_ path: String) -> String? {
            (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        // cgroup v1: memory has its own hierarchy; cpu is `cpu` or `cpu,cpuacct` depending on the mounts.
        #expect(read("/sys/fs/cgroup/memory/capstan/\(id)/memory.limit_in_bytes") == "\(64 << 20)")
        let cpu = ["/sys/fs/cgroup/cpu/capstan/\(id)", "/sys/fs/cgroup/cpu,cpuacct/capstan/\(id)"].first { FileManager.default.fileExists(atPath: $0) }
        #expect(cpu.flatMap { read("\($0)/cpu.cfs_quota_us") } == "25000")
        #expect(cpu.flatMap { read("\($0)/cpu.cfs_period_us") } == "100000")
        // The container's init is in that cgroup.
        let pid = try #require(running.pid)
        #expect(read("/proc/\(pid)/cgroup")?.contains("memory:/capstan/\(id)") == true)
        try await runtime.remove(id)
        #expect(!FileManager.default.fileExists(atPath: "/sys/fs/cgroup/memory/capstan/\(id)"))
    }

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers)) func containersOutliveTheirRuntimeAndAreReadopted() async throws {
        let root = directory.appendingPathComponent("readopt").path
        let first = try runtime(root: root)
        let id = uniqueID("survivor")
        let running = try await run(first, id, "echo up; while :; do sleep 0.05; done", labels: ["owner": "web"])
        let pid = try #require(running.pid)
        // A new runtime over the same root: what the agent sees after a restart.
        let copy = directory.appendingPathComponent("libRuncCopy.so").path
        try FileManager.default.copyItem(atPath: Fixtures.plugin("CapstanRuncRuntime"), toPath: copy)
        let second = try runtime(root: root, library: copy)
        let listed = try await second.list()
        #expect(listed.map(\.id) == [id])
        #expect(listed.first?.state == .running && listed.first?.labels == ["owner": "web"])
        #expect(listed.first?.pid == pid)
        #expect(try await runcList(root).contains(id))
        // Killing the container's process: the shim records the exit code even for the new runtime.
        try await second.kill(KillInstanceRequest(id: id, signal: SIGKILL))
        let exited = try await waitFor(second, id, .exited)
        #expect(exited.exitCode == 137, "\(exited)")
        try await second.remove(id)
        #expect(try await second.list().isEmpty)
        #expect(try await !runcList(root).contains(id))
    }

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers)) func removeCleansUpARunningContainer() async throws {
        let root = directory.appendingPathComponent("remove").path
        let runtime = try runtime(root: root)
        let id = uniqueID("doomed")
        _ = try await run(runtime, id, "while :; do sleep 0.05; done")
        #expect(try await runcList(root).contains(id))
        try await runtime.remove(id)
        #expect(try await !runcList(root).contains(id))
        #expect(!FileManager.default.fileExists(atPath: "\(root)/instances/\(id)"))
        await #expect(throws: PluginError.self) { _ = try await runtime.status(id) }
        // Starting again after an exit reuses the bundle.
        let again = uniqueID("again")
        _ = try await run(runtime, again, "echo run")
        _ = try await waitFor(runtime, again, .exited)
        _ = try await runtime.start(again)
        _ = try await waitFor(runtime, again, .exited)
        #expect(try await text(runtime, again) == "run\nrun\n")
        try await runtime.remove(again)
    }

    @Test(.enabled(if: RuncRuntimeTests.canRunContainers && RuncRuntimeTests.umoci != nil)) func ociImageLayoutsAreUnpackedOnceAndGiveTheCommand() async throws {
        let umoci = try #require(Self.umoci)
        let layout = directory.appendingPathComponent("layout").path
        let scratch = directory.appendingPathComponent("scratch").path
        try await Fixtures.run(umoci, ["init", "--layout", layout])
        try await Fixtures.run(umoci, ["new", "--image", "\(layout):v1"])
        try await Fixtures.run(umoci, ["unpack", "--image", "\(layout):v1", scratch])
        try await Fixtures.run("/bin/cp", ["-a", "\(try await Self.rootfs.value)/.", "\(scratch)/rootfs/"])
        try await Fixtures.run(umoci, ["repack", "--image", "\(layout):v1", scratch])
        try await Fixtures.run(umoci, ["config", "--image", "\(layout):v1", "--config.entrypoint", "sh", "--config.cmd", "-c", "--config.cmd", "echo $FLAVOR from $(pwd)", "--config.env", "FLAVOR=oci", "--config.workingdir", "/www"])

        let root = directory.appendingPathComponent("oci").path
        let runtime = try runtime(root: root)
        let ids = [uniqueID("image"), uniqueID("image")]
        for id in ids {
            _ = try await runtime.create(CreateInstanceRequest(id: id, command: [], image: "\(layout):v1"))
            _ = try await runtime.start(id)
            let done = try await waitFor(runtime, id, .exited)
            let errors = try await text(runtime, id, .stderr)
        #expect(done.exitCode == 0, "\(errors)")
            #expect(try await text(runtime, id) == "oci from /www\n")
            try await runtime.remove(id)
        }
        // One unpacked copy for both containers.
        let unpacked = try FileManager.default.contentsOfDirectory(atPath: "\(root)/images").filter { !$0.hasPrefix(".") }
        #expect(unpacked.count == 1 && unpacked[0].hasPrefix("sha256-"))
        let untagged = await #expect(throws: PluginError.self) { _ = try await runtime.create(CreateInstanceRequest(id: "untagged", command: [], image: "\(layout):v2")) }
        #expect(untagged?.message.contains("has no tag \"v2\" (it has: v1)") == true)
    }

    /// How long create + start take until the container's process runs. Opt-in:
    /// `CAPSTAN_RUNC_LATENCY=20 swift test --filter RuncRuntimeTests/startLatency` prints p50/p99.
    @Test(.enabled(if: RuncRuntimeTests.canRunContainers && ProcessInfo.processInfo.environment["CAPSTAN_RUNC_LATENCY"] != nil))
    func startLatency() async throws {
        let rounds = Int(ProcessInfo.processInfo.environment["CAPSTAN_RUNC_LATENCY"] ?? "") ?? 20
        let runtime = try runtime()
        let rootfs = try await Self.rootfs.value
        var create: [Double] = []
        var total: [Double] = []
        for round in 0..<rounds {
            let id = uniqueID("latency-\(round)")
            let began = Date()
            _ = try await runtime.create(CreateInstanceRequest(id: id, command: ["sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"], image: rootfs, limits: ResourceVector(cpuMilli: 500, memoryBytes: 64 << 20)))
            create.append(Date().timeIntervalSince(began) * 1000)
            let status = try await runtime.start(id)
            total.append(Date().timeIntervalSince(began) * 1000)
            #expect(status.state == .running && status.pid != nil)
            try await runtime.remove(id)
        }
        func percentile(_ values: [Double], _ p: Double) -> String {
            let sorted = values.sorted()
            return String(format: "%.1f", sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)])
        }
        print("runc create+start→running over \(rounds) rounds (ms): create p50 \(percentile(create, 0.5)) p99 \(percentile(create, 0.99)); create+start p50 \(percentile(total, 0.5)) p99 \(percentile(total, 0.99)) max \(String(format: "%.1f", total.max() ?? 0))")
    }

    // MARK: Configuration and requests (no runc needed)

    @Test func badConfigurationIsRefusedNamingTheKey() throws {
        func failure(_ config: JSONValue) -> String? {
            let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: Fixtures.plugin("CapstanRuncRuntime"), config: config)], stateDirectory: directory.path)
            return PluginHost.load(configuration).reports[0].plugins[0].failure?.message
        }
        #expect(failure(.object(["runcroot": .string("/x")]))?.contains("plugins[0].config.runcroot: unknown key; expected one of: root, runc, runcRoot, umoci") == true)
        #expect(failure(.object(["root": .string("relative")]))?.contains("plugins[0].config.root: \"relative\" is not an absolute path") == true)
        #expect(failure(.object(["runc": .string("/nonexistent/runc")]))?.contains("plugins[0].config.runc: \"/nonexistent/runc\" is not an executable file") == true)
        #expect(failure(.object([:])) == nil)
    }

    @Test func theExampleWorkloadIsAValidManifest() throws {
        let example = Fixtures.repository.appendingPathComponent("Examples/busybox-rootfs")
        let resources = try ManifestReader.read(file: example.appendingPathComponent("workload.yaml").path)
        guard case .workload(let workload)? = resources.first else {
            Issue.record("expected a Workload, got \(resources)")
            return
        }
        #expect(workload.spec.template.runtime == "runc")
        #expect(workload.spec.template.image?.hasPrefix("/") == true)
        #expect(workload.spec.template.command == ["httpd", "-f", "-p", "8080", "-h", "/www"])
    }

    @Test func createNeedsAnImageThatExists() async throws {
        let runtime = try runtime()
        func message(_ request: CreateInstanceRequest) async -> String? {
            do {
                _ = try await runtime.create(request)
                return nil
            } catch let error as PluginError {
                #expect(error.code == .invalidArgument)
                return error.message
            } catch {
                return "\(error)"
            }
        }
        #expect(await message(CreateInstanceRequest(id: "bare", command: ["sh"]))?.contains("image is missing") == true)
        #expect(await message(CreateInstanceRequest(id: "gone", command: ["sh"], image: "/nonexistent/rootfs"))?.contains("image \"/nonexistent/rootfs\" does not exist") == true)
        #expect(await message(CreateInstanceRequest(id: "relative", command: ["sh"], image: "rootfs"))?.contains("image \"rootfs\" is not an absolute path") == true)
        let empty = directory.appendingPathComponent("empty-rootfs").path
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        #expect(await message(CreateInstanceRequest(id: "nocommand", command: [], image: empty))?.contains("command is empty") == true)
        #expect(await message(CreateInstanceRequest(id: "mounted", command: ["sh"], image: empty, mounts: [RuntimeMount(hostPath: "/nonexistent/data", containerPath: "/data")]))?.contains("/nonexistent/data") == true)
        #expect(await message(CreateInstanceRequest(id: "Bad_Id", command: ["sh"], image: empty))?.contains("instance id") == true)
        // A valid request writes the bundle without needing runc; the same request again is fine.
        let request = CreateInstanceRequest(id: "written", command: ["sh", "-c", "true"], image: empty, limits: ResourceVector(cpuMilli: 5, memoryBytes: 32 << 20))
        #expect(try await runtime.create(request).state == .created)
        #expect(try await runtime.create(request).state == .created)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("root/instances/written/bundle/config.json"))) as? [String: Any]
        let linux = config?["linux"] as? [String: Any]
        #expect(linux?["cgroupsPath"] as? String == "/capstan/written")
        // 5m of cpu is below the kernel's 1 ms minimum quota: rounded up.
        #expect(((linux?["resources"] as? [String: Any])?["cpu"] as? [String: Any])?["quota"] as? Int == 1000)
        #expect((linux?["namespaces"] as? [[String: String]])?.map { $0["type"] } == ["pid", "ipc", "uts", "mount"])
        #expect((config?["root"] as? [String: Any])?["readonly"] as? Bool == true)
        await #expect(throws: PluginError.self) { _ = try await runtime.create(CreateInstanceRequest(id: "written", command: ["sh"], image: empty)) }
        try await runtime.remove("written")
        try await runtime.remove("never-existed")
    }
}
