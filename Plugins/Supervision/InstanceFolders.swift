import CapstanSDK
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The folders of a supervised runtime's instances, `<root>/<id>/`, each holding the record
/// (`instance.json`), the output (`stdout.log`, `stderr.log`) and the shim's `pid` and `exit`
/// files (see ``ProcessSpawner``).
///
/// Nothing is cached: every answer is read from disk and /proc, so it is as true for an agent
/// that re-adopted the instances after a restart as for the one that started them.
public struct InstanceFolders<Record: SupervisedInstance>: Sendable {
    public let root: URL

    /// Creates `root` if needed.
    public init(root: URL) throws {
        self.root = root
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    public func folder(_ id: String) -> URL { root.appendingPathComponent(id) }

    /// The record of `id`, or nil when there is none (or `id` is not a DNS label).
    public func record(_ id: String) throws -> Record? {
        guard DNSLabel.problem(with: id) == nil,
              let data = FileManager.default.contents(atPath: folder(id).appendingPathComponent("instance.json").path) else { return nil }
        return try JSONDecoder().decode(Record.self, from: data)
    }

    /// Every record, sorted by id.
    public func records() throws -> [Record] {
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return try ids.sorted().compactMap { try record($0) }
    }

    /// Writes the record atomically (a temporary file renamed over it), creating its folder if
    /// needed. Not fsynced: the record serves an agent that restarts on a running machine (a
    /// machine that crashed has no instances left to re-adopt), and an fsync per start would hold
    /// a thread of the agent's small pool for a disk flush.
    public func save(_ record: Record) throws {
        let folder = folder(record.id)
        let target = folder.appendingPathComponent("instance.json")
        let temporary = folder.appendingPathComponent("instance.json.tmp")
        let data = try JSONEncoder().encode(record)
        // Plain POSIX: Foundation's file writes fsync.
        var fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        if fd < 0 && errno == ENOENT {
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        }
        guard fd >= 0 else { throw PluginError(.internal, "cannot write \(temporary.path): \(String(cString: strerror(errno)))") }
        let written = data.withUnsafeBytes { buffer -> Bool in
            var offset = 0
            while offset < buffer.count {
                let count = write(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { return false }
                offset += count
            }
            return true
        }
        close(fd)
        guard written else { throw PluginError(.internal, "cannot write \(temporary.path): \(String(cString: strerror(errno)))") }
        guard rename(temporary.path, target.path) == 0 else {
            throw PluginError(.internal, "cannot rename \(temporary.path): \(String(cString: strerror(errno)))")
        }
    }

    /// Deletes the previous run's `exit` and `pid` files, before a new start.
    public func clearShimFiles(_ id: String) {
        for stale in ["exit", "pid"] { try? FileManager.default.removeItem(at: folder(id).appendingPathComponent(stale)) }
    }

    /// The number in one of the shim's files (`pid`, `exit`), or nil while it is absent.
    public func shimNumber(_ id: String, _ file: String) -> Int32? {
        (try? String(contentsOf: folder(id).appendingPathComponent(file), encoding: .utf8))
            .flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Output of the instance from `request.offset`, up to `request.maxBytes`.
    public func logs(_ request: LogsRequest) throws -> LogChunk {
        let path = folder(request.id).appendingPathComponent("\(request.stream.rawValue).log").path
        guard let handle = FileHandle(forReadingAtPath: path) else { return LogChunk(data: [], nextOffset: request.offset) }
        defer { try? handle.close() }
        // An offset at or past the end (up to UInt64.max, which seek would trap on) reads nothing.
        let size = try handle.seekToEnd()
        guard request.offset < size else { return LogChunk(data: [], nextOffset: request.offset) }
        try handle.seek(toOffset: request.offset)
        let data = try handle.read(upToCount: max(0, request.maxBytes)) ?? Data()
        return LogChunk(data: Array(data), nextOffset: request.offset + UInt64(data.count))
    }

    /// Derives the state from the shim's files and /proc.
    /// - Parameter pid: what to report as the instance's pid (the runtime knows which process
    ///   is "the command").
    public func status(of record: Record, pid: Int32?) -> RuntimeInstanceStatus {
        let folder = folder(record.id)
        guard record.shimPID != nil else {
            return RuntimeInstanceStatus(id: record.id, state: .created, labels: record.labels)
        }
        if let code = shimNumber(record.id, "exit") {
            let signal: Int32? = code > 128 ? code - 128 : nil
            return RuntimeInstanceStatus(id: record.id, state: .exited, pid: pid, exitCode: code, signal: signal, startedAt: record.startedAt, finishedAt: record.finishedAt ?? modificationTime(folder.appendingPathComponent("exit")), labels: record.labels, reason: record.forcedKill ? "Killed after grace period" : (signal != nil ? "Signaled" : (code == 0 ? "Completed" : "Error")))
        }
        if isShimAlive(record) {
            return RuntimeInstanceStatus(id: record.id, state: .running, pid: pid, startedAt: record.startedAt, labels: record.labels)
        }
        // Gone without an exit file: killed with the shim by SIGKILL while no agent watched.
        return RuntimeInstanceStatus(id: record.id, state: .exited, pid: pid, exitCode: record.forcedKill ? 137 : nil, signal: record.forcedKill ? SIGKILL : nil, startedAt: record.startedAt, labels: record.labels, reason: record.forcedKill ? "Killed after grace period" : "Exited while unobserved; exit code unknown")
    }

    /// True while the record's shim runs (or has ended but its status is not yet on disk).
    public func isShimAlive(_ record: Record) -> Bool {
        guard let shim = record.shimPID else { return false }
        return ProcessSpawner.isPendingChild(shim) || ProcessInspection.isAlive(shim, startTicks: record.shimStartTicks)
    }

    /// True while the instance runs.
    public func isRunning(_ record: Record) -> Bool { status(of: record, pid: nil).state == .running }

    /// Returns once the record's shim has ended and its exit is recorded (the shim writes its
    /// `exit` file; for a shim killed by a signal, this process's reaper does): woken by the
    /// kernel (``ProcessExit``), not by a timer. Returns at once for an instance never started,
    /// and early when the calling task is cancelled.
    public func waitForExit(_ record: Record) async {
        guard let shim = record.shimPID else { return }
        await ProcessExit.wait(pid: shim, startTicks: record.shimStartTicks)
        guard !Task.isCancelled else { return }
        await ProcessSpawner.waitUntilReaped(shim)
    }

    /// Waits, ignoring cancellation, while the instance runs.
    /// - Parameter seconds: the longest wait; nil waits as long as it runs.
    /// - Returns: true when it still runs.
    public func waitWhileRunning(_ record: Record, seconds: Double?) async -> Bool {
        guard isRunning(record) else { return false }
        _ = await ProcessExit.within(seconds: seconds ?? FieldLimits.maxSeconds) { await waitForExit(record) }
        return isRunning(record)
    }

    /// Waits, ignoring cancellation, up to `seconds` for the shim to exit (it writes its exit
    /// file just before it exits).
    public func waitForShim(_ record: Record, seconds: Double) async {
        guard isShimAlive(record) else { return }
        _ = await ProcessExit.within(seconds: seconds) { await waitForExit(record) }
    }

    /// Deletes the instance's folder once its shim has gone (up to two seconds are given for
    /// that).
    public func removeFolder(of record: Record) async throws {
        await waitForShim(record, seconds: 2)
        let files = FileManager.default
        do {
            try files.removeItem(at: folder(record.id))
        } catch where files.fileExists(atPath: folder(record.id).path) {
            await Pause.milliseconds(20)
            try files.removeItem(at: folder(record.id))
        }
    }

    private func modificationTime(_ url: URL) -> Double? {
        ((try? FileManager.default.attributesOfItem(atPath: url.path))?[.modificationDate] as? Date)?.timeIntervalSince1970
    }
}
