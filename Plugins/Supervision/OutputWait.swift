import CapstanSDK
import Foundation
#if canImport(Glibc)
import Glibc
#endif

extension InstanceFolders {
    /// The output from `request.offset`, waiting up to `seconds` (at most 60) for some to be
    /// written when there is none yet: woken by inotify on the log file, not by a timer.
    public func waitForLogs(_ request: LogsRequest, seconds: Double) async throws -> LogChunk {
        let first = try logs(request)
        guard first.data.isEmpty, seconds > 0 else { return first }
        let path = folder(request.id).appendingPathComponent("\(request.stream.rawValue).log").path
        let watch = inotify_init1(Int32(IN_NONBLOCK | IN_CLOEXEC))
        guard watch >= 0 else { return first }
        defer { close(watch) }
        guard inotify_add_watch(watch, path, UInt32(IN_MODIFY) | UInt32(IN_CLOSE_WRITE) | UInt32(IN_DELETE_SELF)) >= 0 else { return first }
        // Written between the first read and the watch: seen now.
        let again = try logs(request)
        guard again.data.isEmpty else { return again }
        await ProcessExit.readable(watch, closing: false, seconds: min(max(seconds, 0), 60))
        return try logs(request)
    }
}
