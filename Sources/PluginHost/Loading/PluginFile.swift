import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A plugin file opened once for all the loader's checks, like sshd's StrictModes: it must be a
/// regular file owned by the user the host runs as (or root), writable by nobody else, in a
/// folder writable by nobody else (or sticky, like /tmp). The hash is taken from this open
/// descriptor and dlopen maps it through `/proc/self/fd/N`: a file swapped after the check is
/// never the one loaded.
final class PluginFile {
    let path: String
    let descriptor: Int32
    let sha256: String?

    /// `/proc/self/fd/N`: what dlopen opens.
    var procPath: String { "/proc/self/fd/\(descriptor)" }

    private init(path: String, descriptor: Int32, sha256: String?) {
        self.path = path
        self.descriptor = descriptor
        self.sha256 = sha256
    }

    /// Set once dlopen mapped the file: the descriptor then stays open for the life of the
    /// process. glibc knows the library by its name, `/proc/self/fd/N`; were N closed and reused
    /// by the next plugin file, dlopen would hand back this library instead of opening the new
    /// one. Plugins are never unloaded (DESIGN.md rule 7), so this costs one descriptor each.
    private var mapped = false

    func keepOpen() { mapped = true }

    deinit { if !mapped { close(descriptor) } }

    static func open(_ path: String) throws(LoadFailure) -> PluginFile {
        let descriptor = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw LoadFailure(.file, "\(path) cannot be opened: \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            close(descriptor)
            throw LoadFailure(.file, "\(path) cannot be examined: \(String(cString: strerror(errno)))")
        }
        if let problem = problem(file: info, path: path) ?? folderProblem(path) {
            close(descriptor)
            throw LoadFailure(.permissions, problem)
        }
        return PluginFile(path: path, descriptor: descriptor, sha256: hash(descriptor))
    }

    /// Why the file's owner or mode makes it unsafe to load, or nil.
    static func problem(file info: stat, path: String) -> String? {
        let me = geteuid()
        if info.st_mode & S_IFMT != S_IFREG { return "\(path) is not a regular file" }
        if info.st_uid != me && info.st_uid != 0 {
            return "\(path) is owned by uid \(info.st_uid), not by uid \(me) that runs Capstan (or root): another user could change what it runs; chown it"
        }
        if info.st_mode & (S_IWGRP | S_IWOTH) != 0 {
            return "\(path) is writable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))): anyone who can write it could run code as Capstan; chmod go-w it"
        }
        return nil
    }

    /// Why the file's folder is unsafe (another user could replace the file), or nil.
    static func folderProblem(_ path: String) -> String? {
        let folder = (path as NSString).deletingLastPathComponent.isEmpty ? "." : (path as NSString).deletingLastPathComponent
        var info = stat()
        guard stat(folder, &info) == 0 else { return nil }
        let me = geteuid()
        if info.st_uid != me && info.st_uid != 0 {
            return "its folder \(folder) is owned by uid \(info.st_uid), not by uid \(me) that runs Capstan (or root): its owner could replace the plugin"
        }
        let sticky = info.st_mode & S_ISVTX != 0
        if info.st_mode & (S_IWGRP | S_IWOTH) != 0 && !sticky {
            return "its folder \(folder) is writable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))): anyone could replace the plugin; chmod go-w it"
        }
        return nil
    }

    private static func hash(_ descriptor: Int32) -> String? {
        var hasher = SHA256()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        var offset: off_t = 0
        while true {
            let count = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress, $0.count, offset) }
            if count < 0 { return nil }
            if count == 0 { break }
            hasher.update(data: buffer[0..<count])
            offset += off_t(count)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
