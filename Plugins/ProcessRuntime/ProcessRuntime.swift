import CapstanSDK
import CapstanSupervision
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Settings of the process runtime.
struct ProcessRuntimeConfiguration: PluginConfiguration {
    /// Where instance folders live; defaults to the plugin's state directory.
    var root: String?

    enum CodingKeys: String, CodingKey, CaseIterable { case root }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(CodingKeys.allCases.map(\.rawValue), in: decoder)
        root = try container.decodeIfPresent(String.self, forKey: .root)
    }

    func validate() -> [ValidationProblem] {
        if let root, !root.hasPrefix("/") { return [ValidationProblem(path: "root", message: "\"\(root)\" is not an absolute path")] }
        return []
    }
}

/// Runs instances as plain host processes: no isolation, no image, limits recorded but not
/// enforced (use the runc runtime for that). Each instance has a folder
/// `<root>/instances/<id>/` with its record, `stdout.log`, `stderr.log`, and the shim's `pid`
/// and `exit` files; see ``ProcessSpawner``.
///
/// Not an actor: it holds no state in memory (everything is on disk and in /proc), so calls for
/// different instances run in parallel; the agent makes one call at a time per instance.
final class ProcessRuntime: RuntimePlugin, RuntimeWait, RuntimeLogWait {
    let folders: InstanceFolders<InstanceRecord>

    init(configuration: ProcessRuntimeConfiguration, context: PluginContext) throws {
        folders = try InstanceFolders(root: URL(fileURLWithPath: configuration.root ?? context.stateDirectory).appendingPathComponent("instances"))
    }

    var capabilities: RuntimeCapabilities {
        RuntimeCapabilities(enforcesResourceLimits: false, runsImages: false, isolatedNetwork: false)
    }

    func create(_ request: CreateInstanceRequest) async throws -> RuntimeInstanceStatus {
        if let problem = DNSLabel.problem(with: request.id) { throw PluginError(.invalidArgument, "instance id \(problem)") }
        guard !request.command.isEmpty else { throw PluginError(.invalidArgument, "command is empty; give the program to run") }
        if request.image != nil { throw PluginError(.invalidArgument, "the process runtime runs no images; drop `image` or use the runc runtime") }
        let launcher = try Self.launcher(for: request.securityContext)
        if let existing = try folders.record(request.id) {
            guard existing.matches(request, launcher: launcher) else {
                throw PluginError(.alreadyExists, "instance \"\(request.id)\" exists with another command, environment, labels or securityContext; remove it first")
            }
            return status(of: existing)
        }
        let record = InstanceRecord(request, launcher: launcher)
        try folders.save(record)
        return status(of: record)
    }

    func start(_ id: String) async throws -> RuntimeInstanceStatus {
        guard var record = try folders.record(id) else { throw notFound(id) }
        let current = status(of: record)
        if current.state == .running { return current }
        folders.clearShimFiles(id)
        let spawned = try await ProcessSpawner.spawn(command: (record.launcher ?? []) + record.command, environment: record.env, workingDir: record.workingDir, folder: folders.folder(id),
                                                    networkNamespace: record.networkNamespace, resolvConf: record.resolvConf, mounts: record.resolvConf == nil ? [] : record.mounts ?? [])
        record.started(shim: spawned.shim)
        try folders.save(record)
        var started = status(of: record)
        started.pid = started.pid ?? spawned.command
        return started
    }

    /// Returns when the instance's current run has ended (at once when it is not running),
    /// woken by the kernel through a pidfd on its shim.
    func wait(_ id: String) async throws -> RuntimeInstanceStatus {
        guard let record = try folders.record(id) else { throw notFound(id) }
        await folders.waitForExit(record)
        try Task.checkCancellation()
        return status(of: try folders.record(id) ?? record)
    }

    /// SIGTERM to the shim (which forwards it), up to the grace period, then SIGKILL to the whole
    /// process group. Runs to the end even if the calling task is cancelled.
    func stop(_ request: StopInstanceRequest) async throws -> RuntimeInstanceStatus {
        guard var record = try folders.record(request.id) else { throw notFound(request.id) }
        guard folders.isRunning(record), let pid = record.shimPID else { return status(of: record) }
        Glibc.kill(await signalTarget(record) ?? pid, SIGTERM)
        if await folders.waitWhileRunning(record, seconds: request.gracePeriod) {
            record.forcedKill = true
            try folders.save(record)
            Glibc.kill(-pid, SIGKILL)
            _ = await folders.waitWhileRunning(record, seconds: nil)
        }
        return status(of: record)
    }

    func kill(_ request: KillInstanceRequest) async throws {
        guard let record = try folders.record(request.id) else { throw notFound(request.id) }
        guard folders.isRunning(record), let pid = record.shimPID else {
            throw PluginError(.failedPrecondition, "instance \"\(request.id)\" is not running")
        }
        // SIGKILL and SIGSTOP/SIGCONT go to the whole group; others to the command itself.
        let group: Set<Int32> = [SIGKILL, SIGSTOP, SIGCONT]
        let target = group.contains(request.signal) ? -pid : (await signalTarget(record) ?? pid)
        if Glibc.kill(target, request.signal) != 0 {
            throw PluginError(.internal, "kill(\(request.signal)) failed: \(String(cString: strerror(errno)))")
        }
    }

    func status(_ id: String) async throws -> RuntimeInstanceStatus {
        guard let record = try folders.record(id) else { throw notFound(id) }
        return status(of: record)
    }

    func list() async throws -> [RuntimeInstanceStatus] {
        try folders.records().map { status(of: $0) }
    }

    func logs(_ request: LogsRequest) async throws -> LogChunk {
        guard try folders.record(request.id) != nil else { throw notFound(request.id) }
        return try folders.logs(request)
    }

    /// Holds the read open until output arrives (inotify on the log file), at most `seconds`.
    func waitForLogs(_ request: LogsRequest, seconds: Double) async throws -> LogChunk {
        guard try folders.record(request.id) != nil else { throw notFound(request.id) }
        return try await folders.waitForLogs(request, seconds: seconds)
    }

    func remove(_ id: String) async throws {
        guard let record = try folders.record(id) else { return }
        _ = try await stop(StopInstanceRequest(id: id, gracePeriod: 2))
        try await folders.removeFolder(of: record)
    }

    // MARK: State

    /// The command's own pid, once it has replaced the shim's forked copy (exec). A signal sent
    /// between the shim's fork and the command's exec would hit the shell's inherited trap and be
    /// lost, so this waits (up to a second) until the child's command line differs from the
    /// shim's. Nil when the command never started; the caller then signals the shim, which
    /// forwards.
    private func signalTarget(_ record: InstanceRecord) async -> Int32? {
        guard let shim = record.shimPID else { return nil }
        let deadline = Date().addingTimeInterval(1)
        while Date() < deadline {
            if let child = folders.shimNumber(record.id, "pid") {
                guard let childLine = ProcessInspection.commandLine(of: child) else { return nil }
                if childLine != ProcessInspection.commandLine(of: shim) { return child }
            } else if !ProcessInspection.isAlive(shim, startTicks: record.shimStartTicks) {
                return nil
            }
            await Pause.milliseconds(1)
        }
        return nil
    }

    /// The state, with the command's pid from the shim's `pid` file.
    func status(of record: InstanceRecord) -> RuntimeInstanceStatus {
        folders.status(of: record, pid: folders.shimNumber(record.id, "pid"))
    }

    func notFound(_ id: String) -> PluginError {
        PluginError(.notFound, "instance \"\(id)\" does not exist on this node")
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "process-runtime", version: "1.0.0", kinds: [.runtime]) { registrar in
        try registrar.register(runtime: "process", configuration: ProcessRuntimeConfiguration.self) { configuration, context in
            try ProcessRuntime(configuration: configuration, context: context)
        }
    }
}
