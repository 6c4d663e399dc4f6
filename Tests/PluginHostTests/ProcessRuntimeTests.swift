import CapstanSDK
import Foundation
import PluginHost
import Synchronization
import Testing

/// The process runtime, through its .so, spawning real processes.
@Suite struct ProcessRuntimeTests {
    let directory = Fixtures.temporaryDirectory("capstan-runtime")

    func runtime(state: String? = nil, library: String = Fixtures.plugin("CapstanProcessRuntime")) throws -> any RuntimePlugin {
        let configuration = HostConfiguration(pluginPaths: [], plugins: [.init(path: library)], stateDirectory: state ?? directory.appendingPathComponent("state").path)
        return try #require(PluginHost.load(configuration).registry.runtime(named: "process"))
    }


    @Test func runsWithEnvironmentWorkingDirectoryAndLogs() async throws {
        let runtime = try runtime()
        let workdir = directory.appendingPathComponent("work")
        try FileManager.default.createDirectory(at: workdir, withIntermediateDirectories: true)
        _ = try await runtime.create(CreateInstanceRequest(id: "hello", command: ["/bin/sh", "-c", "echo \"$GREETING from $(pwd)\"; echo oops >&2; exit 3"], env: ["GREETING": "hi"], workingDir: workdir.path, labels: ["workload": "hello"]))
        #expect(try await runtime.status("hello").state == .created)
        _ = try await runtime.start("hello")
        let done = try await waitFor(runtime, "hello", .exited)
        #expect(done.exitCode == 3)
        #expect(done.reason == "Error")
        #expect(try await text(runtime, "hello") == "hi from \(workdir.path)\n")
        #expect(try await text(runtime, "hello", .stderr) == "oops\n")
        #expect(try await runtime.list().first { $0.id == "hello" }?.labels == ["workload": "hello"])
        // Logs read from an offset.
        let tail = try await runtime.logs(LogsRequest(id: "hello", offset: 3))
        #expect(String(decoding: tail.data, as: UTF8.self) == "from \(workdir.path)\n")
        // Offsets at or past the end, up to the largest (FileHandle.seek trapped on 2^63), read
        // nothing (issue 10, crash 1).
        for offset in [UInt64(100), UInt64(Int64.max), UInt64(Int64.max) + 1, UInt64.max] {
            let past = try await runtime.logs(LogsRequest(id: "hello", offset: offset))
            #expect(past.data.isEmpty && past.nextOffset == offset)
        }
    }

    /// SDK 1.3 `RuntimeWait` (issue 9): the exit wakes the waiter (a pidfd), nothing polls.
    /// Issue 11: a process instance runs inside the network namespace the request names and
    /// sees the request's resolv.conf at /etc/resolv.conf (its own mount namespace; the node's
    /// file is untouched).
    @Test(.enabled(if: NetworkNamespace.available)) func aProcessRunsInItsNetworkNamespaceWithItsResolvConf() async throws {
        let runtime = try runtime()
        let namespace = try await NetworkNamespace.make()
        defer { namespace.remove() }
        let resolv = directory.appendingPathComponent("resolv.conf")
        try "nameserver 10.244.0.1\n".write(to: resolv, atomically: true, encoding: .utf8)
        let before = try String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8)
        var request = CreateInstanceRequest(id: "netns-0", command: ["sh", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; cat /etc/resolv.conf"])
        request.networkNamespace = namespace.path
        request.resolvConf = resolv.path
        _ = try await runtime.create(request)
        _ = try await runtime.start("netns-0")
        _ = try await waitFor(runtime, "netns-0", .exited)
        let errors = try await text(runtime, "netns-0", .stderr)
        #expect(try await text(runtime, "netns-0") == "lo\nnameserver 10.244.0.1\n", "\(errors)")
        #expect(try String(contentsOfFile: "/etc/resolv.conf", encoding: .utf8) == before)
        try await runtime.remove("netns-0")
    }

    @Test func waitReturnsWhenTheInstanceExits() async throws {
        let runtime = try runtime()
        let waiter = try #require(runtime as? any RuntimeWait, "the process runtime offers RuntimeWait")
        // Exits 7 once the test creates `go`: no timing guesses.
        let go = directory.appendingPathComponent("go-\(UUID().uuidString.prefix(6))").path
        _ = try await runtime.create(CreateInstanceRequest(id: "waited", command: ["/bin/sh", "-c", "while [ ! -e \(go) ]; do sleep 0.02; done; exit 7"]))
        // Not started: answered at once.
        #expect(try await waiter.wait("waited").state == .created)
        let started = try await runtime.start("waited")
        #expect(started.state == .running && started.pid != nil, "\(started)")
        let finished = Flag()
        let waitingForGo = Task {
            defer { finished.set() }
            return try await waiter.wait("waited")
        }
        try await Task.sleep(for: .milliseconds(200))
        #expect(!finished.isSet, "wait returned while the instance still ran")
        _ = FileManager.default.createFile(atPath: go, contents: nil)
        let exited = try await waitingForGo.value
        #expect(exited.state == .exited && exited.exitCode == 7, "\(exited)")
        // Exited: answered at once, the same.
        #expect(try await waiter.wait("waited").exitCode == 7)
        await #expect(throws: PluginError.self) { _ = try await waiter.wait("nobody") }

        // Cancelling a wait leaves the instance running; a SIGKILL of the command ends the next.
        _ = try await runtime.create(CreateInstanceRequest(id: "sleeper", command: ["/bin/sleep", "30"]))
        let sleeper = try await runtime.start("sleeper")
        let cancelled = Task { try await waiter.wait("sleeper") }
        try await Task.sleep(for: .milliseconds(100))
        cancelled.cancel()
        let outcome = await cancelled.result
        #expect(throws: CancellationError.self) { _ = try outcome.get() }
        #expect(try await runtime.status("sleeper").state == .running)
        let waiting = Task { try await waiter.wait("sleeper") }
        kill(try #require(sleeper.pid), SIGKILL)
        #expect(try await waiting.value.exitCode == 137)
    }

    /// SDK 1.3 `RuntimeLogWait`: a read held open is woken by new output (inotify).
    @Test func logReadsWaitForOutput() async throws {
        let runtime = try runtime()
        let waiter = try #require(runtime as? any RuntimeLogWait)
        let go = directory.appendingPathComponent("go-\(UUID().uuidString.prefix(6))").path
        _ = try await runtime.create(CreateInstanceRequest(id: "talker", command: ["/bin/sh", "-c", "echo first; while [ ! -e \(go) ]; do sleep 0.02; done; echo second; sleep 30"]))
        _ = try await runtime.start("talker")
        var first = LogChunk(data: [], nextOffset: 0)
        for _ in 0..<50 where first.data.isEmpty { first = try await waiter.waitForLogs(LogsRequest(id: "talker"), seconds: 5) }
        #expect(String(decoding: first.data, as: UTF8.self) == "first\n")
        // Nothing new: the read waits its time out and comes back empty.
        let clock = ContinuousClock()
        var before = clock.now
        let none = try await waiter.waitForLogs(LogsRequest(id: "talker", offset: first.nextOffset), seconds: 0.3)
        #expect(none.data.isEmpty && clock.now - before >= .milliseconds(250))
        // New output ends the wait at once.
        before = clock.now
        let reading = Task { try await waiter.waitForLogs(LogsRequest(id: "talker", offset: first.nextOffset), seconds: 20) }
        try await Task.sleep(for: .milliseconds(100))
        _ = FileManager.default.createFile(atPath: go, contents: nil)
        let second = try await reading.value
        #expect(String(decoding: second.data, as: UTF8.self) == "second\n")
        #expect(clock.now - before < .seconds(10), "woken by the output, not the 20 s limit")
        try await runtime.remove("talker")
    }

    @Test func stopSendsTermThenKillsAfterTheGracePeriod() async throws {
        let runtime = try runtime()
        // Ignores SIGTERM: only SIGKILL ends it.
        _ = try await runtime.create(CreateInstanceRequest(id: "stubborn", command: ["/bin/sh", "-c", "trap 'echo got-term' TERM; while :; do sleep 0.05; done"]))
        _ = try await runtime.start("stubborn")
        _ = try await waitFor(runtime, "stubborn", .running)
        try await Task.sleep(for: .milliseconds(200))
        let started = Date()
        let stopped = try await runtime.stop(StopInstanceRequest(id: "stubborn", gracePeriod: 0.5))
        let took = Date().timeIntervalSince(started)
        #expect(stopped.state == .exited)
        #expect(stopped.exitCode == 137 && stopped.signal == 9)
        #expect(stopped.reason == "Killed after grace period")
        // The upper bound only says it did not wait for the process: the reason and 137 above are
        // the kill; a loaded test process (2 cores, every suite at once) can take seconds more.
        #expect(took >= 0.5 && took < 20)
        #expect(try await text(runtime, "stubborn").contains("got-term"))
    }

    /// A grace period that is no number (NaN, infinite, negative) is held to a range, not a trap.
    @Test func stopTakesAnyGracePeriodWithoutTrapping() async throws {
        let runtime = try runtime()
        for (round, grace) in [Double.nan, -5, .infinity].enumerated() {
            let id = "odd-grace-\(round)"
            _ = try await runtime.create(CreateInstanceRequest(id: id, command: ["/bin/sleep", "30"]))
            _ = try await runtime.start(id)
            let stopped = try await runtime.stop(StopInstanceRequest(id: id, gracePeriod: grace))
            #expect(stopped.state == .exited, "\(grace): \(stopped)")
        }
    }

    @Test func politeProcessesStopOnTerm() async throws {
        let runtime = try runtime()
        _ = try await runtime.create(CreateInstanceRequest(id: "polite", command: ["/bin/sleep", "30"]))
        _ = try await runtime.start("polite")
        _ = try await waitFor(runtime, "polite", .running)
        let stopped = try await runtime.stop(StopInstanceRequest(id: "polite", gracePeriod: 10))
        #expect(stopped.exitCode == 143 && stopped.signal == 15)
        #expect(stopped.reason == "Signaled")
    }

    @Test func stopRightAfterStartIsNeverLost() async throws {
        // Regression: a SIGTERM sent between the shim's fork and the command's exec was swallowed.
        let runtime = try runtime()
        for round in 0..<15 {
            let id = "quick-\(round)"
            _ = try await runtime.create(CreateInstanceRequest(id: id, command: ["/bin/sleep", "30"]))
            _ = try await runtime.start(id)
            let stopped = try await runtime.stop(StopInstanceRequest(id: id, gracePeriod: 5))
            #expect(stopped.exitCode == 143, "round \(round): \(stopped)")
        }
    }

    @Test func instancesOutliveTheirRuntimeAndAreReadopted() async throws {
        let state = directory.appendingPathComponent("readopt").path
        let first = try runtime(state: state)
        _ = try await first.create(CreateInstanceRequest(id: "survivor", command: ["/bin/sh", "-c", "echo up; sleep 30"], labels: ["owner": "web"]))
        // `start` returns the command's own pid (the shim reports it through a pipe).
        let started = try await first.start("survivor")
        let running = try await first.status("survivor")
        #expect(started.pid != nil && started.pid == running.pid)
        // A new runtime over the same state: what the agent sees after a restart.
        let copy = directory.appendingPathComponent("libRuntimeCopy.so").path
        try FileManager.default.copyItem(atPath: Fixtures.plugin("CapstanProcessRuntime"), toPath: copy)
        let second = try runtime(state: state, library: copy)
        let listed = try await second.list()
        #expect(listed.map(\.id) == ["survivor"])
        #expect(listed[0].state == .running && listed[0].labels == ["owner": "web"])
        #expect(listed[0].pid == running.pid && running.pid != nil)
        // Killing the real process: the shim records the exit code even for the re-adopting runtime.
        let pid = try #require(listed[0].pid)
        // The re-adopting runtime did not start the shim, and is still told of its end.
        let waiter = try #require(second as? any RuntimeWait)
        let waiting = Task { try await waiter.wait("survivor") }
        kill(pid, SIGKILL)
        let exited = try await waiting.value
        #expect(exited.state == .exited && exited.exitCode == 137)
        try await second.remove("survivor")
        #expect(try await second.list().isEmpty)
    }

    @Test func stopFinishesEvenWhenTheCallerIsCancelled() async throws {
        let runtime = try runtime()
        _ = try await runtime.create(CreateInstanceRequest(id: "cancelled", command: ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"]))
        _ = try await runtime.start("cancelled")
        _ = try await waitFor(runtime, "cancelled", .running)
        try await Task.sleep(for: .milliseconds(100))
        let task = Task { try await runtime.stop(StopInstanceRequest(id: "cancelled", gracePeriod: 0.3)) }
        task.cancel()
        let result = try await task.value
        #expect(result.state == .exited && result.exitCode == 137)
    }

    @Test func instancesInheritNoDescriptorsOfTheAgent() async throws {
        // Regression: a pipe the agent had open (Foundation's Pipe is not close-on-exec) leaked
        // into instances, so its reader saw no EOF until they ended.
        let runtime = try runtime()
        let pipe = Pipe()
        let leaked = pipe.fileHandleForWriting.fileDescriptor
        _ = try await runtime.create(CreateInstanceRequest(id: "sealed", command: ["/bin/sh", "-c", "ls /proc/$$/fd"]))
        _ = try await runtime.start("sealed")
        _ = try await waitFor(runtime, "sealed", .exited)
        let descriptors = try await text(runtime, "sealed").split(separator: "\n").compactMap { Int32($0) }
        #expect(descriptors.contains(1) && !descriptors.contains(leaked), "\(descriptors), pipe \(leaked)")
        try pipe.fileHandleForWriting.close()
    }

    @Test func createIsIdempotentAndRefusesChanges() async throws {
        let runtime = try runtime()
        let request = CreateInstanceRequest(id: "same", command: ["/bin/true"])
        _ = try await runtime.create(request)
        _ = try await runtime.create(request)
        do {
            _ = try await runtime.create(CreateInstanceRequest(id: "same", command: ["/bin/false"]))
            Issue.record("expected alreadyExists")
        } catch let error as PluginError {
            #expect(error.code == .alreadyExists)
        }
        await #expect(throws: PluginError.self) { _ = try await runtime.status("missing") }
        try await runtime.remove("missing")
    }

    // MARK: securityContext (issue 10: instances run with less than root)

    static let canChangeUser = geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")

    @Test(.enabled(if: ProcessRuntimeTests.canChangeUser, "needs root and util-linux's setpriv"))
    func runAsUserAndNoNewPrivilegesAreHonoured() async throws {
        let runtime = try runtime()
        var request = CreateInstanceRequest(id: "nobody", command: ["/bin/sh", "-c", "id -u; id -g; grep -E '^(NoNewPrivs|CapBnd):' /proc/self/status"], workingDir: "/")
        request.securityContext = SecurityContext(runAsUser: 65534, allowPrivilegeEscalation: false, capabilities: CapabilityChanges(drop: ["ALL"]))
        _ = try await runtime.create(request)
        _ = try await runtime.start("nobody")
        _ = try await waitFor(runtime, "nobody", .exited)
        let lines = try await text(runtime, "nobody").split(separator: "\n").map(String.init)
        // The group defaults to the user's id, never root's group.
        #expect(Array(lines.prefix(2)) == ["65534", "65534"], "\(lines)")
        #expect(lines.contains { $0.hasPrefix("NoNewPrivs:") && $0.hasSuffix("1") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("CapBnd:") && $0.hasSuffix("0000000000000000") }, "\(lines)")
    }

    @Test func aReadOnlyRootIsRefusedWithTheField() async throws {
        let runtime = try runtime()
        var request = CreateInstanceRequest(id: "readonly", command: ["true"])
        request.securityContext = SecurityContext(readOnlyRootFilesystem: true)
        do {
            _ = try await runtime.create(request)
            Issue.record("a read-only root was accepted")
        } catch let error as PluginError {
            #expect(error.code == .invalidArgument && error.message.contains("securityContext.readOnlyRootFilesystem"))
        }
    }
}

/// A one-way flag shared with a task.
final class Flag: Sendable {
    private let value = Mutex(false)
    func set() { value.withLock { $0 = true } }
    var isSet: Bool { value.withLock { $0 } }
}
