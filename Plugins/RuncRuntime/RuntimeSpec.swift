/// The part of the OCI runtime specification (1.0.2) this runtime writes to a bundle's
/// `config.json`. Field names are the specification's; absent optionals are left out.
struct RuntimeSpec: Codable, Equatable {
    var ociVersion = "1.0.2"
    var process: Process
    var root: Root
    var hostname: String?
    var mounts: [Mount]
    var linux: Linux

    struct Process: Codable, Equatable {
        var terminal = false
        var user = User()
        var args: [String]
        var env: [String]
        var cwd: String
        var capabilities: Capabilities
        var rlimits: [Rlimit]
        var noNewPrivileges = true
    }

    struct User: Codable, Equatable {
        var uid: UInt32 = 0
        var gid: UInt32 = 0
    }

    struct Capabilities: Codable, Equatable {
        var bounding: [String]
        var effective: [String]
        var permitted: [String]
    }

    struct Rlimit: Codable, Equatable {
        var type: String
        var hard: UInt64
        var soft: UInt64
    }

    struct Root: Codable, Equatable {
        var path: String
        var readonly: Bool
    }

    struct Mount: Codable, Equatable {
        var destination: String
        var type: String
        var source: String
        var options: [String]?
    }

    struct Linux: Codable, Equatable {
        var namespaces: [Namespace]
        var cgroupsPath: String?
        var resources: Resources?
        var maskedPaths: [String]?
        var readonlyPaths: [String]?
        var seccomp: Seccomp?
    }

    /// A seccomp filter: `defaultAction` for every syscall but those `syscalls` name.
    struct Seccomp: Codable, Equatable {
        var defaultAction: String
        var architectures: [String]
        var syscalls: [SyscallRule]
    }

    struct SyscallRule: Codable, Equatable {
        var names: [String]
        var action: String
    }

    struct Namespace: Codable, Equatable {
        var type: String
        /// Join this namespace instead of making a new one (`network`: the instance's).
        var path: String?
        init(type: String, path: String? = nil) {
            self.type = type
            self.path = path
        }
    }

    struct Resources: Codable, Equatable {
        var devices: [DeviceRule]?
        var cpu: CPU?
        var memory: Memory?
    }

    struct DeviceRule: Codable, Equatable {
        var allow: Bool
        var access: String?
    }

    struct CPU: Codable, Equatable {
        /// Microseconds of CPU time per `period`.
        var quota: Int64?
        var period: UInt64?
    }

    struct Memory: Codable, Equatable {
        /// Bytes.
        var limit: Int64?
    }
}
