import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// What /proc says about a process.
public enum ProcessInspection {
    /// The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), which,
    /// with the pid, identifies it even after the pid is reused.
    public static func startTicks(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return nil }
        return startTicks(fromStat: stat)
    }

    /// Field 22 of a /proc/PID/stat line; nil for a zombie or a malformed line. The command
    /// name in parentheses may hold anything, spaces and ")" included: fields count from the
    /// last ")".
    public static func startTicks(fromStat stat: String) -> UInt64? {
        guard let close = stat.lastIndex(of: ")") else { return nil }
        // After "pid (comm)": state is field 3, starttime field 22.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, fields[0] != "Z" else { return nil }
        return UInt64(fields[19])
    }

    /// The process's argument vector, raw, or nil when it is gone.
    public static func commandLine(of pid: Int32) -> Data? {
        FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
    }

    /// True when `pid` is alive, not a zombie, and is the process that started at `ticks`.
    public static func isAlive(_ pid: Int32, startTicks ticks: UInt64?) -> Bool {
        guard pid > 0, let current = startTicks(of: pid) else { return false }
        return ticks == nil || ticks == current
    }
}
