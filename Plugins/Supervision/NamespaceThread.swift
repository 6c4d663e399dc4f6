import CapstanSDK
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs a piece of work on a fresh thread that has first entered an instance's namespaces, so
/// the processes it starts (`posix_spawn` clones the calling thread's namespaces) are born in
/// them. Linux keeps namespaces per thread; the thread ends with the work, so no other code of
/// this process ever runs in them.
public enum NamespaceThread {
    /// - Parameters:
    ///   - network: a network namespace file to enter (`setns`).
    ///   - resolvConf: a file to bind over `/etc/resolv.conf` in a new mount namespace (whose
    ///     mounts do not propagate back to the node's).
    ///   - mounts: in that mount namespace, each volume bound at its container path, as a
    ///     container would see it — where that path is a folder on the node (a process shares the
    ///     node's file system: nothing is created there); elsewhere the instance uses
    ///     `CAPSTAN_VOLUME_<CLAIM>`.
    public static func run<T: Sendable>(network: String?, resolvConf: String?, mounts: [RuntimeMount] = [], _ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            let thread = Thread {
                continuation.resume(with: Result {
                    try enter(network: network, resolvConf: resolvConf, mounts: resolvConf == nil ? [] : mounts)
                    return try work()
                })
            }
            thread.name = "capstan-netns"
            thread.start()
        }
    }

    /// glibc's `setns` and `unshare` (GNU extensions Swift does not import) and their flags.
    typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    typealias Unshare = @convention(c) (Int32) -> Int32
    static let newNetwork: Int32 = 0x4000_0000
    static let newMounts: Int32 = 0x0002_0000
    static let setnsCall: SetNS? = dlsym(nil, "setns").map { unsafeBitCast($0, to: SetNS.self) }
    static let unshareCall: Unshare? = dlsym(nil, "unshare").map { unsafeBitCast($0, to: Unshare.self) }

    private static func enter(network: String?, resolvConf: String?, mounts: [RuntimeMount]) throws {
        if let network {
            let fd = open(network, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw PluginError(.failedPrecondition, "cannot open network namespace \(network): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            guard let setnsCall, setnsCall(fd, newNetwork) == 0 else { throw PluginError(.internal, "cannot enter network namespace \(network): \(String(cString: strerror(errno)))") }
        }
        if let resolvConf {
            guard let unshareCall, unshareCall(newMounts) == 0 else { throw PluginError(.internal, "cannot make a mount namespace for resolv.conf: \(String(cString: strerror(errno)))") }
            // Mounts made here stay here (slave: the node's later mounts still show).
            guard mount("none", "/", nil, UInt(MS_REC | MS_SLAVE), nil) == 0,
                  mount(resolvConf, "/etc/resolv.conf", nil, UInt(MS_BIND), nil) == 0 else {
                throw PluginError(.internal, "cannot show \(resolvConf) at /etc/resolv.conf: \(String(cString: strerror(errno)))")
            }
            for volume in mounts {
                var isFolder: ObjCBool = false
                guard FileManager.default.fileExists(atPath: volume.containerPath, isDirectory: &isFolder), isFolder.boolValue else { continue }
                guard mount(volume.hostPath, volume.containerPath, nil, UInt(MS_BIND | MS_REC), nil) == 0 else {
                    throw PluginError(.internal, "cannot show volume \(volume.hostPath) at \(volume.containerPath): \(String(cString: strerror(errno)))")
                }
                if volume.readOnly, mount(nil, volume.containerPath, nil, UInt(MS_BIND | MS_REMOUNT | MS_RDONLY), nil) != 0 {
                    throw PluginError(.internal, "cannot make \(volume.containerPath) read-only: \(String(cString: strerror(errno)))")
                }
            }
        }
    }
}
