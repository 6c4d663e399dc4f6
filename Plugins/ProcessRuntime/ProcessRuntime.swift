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
actor ProcessRuntime: RuntimePlugin {
    nonisolated let root: URL
    private let files = FileManager.default

    init(configuration: ProcessRuntimeConfiguration, context: PluginContext) throws {
        root = URL(fileURLWithPath: configuration.root ?? context.stateDirectory).appendingPathComponent("instances")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    nonisolated var capabilities: RuntimeCapabilities {
        RuntimeCapabilities(enforcesResourceLimits: false, runsImages: false, isolatedNetwork: false)
    }

    func create(_ request: CreateInstanceRequest) async throws -> RuntimeInstanceStatus {
        if let problem = DNSLabel.problem(with: request.id) { throw PluginError(.invalidArgument, "instance id \(problem)") }
        guard !request.command.isEmpty else { throw PluginError(.invalidArgument, "command is empty; give the program to run") }
        if request.image != nil { throw PluginError(.invalidArgument, "the process runtime runs no images; drop `image` or use the runc runtime") }
        if let existing = try record(request.id) {
            guard existing.matches(request) else {
                throw PluginError(.alreadyExists, "instance \"\(request.id)\" exists with another command, environment or labels; remove it first")
            }
            return status(of: existing)
        }
        try files.createDirectory(at: folder(request.id), withIntermediateDirectories: true)
        let record = InstanceRecord(request)
        try save(record)
        return status(of: record)
    }

    func start(_ id: String) async throws -> RuntimeInstanceStatus {
        guard var record = try record(id) else { throw notFound(id) }
        let current = status(of: record)
        if current.state == .running { return current }
        for stale in ["exit", "pid"] { try? files.removeItem(at: folder(id).appendingPathComponent(stale)) }
        let pid = try ProcessSpawner.spawn(command: record.command, environment: record.env, workingDir: record.workingDir, folder: folder(id))
        record.shimPID = pid
        record.shimStartTicks = ProcessInspection.startTicks(of: pid)
        record.startedAt = Date().timeIntervalSince1970
        record.finishedAt = nil
        record.forcedKill = false
        try save(record)
        return status(of: record)
    }

    /// SIGTERM to the shim (which forwards it), up to the grace period, then SIGKILL to the whole
    /// process group. Runs to the end even if the calling task is cancelled.
    func stop(_ request: StopInstanceRequest) async throws -> RuntimeInstanceStatus {
        guard var record = try record(request.id) else { throw notFound(request.id) }
        guard status(of: record).state == .running, let pid = record.shimPID else { return status(of: record) }
        Glibc.kill(await signalTarget(record) ?? pid, SIGTERM)
        let deadline = Date().addingTimeInterval(max(0, request.gracePeriod))
        while status(of: record).state == .running && Date() < deadline {
            await ProcessRuntime.pause(milliseconds: 10)
        }
        if status(of: record).state == .running {
            record.forcedKill = true
            try save(record)
            Glibc.kill(-pid, SIGKILL)
            while status(of: record).state == .running {
                await ProcessRuntime.pause(milliseconds: 5)
            }
        }
        return status(of: record)
    }

    func kill(_ request: KillInstanceRequest) async throws {
        guard let record = try record(request.id) else { throw notFound(request.id) }
        guard status(of: record).state == .running, let pid = record.shimPID else {
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
        guard let record = try record(id) else { throw notFound(id) }
        return status(of: record)
    }

    func list() async throws -> [RuntimeInstanceStatus] {
        let ids = (try? files.contentsOfDirectory(atPath: root.path)) ?? []
        return try ids.sorted().compactMap { try record($0) }.map { status(of: $0) }
    }

    func logs(_ request: LogsRequest) async throws -> LogChunk {
        guard try record(request.id) != nil else { throw notFound(request.id) }
        let path = folder(request.id).appendingPathComponent("\(request.stream.rawValue).log").path
        guard let handle = FileHandle(forReadingAtPath: path) else { return LogChunk(data: [], nextOffset: request.offset) }
        defer { try? handle.close() }
        try handle.seek(toOffset: request.offset)
        let data = try handle.read(upToCount: max(0, request.maxBytes)) ?? Data()
        return LogChunk(data: Array(data), nextOffset: request.offset + UInt64(data.count))
    }

    func remove(_ id: String) async throws {
        guard let record = try record(id) else { return }
        _ = try await stop(StopInstanceRequest(id: id, gracePeriod: 2))
        // The shim writes its exit file just before it exits: let it finish before deleting.
        if let shim = record.shimPID {
            let deadline = Date().addingTimeInterval(2)
            while (ProcessSpawner.isPendingChild(shim) || ProcessInspection.isAlive(shim, startTicks: record.shimStartTicks)) && Date() < deadline {
                await ProcessRuntime.pause(milliseconds: 5)
            }
        }
        do {
            try files.removeItem(at: folder(id))
        } catch where files.fileExists(atPath: folder(id).path) {
            await ProcessRuntime.pause(milliseconds: 20)
            try files.removeItem(at: folder(id))
        }
    }

    // MARK: State

    /// The command's own pid, once it has replaced the shim's forked copy (exec). A signal sent
    /// between the shim's fork and the command's exec would hit the shell's inherited trap and be
    /// lost, so this waits (up to a second) until the child's command line differs from the
    /// shim's. Nil when the command never started; the caller then signals the shim, which
    /// forwards.
    private func signalTarget(_ record: InstanceRecord) async -> Int32? {
        guard let shim = record.shimPID else { return nil }
        let pidFile = folder(record.id).appendingPathComponent("pid").path
        let deadline = Date().addingTimeInterval(1)
        while Date() < deadline {
            if let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
               let child = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
                guard let childLine = ProcessInspection.commandLine(of: child) else { return nil }
                if childLine != ProcessInspection.commandLine(of: shim) { return child }
            } else if !ProcessInspection.isAlive(shim, startTicks: record.shimStartTicks) {
                return nil
            }
            await ProcessRuntime.pause(milliseconds: 1)
        }
        return nil
    }

    /// Derives the state from the shim's files and /proc; nothing is cached, so it is as true
    /// after an agent restart as before it.
    func status(of record: InstanceRecord) -> RuntimeInstanceStatus {
        let folder = folder(record.id)
        let childPID = (try? String(contentsOf: folder.appendingPathComponent("pid"), encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        guard let shimPID = record.shimPID else {
            return RuntimeInstanceStatus(id: record.id, state: .created, labels: record.labels)
        }
        if let text = try? String(contentsOf: folder.appendingPathComponent("exit"), encoding: .utf8),
           let code = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)) {
            let signal: Int32? = code > 128 ? code - 128 : nil
            return RuntimeInstanceStatus(id: record.id, state: .exited, pid: childPID, exitCode: code, signal: signal, startedAt: record.startedAt, finishedAt: record.finishedAt ?? modificationTime(folder.appendingPathComponent("exit")), labels: record.labels, reason: record.forcedKill ? "Killed after grace period" : (signal != nil ? "Signaled" : (code == 0 ? "Completed" : "Error")))
        }
        if ProcessSpawner.isPendingChild(shimPID) || ProcessInspection.isAlive(shimPID, startTicks: record.shimStartTicks) {
            return RuntimeInstanceStatus(id: record.id, state: .running, pid: childPID, startedAt: record.startedAt, labels: record.labels)
        }
        // Gone without an exit file: killed with the shim by SIGKILL while no agent watched.
        return RuntimeInstanceStatus(id: record.id, state: .exited, pid: childPID, exitCode: record.forcedKill ? 137 : nil, signal: record.forcedKill ? SIGKILL : nil, startedAt: record.startedAt, labels: record.labels, reason: record.forcedKill ? "Killed after grace period" : "Exited while unobserved; exit code unknown")
    }

    private func modificationTime(_ url: URL) -> Double? {
        ((try? files.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date)?.timeIntervalSince1970
    }

    func folder(_ id: String) -> URL { root.appendingPathComponent(id) }

    func record(_ id: String) throws -> InstanceRecord? {
        guard DNSLabel.problem(with: id) == nil,
              let data = files.contents(atPath: folder(id).appendingPathComponent("instance.json").path) else { return nil }
        return try JSONDecoder().decode(InstanceRecord.self, from: data)
    }

    private func save(_ record: InstanceRecord) throws {
        try JSONEncoder().encode(record).write(to: folder(record.id).appendingPathComponent("instance.json"), options: .atomic)
    }

    func notFound(_ id: String) -> PluginError {
        PluginError(.notFound, "instance \"\(id)\" does not exist on this node")
    }

    /// Sleeps without observing cancellation: a stop that began must finish.
    static func pause(milliseconds: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) { continuation.resume() }
        }
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
