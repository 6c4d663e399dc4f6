import CapstanSDK

extension RuntimeSpec {
    /// PATH inside the container unless the image or the request sets one (runc spec's value).
    static let defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    /// `runc spec`'s capability set: enough for a typical service, nothing administrative.
    static let defaultCapabilities = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    /// `runc spec`'s masked and read-only paths: kernel interfaces a container must not touch.
    static let defaultMaskedPaths = ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]
    static let defaultReadonlyPaths = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    /// The CFS period, microseconds; the quota is the limit's share of it.
    static let cpuPeriod: UInt64 = 100_000
    /// The kernel refuses CFS quotas under 1 ms, so smaller cpu limits are rounded up to 10m.
    static let minimumCPUQuota: Int64 = 1_000

    /// The spec of one container.
    ///
    /// Namespaces: pid, ipc, uts and mount, and the network namespace the request names (SDK
    /// 1.4: made by the agent, wired by the network plugin); without one, containers share the
    /// host's network and a service listens on the host's ports. The root file system is read-only (it is the image, shared by every container of that
    /// image); `/tmp` is a private tmpfs for scratch files.
    /// - Parameters:
    ///   - args: the resolved command (the request's, or the image's entrypoint and cmd).
    ///   - hostFiles: host files bound read-only at the same path (`/etc/resolv.conf`, unless the
    ///     request brings a `resolvConf` of its own, bound there instead).
    init(id: String, request: CreateInstanceRequest, image: ResolvedImage, args: [String], hostFiles: [String]) {
        var environment: [String: String] = ["PATH": RuntimeSpec.defaultPath]
        for entry in image.env {
            let parts = entry.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            environment[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        environment.merge(request.env) { _, requested in requested }
        let context = request.securityContext
        let capabilities = context?.capabilities?.applied(to: RuntimeSpec.defaultCapabilities) ?? RuntimeSpec.defaultCapabilities
        process = Process(
            user: User(uid: UInt32(clamping: context?.runAsUser ?? 0), gid: UInt32(clamping: context?.runAsGroup ?? 0)),
            args: args,
            env: environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" },
            cwd: request.workingDir ?? image.cwd ?? "/",
            capabilities: Capabilities(bounding: capabilities, effective: capabilities, permitted: capabilities),
            rlimits: [Rlimit(type: "RLIMIT_NOFILE", hard: 1024, soft: 1024)],
            noNewPrivileges: context?.allowPrivilegeEscalation != true)
        root = Root(path: image.rootfs, readonly: true)
        hostname = request.hostname ?? id
        mounts = RuntimeSpec.systemMounts
            + hostFiles.map { file in
                let source = file == "/etc/resolv.conf" ? (request.resolvConf ?? file) : file
                return Mount(destination: file, type: "bind", source: source, options: ["rbind", "ro", "nosuid", "nodev", "noexec"])
            }
            + request.mounts.map { Mount(destination: $0.containerPath, type: "bind", source: $0.hostPath, options: ["rbind", $0.readOnly ? "ro" : "rw"]) }
        var resources = Resources(devices: [DeviceRule(allow: false, access: "rwm")])
        if request.limits.cpuMilli > 0 {
            let quota = max(RuntimeSpec.minimumCPUQuota, request.limits.cpuMilli * Int64(RuntimeSpec.cpuPeriod) / 1000)
            resources.cpu = CPU(quota: quota, period: RuntimeSpec.cpuPeriod)
        }
        if request.limits.memoryBytes > 0 {
            resources.memory = Memory(limit: request.limits.memoryBytes)
        }
        linux = Linux(
            namespaces: ["pid", "ipc", "uts", "mount"].map { Namespace(type: $0) } + (request.networkNamespace.map { [Namespace(type: "network", path: $0)] } ?? []),
            cgroupsPath: "/capstan/\(id)",
            resources: resources,
            maskedPaths: RuntimeSpec.defaultMaskedPaths,
            readonlyPaths: RuntimeSpec.defaultReadonlyPaths,
            seccomp: RuntimeSpec.defaultSeccomp)
    }

    /// Like Docker's default profile in spirit: everything is allowed but the system calls a
    /// container never needs and an attacker wants (kernel modules, kexec, reboot, mounts,
    /// namespaces, ptrace, keyrings, clock changes, bpf, perf), which fail with EPERM. runc
    /// ships no profile of its own; this one is applied to every container.
    static let defaultSeccomp = Seccomp(
        defaultAction: "SCMP_ACT_ALLOW",
        architectures: seccompArchitectures,
        syscalls: [SyscallRule(names: [
            "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module", "finit_module",
            "get_kernel_syms", "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl",
            "lookup_dcookie", "mount", "move_mount", "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree",
            "perf_event_open", "pivot_root", "process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl",
            "reboot", "request_key", "setns", "settimeofday", "swapoff", "swapon", "sysfs", "umount2", "unshare", "uselib",
            "userfaultfd", "ustat", "fsopen", "fsconfig", "fsmount", "fspick",
        ], action: "SCMP_ACT_ERRNO")])

    /// The architectures of this machine's kernel ABI, for the seccomp filter.
    static var seccompArchitectures: [String] {
        #if arch(x86_64)
        return ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        #elseif arch(arm64)
        return ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
        #else
        return []
        #endif
    }

    /// `runc spec`'s mounts, without its read-only `/sys/fs/cgroup` (a container has no business
    /// there), plus a private `/tmp`.
    static let systemMounts: [Mount] = [
        Mount(destination: "/proc", type: "proc", source: "proc"),
        Mount(destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
        Mount(destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
        Mount(destination: "/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        Mount(destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]),
        Mount(destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]),
        Mount(destination: "/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"]),
    ]
}
