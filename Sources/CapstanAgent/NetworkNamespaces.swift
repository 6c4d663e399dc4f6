import CapstanSDK
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The network namespaces the agent makes for instances whose network plugin isolates them
/// (CNI): one per instance, bind-mounted at `/run/netns/capstan-<node>_<instance>` so it
/// outlives the agent (an agent restart re-adopts it) and `ip netns` lists it. Made before the
/// network plugin wires it and the runtime starts the instance in it; removed after both are done.
public struct NetworkNamespaces: Sendable {
    let directory: String
    let prefix: String

    public init(nodeName: String, directory: String = "/run/netns") {
        self.directory = directory
        // `_` appears in neither a node's nor an instance's name: node `a` never claims `a-b`'s.
        prefix = "capstan-\(nodeName)_"
    }

    public func path(for instance: String) -> String { "\(directory)/\(prefix)\(instance)" }

    /// The instance's namespace, made now unless it already exists (then it is reused: a
    /// retry after a failed start, or an adopted instance).
    public func create(for instance: String) async throws -> String {
        let path = path(for: instance)
        if Self.isNamespace(path) { return path }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        if Self.sharedOnce.withLock({ done in defer { done = true }; return !done }) { Self.makeShared(directory) }
        let fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o444)
        if fd >= 0 { close(fd) } else if errno != EEXIST {
            throw PluginError(.internal, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        // A fresh thread leaves its namespace for a new one and binds it to the file; the
        // thread then ends, so no other code of the agent ever runs in it.
        let failure: String? = await withCheckedContinuation { continuation in
            let thread = Thread {
                guard let unshare = Self.unshareCall, unshare(Self.newNetwork) == 0 else {
                    continuation.resume(returning: "unshare(CLONE_NEWNET): \(String(cString: strerror(errno)))")
                    return
                }
                // This thread's namespace (not the process's: only this thread unshared).
                let source = "/proc/thread-self/ns/net"
                guard mount(source, path, nil, UInt(MS_BIND), nil) == 0 else {
                    continuation.resume(returning: "mount \(source) on \(path): \(String(cString: strerror(errno)))")
                    return
                }
                continuation.resume(returning: nil)
            }
            thread.name = "capstan-netns-new"
            thread.start()
        }
        if let failure {
            unlink(path)
            throw PluginError(.internal, "cannot make the network namespace of instance \(instance) (the agent must run as root): \(failure)")
        }
        return path
    }

    /// Unmounts and deletes the instance's namespace file; the namespace ends with its last
    /// process. Nothing to do when there is none.
    public func remove(for instance: String) {
        let path = path(for: instance)
        _ = umount2(path, Int32(MNT_DETACH))
        unlink(path)
    }

    /// The instances that have a namespace here (for garbage collection after a restart).
    func instances() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
    }

    /// Makes the folder a mount of its own with shared propagation, as `ip netns` does: an
    /// instance with a mount namespace of its own (a process instance with its resolv.conf)
    /// then sees namespace files unmounted here go away too, instead of keeping every other
    /// instance's network namespace alive.
    /// Whether this process has made the folder shared (once is enough).
    static let sharedOnce = Mutex(false)

    static func makeShared(_ directory: String) {
        if !isMountPoint(directory) {
            _ = mount(directory, directory, nil, UInt(MS_BIND | MS_REC), nil)
        }
        _ = mount("none", directory, nil, UInt(MS_SHARED | MS_REC), nil)
    }

    /// True when `path` is a mount point of this mount namespace (`/proc/self/mountinfo`'s
    /// fifth field). A bind mount of a folder onto itself keeps its device number, so `stat`
    /// cannot tell.
    static func isMountPoint(_ path: String) -> Bool {
        guard let table = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return false }
        return table.split(separator: "\n").contains { line in
            let fields = line.split(separator: " ", maxSplits: 5)
            return fields.count > 4 && fields[4] == path
        }
    }

    /// True when `path` is a namespace mount (its device is nsfs), not a leftover empty file.
    static func isNamespace(_ path: String) -> Bool {
        var file = stat()
        var parent = stat()
        guard stat(path, &file) == 0, stat((path as NSString).deletingLastPathComponent, &parent) == 0 else { return false }
        return file.st_dev != parent.st_dev
    }

    typealias Unshare = @convention(c) (Int32) -> Int32
    static let newNetwork: Int32 = 0x4000_0000
    static let unshareCall: Unshare? = dlsym(nil, "unshare").map { unsafeBitCast($0, to: Unshare.self) }
}
