import CapstanSDK
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Starts an instance's process under a small `/bin/sh` supervisor ("shim") in a new session.
///
/// The shim runs the command as its child, forwards polite signals to it, tells the spawner the
/// child's pid through a pipe (and in the `pid` file), and when the child exits writes its exit
/// status to a file. Because the shim is in its own session and the status is on
/// disk, an instance outlives the agent that started it and its exit code is known even to an
/// agent that re-adopted it after a restart.
public enum ProcessSpawner {
    /// The supervisor script. `$1` is the instance folder; the rest is the command. Shell
    /// builtins only (no `rm`, `mv`): each start costs one `sh`, not three more processes. The
    /// runtime clears the previous run's `pid` and `exit` before it starts the shim; a file
    /// read while being written is empty, which readers take as "not yet".
    public static let shim = #"""
    child=""; pending=""
    for s in TERM INT HUP QUIT USR1 USR2; do trap "pending=$s; [ -n \"\$child\" ] && kill -$s \"\$child\" 2>/dev/null" "$s"; done
    dir="$1"; shift
    cd "${CAPSTAN_WORKDIR:-$dir}" || { echo "capstan: cannot enter working directory $CAPSTAN_WORKDIR" >&2; echo 126 > "$dir/exit"; exit 126; }
    unset CAPSTAN_WORKDIR
    "$@" 3>&- &
    child=$!
    [ -n "$pending" ] && kill -"$pending" "$child" 2>/dev/null
    echo "$child" > "$dir/pid"
    { echo "$child" >&3; } 2>/dev/null; exec 3>&-
    while :; do
      wait "$child"; status=$?
      kill -0 "$child" 2>/dev/null || break
    done
    echo "$status" > "$dir/exit"
    exit "$status"
    """#

    /// glibc's POSIX_SPAWN_SETSID (spawn.h, since 2.26), which Swift does not import.
    static let posixSpawnSetSID: Int32 = 0x80

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34+), which Swift does not import;
    /// nil on an older C library.
    static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// glibc's `pipe2`, which Swift does not import (it needs `_GNU_SOURCE`).
    static let pipe2Function: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32)? = {
        guard let symbol = dlsym(nil, "pipe2") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<Int32>, Int32) -> Int32).self)
    }()

    /// Makes a pipe (`ends[0]` reads, `ends[1]` writes) whose ends are close-on-exec from their
    /// creation: set afterwards, a process spawned at that moment elsewhere in the process (a
    /// CNI plugin, another instance's shim) could inherit an end and hold it open.
    public static func closeOnExecPipe(_ ends: inout [Int32]) -> Bool {
        precondition(ends.count == 2)
        if let pipe2 = pipe2Function {
            return ends.withUnsafeMutableBufferPointer { pipe2($0.baseAddress!, O_CLOEXEC) } == 0
        }
        guard pipe(&ends) == 0 else { return false }
        return fcntl(ends[0], F_SETFD, FD_CLOEXEC) == 0 && fcntl(ends[1], F_SETFD, FD_CLOEXEC) == 0
    }

    /// Shims this process spawned and has not yet finished reaping, with who waits for that.
    static let unreaped = Mutex<[Int32: [CheckedContinuation<Void, Never>]]>([:])

    /// True while `pid` is a shim of ours whose exit is not yet recorded on disk: it counts as
    /// running until the reaper has written its status.
    public static func isPendingChild(_ pid: Int32) -> Bool { unreaped.withLock { $0[pid] != nil } }

    /// Returns once the reaper has recorded the exit of `pid`, a shim of ours (at once for any
    /// other pid).
    public static func waitUntilReaped(_ pid: Int32) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let waiting = unreaped.withLock { table -> Bool in
                guard table[pid] != nil else { return false }
                table[pid]!.append(continuation)
                return true
            }
            if !waiting { continuation.resume() }
        }
    }

    /// What ``spawn(command:environment:workingDir:folder:)`` started.
    public struct Spawned: Sendable {
        /// The shim's pid, also its process group and session.
        public var shim: Int32
        /// The command's pid, as the shim reported it; nil when the shim ended first (the
        /// working directory was missing) or said nothing within five seconds.
        public var command: Int32?
    }

    /// Spawns the shim for an instance and returns once it has forked the command (it reports
    /// the pid through a pipe: no waiting on a timer).
    /// - Parameters:
    ///   - networkNamespace: a network namespace to start the shim in (its file, e.g.
    ///     `/run/netns/…`); nil keeps this process's.
    ///   - resolvConf: a file to show the instance at `/etc/resolv.conf`, the way `ip netns exec`
    ///     shows `/etc/netns/NAME/resolv.conf`: the shim gets a mount namespace of its own with
    ///     that file bound over the node's.
    ///   - mounts: with `resolvConf`, volumes bound at their container paths in that mount
    ///     namespace (only where the path is already a folder on the node).
    public static func spawn(command: [String], environment: [String: String], workingDir: String?, folder: URL,
                             networkNamespace: String? = nil, resolvConf: String? = nil, mounts: [RuntimeMount] = []) async throws -> Spawned {
        var ends: [Int32] = [-1, -1]
        guard closeOnExecPipe(&ends) else {
            throw PluginError(.internal, "cannot make a pipe for the instance's shim: \(String(cString: strerror(errno)))")
        }
        let reader = ends[0]
        var writer = ends[1]
        _ = fcntl(reader, F_SETFL, fcntl(reader, F_GETFL) | O_NONBLOCK)
        if writer == 3 {
            // dup2 onto itself would keep close-on-exec: move it out of the way first.
            let moved = fcntl(writer, F_DUPFD_CLOEXEC, 4)
            close(writer)
            writer = moved
        }
        let shim: Int32
        do {
            let pipeEnd = writer
            if networkNamespace != nil || resolvConf != nil {
                shim = try await NamespaceThread.run(network: networkNamespace, resolvConf: resolvConf, mounts: mounts) {
                    try spawnShim(command: command, environment: environment, workingDir: workingDir, folder: folder, pidPipe: pipeEnd)
                }
            } else {
                shim = try spawnShim(command: command, environment: environment, workingDir: workingDir, folder: folder, pidPipe: writer)
            }
        } catch {
            close(reader)
            close(writer)
            throw error
        }
        close(writer)
        // The shim writes "<pid>\n" at once after its fork; a shim that dies first closes the
        // pipe (end of file). Woken by the pipe, at most five seconds in all.
        let deadline = ContinuousClock.now + .seconds(5)
        var text = ""
        while ContinuousClock.now < deadline {
            var buffer = [UInt8](repeating: 0, count: 32)
            let count = read(reader, &buffer, buffer.count)
            if count > 0 {
                text += String(decoding: buffer[0..<count], as: UTF8.self)
                if text.contains("\n") { break }
                continue
            }
            if count == 0 || (errno != EAGAIN && errno != EINTR) { break }
            let left = deadline - ContinuousClock.now
            await ProcessExit.readable(reader, closing: false, seconds: Double(left.components.seconds) + Double(left.components.attoseconds) / 1e18)
        }
        close(reader)
        return Spawned(shim: shim, command: Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)))
    }

    private static func spawnShim(command: [String], environment: [String: String], workingDir: String?, folder: URL, pidPipe: Int32) throws -> Int32 {
        var env = environment
        if env["PATH"] == nil { env["PATH"] = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" }
        if let workingDir { env["CAPSTAN_WORKDIR"] = workingDir }
        let arguments = ["/bin/sh", "-c", shim, "capstan-shim", folder.path] + command
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = env.sorted(by: { $0.key < $1.key }).map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, folder.appendingPathComponent("stdout.log").path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, folder.appendingPathComponent("stderr.log").path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        // Nothing else of the agent's: an inherited pipe end (Foundation's Pipe is not
        // close-on-exec) would keep a reader elsewhere in the agent from ever seeing EOF for as
        // long as the instance lives, and inherited sockets or database files would outlive the agent.
        // The pid pipe becomes the shim's fd 3 (dup2 clears close-on-exec).
        posix_spawn_file_actions_adddup2(&actions, pidPipe, 3)
        if let closeFrom = closeFrom { _ = closeFrom(&actions, 4) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // A new session: no signal aimed at the agent's group reaches the instance.
        // Default signal handling and an empty mask: the agent may ignore SIGPIPE, the child must not.
        var defaults = sigset_t()
        sigfillset(&defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(posixSpawnSetSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var pid: pid_t = 0
        let status = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, envp)
        guard status == 0 else {
            throw PluginError(.internal, "cannot start /bin/sh for the instance: \(String(cString: strerror(status)))")
        }
        unreaped.withLock { $0[pid] = [] }
        reap(pid, folder: folder)
        return pid
    }

    /// Waits for the shim on a thread of its own, so it never lingers as a zombie, and records
    /// its status (including death by SIGKILL, which the shim cannot write itself).
    public static func reap(_ pid: Int32, folder: URL) {
        let thread = Thread {
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
            let exitFile = folder.appendingPathComponent("exit")
            let recorded = (try? String(contentsOf: exitFile, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            if Int32(recorded) == nil {
                try? "\(code)\n".write(to: exitFile, atomically: true, encoding: .utf8)
            }
            let waiting = unreaped.withLock { $0.removeValue(forKey: pid) } ?? []
            for continuation in waiting { continuation.resume() }
        }
        thread.name = "capstan-reaper-\(pid)"
        thread.start()
    }
}
