import CapstanSDK
import CapstanSupervision
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs instances as OCI containers with runc: a root file system (or an unpacked OCI image
/// layout), their own pid, ipc, uts and mount namespaces, cgroup limits for cpu and memory.
/// They share the host's network namespace (no network plugin for containers yet).
///
/// Each instance has a folder `<root>/instances/<id>/` with its record, the OCI bundle
/// (`bundle/config.json`), `stdout.log`, `stderr.log`, and the shim's `pid` and `exit` files.
/// The shim (see ``ProcessSpawner``) runs `runc run` in the foreground: runc forwards signals to
/// the container and exits with its status, which the shim writes to `exit`. The shim has its
/// own session, so containers outlive the agent that started them and are found again by
/// ``list()``.
actor RuncRuntime: RuntimePlugin, RuntimeWait, RuntimeLogWait {
    let folders: InstanceFolders<ContainerRecord>
    private let images: ImageStore
    /// The runc binary; nil when none was configured or found (calls that need it then fail).
    private let runcBinary: String?
    private let runcRoot: String
    /// Ids with a create, start, stop or remove under way, and who waits for them: those calls
    /// suspend while they run runc, and must not interleave for one container.
    private var busy: [String: [CheckedContinuation<Void, Never>]] = [:]
    /// The container's init pid per (id, shim pid): it does not change while the shim lives, so
    /// `status` asks `runc state` (about 6 ms) once per start, not on every poll.
    private var initPIDs: [String: Int32] = [:]

    /// Host files bound read-only into containers that have them, since containers share the
    /// host's network.
    static let hostNetworkFiles = ["/etc/resolv.conf", "/etc/hosts"]
    /// Signals sent to every process of the container rather than its init.
    static let groupSignals: Set<Int32> = [SIGKILL, SIGSTOP, SIGCONT]

    init(configuration: RuncRuntimeConfiguration, context: PluginContext) throws {
        let base = URL(fileURLWithPath: configuration.root ?? context.stateDirectory)
        folders = try InstanceFolders(root: base.appendingPathComponent("instances"))
        images = ImageStore(cache: base.appendingPathComponent("images"), umoci: configuration.umoci)
        runcRoot = configuration.runcRoot ?? base.appendingPathComponent("runc").path
        runcBinary = configuration.runc ?? ExternalCommand.find("runc")
    }

    nonisolated var capabilities: RuntimeCapabilities {
        RuntimeCapabilities(enforcesResourceLimits: true, runsImages: true, isolatedNetwork: false)
    }

    /// Resolves the image (unpacking an OCI layout once) and writes the bundle.
    func create(_ request: CreateInstanceRequest) async throws -> RuntimeInstanceStatus {
        try Self.check(request)
        guard let image = request.image, !image.isEmpty else {
            throw PluginError(.invalidArgument, "image is missing; the runc runtime needs `image`: an absolute path to a root file system directory or an OCI image layout")
        }
        await acquire(request.id)
        defer { release(request.id) }
        if let existing = try folders.record(request.id) {
            guard existing.matches(request) else {
                throw PluginError(.alreadyExists, "instance \"\(request.id)\" exists with another image, command, environment, limits, mounts or labels; remove it first")
            }
            return await status(of: existing)
        }
        if request.securityContext?.readOnlyRootFilesystem == false {
            throw PluginError(.invalidArgument, "securityContext.readOnlyRootFilesystem: runc runs every container on its image's read-only root (shared by every container of the image); write to a volume or /tmp instead")
        }
        let resolved = try await images.resolve(image)
        let args = request.command.isEmpty ? resolved.args : request.command
        guard !args.isEmpty else {
            throw PluginError(.invalidArgument, "command is empty and image \"\(image)\" names none (a root file system directory has no entrypoint); give the program to run")
        }
        let hostFiles = Self.hostNetworkFiles.filter {
            FileManager.default.fileExists(atPath: $0) && FileManager.default.fileExists(atPath: resolved.rootfs + $0)
        }
        let spec = RuntimeSpec(id: request.id, request: request, image: resolved, args: args, hostFiles: hostFiles)
        let bundle = bundle(request.id)
        try FileManager.default.createDirectory(at: bundle, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        try encoder.encode(spec).write(to: bundle.appendingPathComponent("config.json"), options: .atomic)
        let record = ContainerRecord(request, image: image, rootfs: resolved.rootfs)
        try folders.save(record)
        return await status(of: record)
    }

    /// Starts the shim with `runc run` and returns once the container's process runs (or has
    /// already ended), up to ten seconds.
    func start(_ id: String) async throws -> RuntimeInstanceStatus {
        await acquire(id)
        defer { release(id) }
        guard var record = try folders.record(id) else { throw notFound(id) }
        if folders.isRunning(record) { return await status(of: record) }
        let runc = try runc()
        // A container left behind by a runc that was killed with its shim holds the id.
        try await runc.forceDelete(id)
        folders.clearShimFiles(id)
        let spawned = try await ProcessSpawner.spawn(command: runc.runCommand(id: id, bundle: bundle(id).path), environment: [:], workingDir: nil, folder: folders.folder(id))
        record.started(shim: spawned.shim)
        try folders.save(record)
        _ = await containerProcess(record, runc, seconds: 10)
        return await status(of: record)
    }

    /// `runc kill TERM`, up to the grace period, then `runc kill --all KILL`. Runs to the end
    /// even if the calling task is cancelled.
    func stop(_ request: StopInstanceRequest) async throws -> RuntimeInstanceStatus {
        await acquire(request.id)
        defer { release(request.id) }
        return try await stopHoldingID(request)
    }

    func kill(_ request: KillInstanceRequest) async throws {
        guard let record = try folders.record(request.id) else { throw notFound(request.id) }
        let notRunning = PluginError(.failedPrecondition, "instance \"\(request.id)\" is not running")
        guard folders.isRunning(record) else { throw notRunning }
        let runc = try runc()
        guard await containerProcess(record, runc, seconds: 5) != nil else {
            if !folders.isRunning(record) { throw notRunning }
            throw PluginError(.unavailable, "container \"\(request.id)\" is still starting; try again")
        }
        do {
            try await runc.kill(request.id, signal: request.signal, all: Self.groupSignals.contains(request.signal))
        } catch where !folders.isRunning(record) {
            throw notRunning
        }
    }

    func status(_ id: String) async throws -> RuntimeInstanceStatus {
        guard let record = try folders.record(id) else { throw notFound(id) }
        return await status(of: record)
    }

    /// Returns when the container's current run has ended (at once when it is not running):
    /// `runc run` exits with the container, and a pidfd on its shim wakes this.
    func wait(_ id: String) async throws -> RuntimeInstanceStatus {
        guard let record = try folders.record(id) else { throw notFound(id) }
        await folders.waitForExit(record)
        try Task.checkCancellation()
        return await status(of: try folders.record(id) ?? record)
    }

    /// Every container's state; the pids of the running ones from one `runc list`.
    func list() async throws -> [RuntimeInstanceStatus] {
        let records = try folders.records()
        let running = records.map { folders.status(of: $0, pid: nil) }
        guard running.contains(where: { $0.state == .running }), let runc = try? runc() else { return running }
        let pids = Dictionary(((try? await runc.list()) ?? []).filter { $0.status == "running" }.map { ($0.id, $0.pid) }) { first, _ in first }
        return running.map { status in
            var status = status
            if status.state == .running { status.pid = pids[status.id] }
            return status
        }
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

    /// Stops (two seconds' grace), deletes the container from runc and removes the folder.
    func remove(_ id: String) async throws {
        await acquire(id)
        defer { release(id) }
        guard let record = try folders.record(id) else { return }
        _ = try await stopHoldingID(StopInstanceRequest(id: id, gracePeriod: 2))
        await folders.waitForShim(record, seconds: 2)
        if let runc = try? runc() { try await runc.forceDelete(id) }
        try await folders.removeFolder(of: record)
    }

    // MARK: Stopping

    private func stopHoldingID(_ request: StopInstanceRequest) async throws -> RuntimeInstanceStatus {
        guard var record = try folders.record(request.id) else { throw notFound(request.id) }
        guard folders.isRunning(record), let shim = record.shimPID else { return await status(of: record) }
        let runc = try runc()
        // A TERM sent while runc's init still holds the container's pid 1 would be lost (pid 1
        // ignores signals it has no handler for), so wait until the command runs.
        if await containerProcess(record, runc, seconds: 5) != nil {
            // It may end between the check and the kill; then there is nothing to signal.
            try? await runc.kill(request.id, signal: SIGTERM)
        } else if folders.isRunning(record) {
            // runc never got the container going: `runc run` itself takes the signal.
            Glibc.kill(shim, SIGTERM)
        }
        if await folders.waitWhileRunning(record, seconds: request.gracePeriod) {
            record.forcedKill = true
            try folders.save(record)
            try? await runc.kill(request.id, signal: SIGKILL, all: true)
            if await folders.waitWhileRunning(record, seconds: 5) {
                // runc could not end it (the container is gone but `runc run` hangs, or runc
                // itself is stuck): kill the container's init and the shim's process group.
                if let state = try? await runc.state(request.id), state.pid > 0 { Glibc.kill(state.pid, SIGKILL) }
                Glibc.kill(-shim, SIGKILL)
                _ = await folders.waitWhileRunning(record, seconds: nil)
            }
        }
        return await status(of: record)
    }

    // MARK: State

    /// The container's init pid once runc reports it running and it has exec'ed the command
    /// (its command line is no longer `runc init`); nil when the instance stopped running or
    /// `seconds` passed first.
    private func containerProcess(_ record: ContainerRecord, _ runc: RuncCommands, seconds: Double) async -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while folders.isRunning(record) && Date() < deadline {
            if let state = try? await runc.state(record.id), state.status == "running", !isRuncInit(state.pid, runc) {
                return state.pid
            }
            await Pause.milliseconds(5)
        }
        return nil
    }

    private func isRuncInit(_ pid: Int32, _ runc: RuncCommands) -> Bool {
        guard let line = ProcessInspection.commandLine(of: pid) else { return false }
        let arguments = line.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return arguments == [runc.binary, "init"]
    }

    /// The state from the shim's files, with the container's init pid from `runc state` while
    /// it runs.
    private func status(of record: ContainerRecord) async -> RuntimeInstanceStatus {
        var status = folders.status(of: record, pid: nil)
        guard status.state == .running else { return status }
        let key = "\(record.id)#\(record.shimPID ?? 0)"
        if let known = initPIDs[key] {
            status.pid = known
        } else if let runc = try? runc(), let state = try? await runc.state(record.id), state.status == "running" {
            status.pid = state.pid
            initPIDs = initPIDs.filter { !$0.key.hasPrefix("\(record.id)#") }
            initPIDs[key] = state.pid
        }
        return status
    }

    func runc() throws -> RuncCommands {
        guard let runcBinary else {
            throw PluginError(.failedPrecondition, "runc is not on PATH (nor in /usr/local/sbin, /usr/sbin, /sbin); install Debian's runc, or set `runc` in the plugin's config")
        }
        // Made on first use, not when the plugin loads (`plugins verify` creates nothing).
        try? FileManager.default.createDirectory(atPath: runcRoot, withIntermediateDirectories: true)
        return RuncCommands(binary: runcBinary, stateRoot: runcRoot)
    }

    private func bundle(_ id: String) -> URL { folders.folder(id).appendingPathComponent("bundle") }

    func notFound(_ id: String) -> PluginError {
        PluginError(.notFound, "instance \"\(id)\" does not exist on this node")
    }

    // MARK: One call per container at a time

    private func acquire(_ id: String) async {
        guard busy[id] != nil else {
            busy[id] = []
            return
        }
        await withCheckedContinuation { busy[id, default: []].append($0) }
    }

    /// Hands the id to the next waiting call, or frees it.
    private func release(_ id: String) {
        guard var waiting = busy[id], !waiting.isEmpty else {
            busy[id] = nil
            return
        }
        let next = waiting.removeFirst()
        busy[id] = waiting
        next.resume()
    }

    // MARK: Requests

    /// Problems with the request that need no file system look-up.
    private static func check(_ request: CreateInstanceRequest) throws {
        if let problem = DNSLabel.problem(with: request.id) { throw PluginError(.invalidArgument, "instance id \(problem)") }
        if let workingDir = request.workingDir, !workingDir.hasPrefix("/") {
            throw PluginError(.invalidArgument, "workingDir \"\(workingDir)\" is not an absolute path")
        }
        if let hostname = request.hostname {
            let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
            guard (1...64).contains(hostname.count), hostname.allSatisfy(allowed.contains) else {
                throw PluginError(.invalidArgument, "hostname \"\(hostname)\" is not a host name (1 to 64 letters, digits, '-' and '.')")
            }
        }
        for mount in request.mounts {
            guard mount.containerPath.hasPrefix("/"), mount.containerPath != "/" else {
                throw PluginError(.invalidArgument, "mount target \"\(mount.containerPath)\" is not an absolute path below /")
            }
            guard mount.hostPath.hasPrefix("/"), FileManager.default.fileExists(atPath: mount.hostPath) else {
                throw PluginError(.invalidArgument, "mount source \"\(mount.hostPath)\" (for \(mount.containerPath)) does not exist or is not an absolute path")
            }
        }
    }
}

@_cdecl("capstan_plugin_v1")
public func capstanPluginV1() -> UnsafeRawPointer {
    PluginExport.handshake(name: "runc-runtime", version: "1.0.0", kinds: [.runtime]) { registrar in
        try registrar.register(runtime: "runc", configuration: RuncRuntimeConfiguration.self) { configuration, context in
            try RuncRuntime(configuration: configuration, context: context)
        }
    }
}
