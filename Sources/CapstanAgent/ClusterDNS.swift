import CapstanCore
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The node's cluster DNS, like CoreDNS (or NodeLocal DNSCache) on every node: answers `A`
/// queries for `<service>` and `<service>.<cluster domain>` — a service's virtual IP, or a
/// headless service's ready endpoints — and forwards every other name to the node's own
/// resolvers, relaying their answer as is.
///
/// It listens on UDP port 53 of the node's pod gateway address (the first address of the pod
/// subnet), bound with IP_FREEBIND so it can start before the bridge has that address.
/// Instances in their own network namespace get a `resolv.conf` naming it.
///
/// One thread reads queries; a forwarded query waits for its upstream on a thread of its own
/// (at most ``maxForwarding`` at once; more are dropped, and the client asks again).
final class ClusterDNS: Sendable {
    let address: String
    let port: UInt16
    let domain: String
    let upstreams: [String]
    /// The file instances are shown at /etc/resolv.conf.
    let resolvConf: String
    private let lookup: @Sendable (String) -> [String]?
    private let socketFD = Mutex<Int32>(-1)
    private let forwarding = Atomic<Int>(0)
    static let maxForwarding = 64
    /// Seconds resolvers may cache an answer: short, as endpoints move.
    static let ttl: UInt32 = 5

    /// - Parameters:
    ///   - lookup: a name (without the domain) → its addresses, nil when no such service.
    ///   - upstreams: where other names go (`host` or `host:port`); default: the node's
    ///     /etc/resolv.conf.
    init(address: String, port: UInt16 = 53, domain: String, upstreams: [String]? = nil, directory: String, lookup: @escaping @Sendable (String) -> [String]?) throws {
        self.address = address
        self.port = port
        self.domain = domain.lowercased()
        self.upstreams = upstreams ?? Self.nodeResolvers()
        self.lookup = lookup
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        resolvConf = directory + "/resolv.conf"
        let text = "# Capstan cluster DNS (node agent)\nnameserver \(address)\nsearch \(self.domain)\noptions ndots:2\n"
        try text.write(toFile: resolvConf, atomically: true, encoding: .utf8)
        chmod(resolvConf, 0o644)
    }

    /// The nameservers of the node's /etc/resolv.conf, except our own address.
    static func nodeResolvers(_ file: String = "/etc/resolv.conf") -> [String] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, fields[0] == "nameserver", IPv4Address(String(fields[1])) != nil else { return nil }
            return String(fields[1])
        }
    }

    /// Binds and serves until ``stop()``.
    func start() throws {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw DNSError("socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        // IP_FREEBIND (15): bind before the bridge holds the address.
        setsockopt(fd, Int32(IPPROTO_IP), 15, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var local = Self.socketAddress(address, port)
        let bound = withUnsafePointer(to: &local) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw DNSError("cannot listen on \(address):\(port)/udp: \(reason)")
        }
        socketFD.withLock { $0 = fd }
        let thread = Thread { [self] in serve(fd) }
        thread.name = "capstan-dns"
        thread.start()
    }

    func stop() {
        let fd = socketFD.withLock { fd -> Int32 in
            defer { fd = -1 }
            return fd
        }
        // Shut down only: the serving thread wakes, sees it stopped, and closes the socket
        // itself, so its descriptor is never reused under it.
        if fd >= 0 { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private func serve(_ fd: Int32) {
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1500)
        while true {
            var peer = sockaddr_in()
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let count = withUnsafeMutablePointer(to: &peer) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, &buffer, buffer.count, 0, $0, &length) }
            }
            if count < 0 {
                if errno == EINTR { continue }
                return
            }
            if count == 0 && socketFD.withLock({ $0 }) < 0 { return }  // stopped
            let query = Array(buffer[0..<count])
            // Responses (QR set) and runts are dropped unanswered: answering a response could
            // start a loop between two servers, and a runt has no ID to answer.
            guard !Self.isDroppable(query) else { continue }
            let client = peer
            if let answer = answer(query) {
                send(answer, to: client, on: fd)
            } else if !upstreams.isEmpty, forwarding.add(1, ordering: .relaxed).newValue <= Self.maxForwarding {
                let forwarder = Thread { [self] in
                    if let reply = forward(query) { send(reply, to: client, on: fd) }
                    forwarding.subtract(1, ordering: .relaxed)
                }
                forwarder.start()
            } else {
                if upstreams.isEmpty, let refused = Self.reply(to: query, code: 2, addresses: []) { send(refused, to: client, on: fd) }
                if !upstreams.isEmpty { forwarding.subtract(1, ordering: .relaxed) }
            }
        }
    }

    /// True for what gets no answer at all: shorter than a header, or a response.
    static func isDroppable(_ message: [UInt8]) -> Bool {
        message.count < 12 || message[2] & 0x80 != 0
    }

    private func send(_ message: [UInt8], to peer: sockaddr_in, on fd: Int32) {
        var peer = peer
        _ = withUnsafePointer(to: &peer) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, message, message.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

    /// Our answer to a query about a cluster name; nil to forward it.
    func answer(_ query: [UInt8]) -> [UInt8]? {
        guard let question = Self.question(in: query) else {
            return Self.reply(to: query, code: 1, addresses: [])  // FORMERR
        }
        var name = question.name.lowercased()
        if name.hasSuffix(".") { name.removeLast() }
        let suffix = "." + domain
        let inDomain = name == domain || name.hasSuffix(suffix)
        if inDomain { name = name == domain ? "" : String(name.dropLast(suffix.count)) }
        // `backend` or `backend.capstan.local`; anything else outside the domain is forwarded.
        guard inDomain || !name.contains(".") else { return nil }
        guard !name.isEmpty, !name.contains("."), let addresses = lookup(name) else {
            return inDomain ? Self.reply(to: query, code: 3, addresses: []) : nil  // NXDOMAIN
        }
        // A records for A (1) and ANY (255); no data (but the name exists) for others.
        let wanted = question.type == 1 || question.type == 255 ? addresses : []
        return Self.reply(to: query, code: 0, addresses: wanted)
    }

    /// Asks each upstream in turn, 2 seconds each; the first reply with the query's ID.
    private func forward(_ query: [UInt8]) -> [UInt8]? {
        for upstream in upstreams {
            let parts = upstream.split(separator: ":")
            let host = String(parts[0])
            let port = parts.count > 1 ? UInt16(parts[1]) ?? 53 : 53
            let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var target = Self.socketAddress(host, port)
            // Connected: only the upstream's own datagrams are read back.
            let connected = withUnsafePointer(to: &target) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0, query.count >= 12, Glibc.send(fd, query, query.count, 0) == query.count else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, 0)
            if count >= 12, buffer[0] == query[0], buffer[1] == query[1] { return Array(buffer[0..<count]) }
        }
        return nil
    }

    // MARK: The wire format (RFC 1035)

    struct Question {
        var name: String
        var type: UInt16
        /// Where the question ends in the message.
        var end: Int
    }

    /// The first question of a standard query, or nil when malformed.
    static func question(in message: [UInt8]) -> Question? {
        guard message.count >= 12, message[2] & 0x80 == 0, message[2] & 0x78 == 0, message[4] == 0, message[5] >= 1 else { return nil }
        var labels: [String] = []
        var index = 12
        var total = 0
        while true {
            guard index < message.count else { return nil }
            let length = Int(message[index])
            index += 1
            if length == 0 { break }
            // No compression in a question's name; labels of at most 63, names of at most 255.
            guard length <= 63, index + length <= message.count else { return nil }
            total += length + 1
            guard total <= 255 else { return nil }
            labels.append(String(decoding: message[index..<(index + length)], as: UTF8.self))
            index += length
        }
        guard index + 4 <= message.count else { return nil }
        let type = UInt16(message[index]) << 8 | UInt16(message[index + 1])
        return Question(name: labels.joined(separator: "."), type: type, end: index + 4)
    }

    /// A response to `query` with `code` (0 ok, 1 format error, 2 server failure, 3 no such
    /// name) and A records for `addresses`, naming the question by pointer.
    static func reply(to query: [UInt8], code: UInt8, addresses: [String]) -> [UInt8]? {
        guard query.count >= 12 else { return nil }
        let question = Self.question(in: query)
        var message = Array(query[0..<2])
        // QR, opcode 0, AA, RD copied; RA; rcode.
        message.append(0x84 | (query[2] & 0x01))
        message.append(0x80 | (code & 0x0f))
        var records = question == nil ? [] : addresses.compactMap(IPv4Address.init)
        // A UDP answer fits in 512 bytes: 16 per A record after the header and question; the
        // rest is cut and TC set (the client may ask again over TCP, which this server does
        // not serve: it gets the first records).
        let room = max(0, (512 - 12 - ((question?.end ?? 12) - 12)) / 16)
        if records.count > room {
            records = Array(records.prefix(room))
            message[2] |= 0x02
        }
        message += [0, question == nil ? 0 : 1]
        message += [UInt8(records.count >> 8), UInt8(records.count & 0xff), 0, 0, 0, 0]
        guard let question else { return message }
        message += query[12..<question.end]
        for record in records {
            message += [0xc0, 12, 0, 1, 0, 1]
            message += [UInt8(ttl >> 24), UInt8(ttl >> 16 & 0xff), UInt8(ttl >> 8 & 0xff), UInt8(ttl & 0xff)]
            message += [0, 4, UInt8(record.value >> 24), UInt8(record.value >> 16 & 0xff), UInt8(record.value >> 8 & 0xff), UInt8(record.value & 0xff)]
        }
        return message
    }

    static func socketAddress(_ host: String, _ port: UInt16) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = (IPv4Address(host)?.value ?? 0).bigEndian
        return address
    }

    struct DNSError: Error, CustomStringConvertible {
        var description: String
        init(_ description: String) { self.description = description }
    }
}
