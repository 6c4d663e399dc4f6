import CapstanCore
import Foundation

/// What this machine has, read from the kernel: cpus (as the scheduler counts them, in
/// millicores), memory (MemTotal), hostname, architecture.
enum NodeResources {
    static func capacity() -> ResourceList {
        let cpus = max(1, ProcessInfo.processInfo.activeProcessorCount)
        return ResourceList([ResourceName.cpu: "\(cpus)", ResourceName.memory: "\(memoryBytes())"])
    }

    static func memoryBytes() -> Int64 {
        guard let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("MemTotal:") {
            let fields = line.split(separator: " ")
            if fields.count >= 2, let kib = Int64(fields[1]) { return kib * 1024 }
        }
        return 0
    }

    /// The host name as a DNS label (lowercased, other characters as '-'), for the node's name.
    static func defaultNodeName() -> String {
        let raw = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "node"
        var name = String(raw.lowercased().map { ($0.isLetter && $0.isASCII) || $0.isNumber ? $0 : "-" }.prefix(63))
        while name.hasPrefix("-") { name.removeFirst() }
        while name.hasSuffix("-") { name.removeLast() }
        return name.isEmpty ? "node" : name
    }

    static var architecture: String {
        #if arch(x86_64)
        "amd64"
        #elseif arch(arm64)
        "arm64"
        #else
        "unknown"
        #endif
    }
}
