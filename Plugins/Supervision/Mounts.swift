import CapstanSDK
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The mount table and the mount calls storage plugins make (mount(2) directly: no `mount` exec).
public enum Mounts {
    public struct Entry: Sendable, Hashable {
        public var device: String
        public var mountPoint: String
        public var source: String
        public var readOnly: Bool
    }

    /// `/proc/self/mountinfo`, in mount order.
    public static func read() -> [Entry] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count > 6, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { return nil }
            let options = fields[5].split(separator: ",")
            return Entry(device: String(fields[2]), mountPoint: unescape(fields[4]), source: String(fields[dash + 2]), readOnly: options.contains("ro"))
        }
    }

    /// mountinfo writes space, tab, newline and backslash as `\ooo`.
    public static func unescape(_ field: Substring) -> String {
        guard field.contains("\\") else { return String(field) }
        var bytes: [UInt8] = []
        var iterator = Array(field.utf8)[...]
        while let byte = iterator.popFirst() {
            if byte == UInt8(ascii: "\\"), iterator.count >= 3, let value = UInt8(String(decoding: iterator.prefix(3), as: UTF8.self), radix: 8) {
                bytes.append(value)
                iterator = iterator.dropFirst(3)
            } else {
                bytes.append(byte)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public static func mount(_ device: String, at target: String, type: String) throws {
        guard Glibc.mount(device, target, type, 0, nil) == 0 else {
            throw PluginError(.internal, "mount \(device) at \(target): \(String(cString: strerror(errno)))")
        }
    }

    public static func bind(_ source: String, at target: String, readOnly: Bool) throws {
        guard Glibc.mount(source, target, nil, UInt(MS_BIND), nil) == 0 else {
            throw PluginError(.internal, "bind mount \(source) at \(target): \(String(cString: strerror(errno)))")
        }
        if readOnly {
            do {
                try remountReadOnly(target)
            } catch {
                _ = umount2(target, 0)
                throw error
            }
        }
    }

    /// Makes a bind mount read-only (a bind cannot be made read-only in the same call).
    public static func remountReadOnly(_ target: String) throws {
        guard Glibc.mount(nil, target, nil, UInt(MS_BIND | MS_REMOUNT | MS_RDONLY), nil) == 0 else {
            throw PluginError(.internal, "read-only remount of \(target): \(String(cString: strerror(errno)))")
        }
    }

    public static func unmount(_ target: String) throws {
        if umount2(target, 0) != 0 {
            let reason = errno
            if reason == EINVAL || reason == ENOENT { return }
            // Busy: detach it from the tree now; the kernel finishes when the last user leaves.
            guard umount2(target, Int32(MNT_DETACH)) == 0 else {
                throw PluginError(.internal, "unmount \(target): \(String(cString: strerror(reason)))")
            }
        }
    }
}

