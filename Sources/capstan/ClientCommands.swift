import ArgumentParser
import CapstanAPI
import CapstanCore
import Foundation
import PluginHost
import Synchronization

/// Reads manifests from files, directories (their .yaml/.yml/.json files, sorted) or `-` (stdin).
func readManifests(_ paths: [String]) throws -> [AnyResource] {
    var objects: [AnyResource] = []
    for path in paths {
        if path == "-" {
            let text = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            objects += try ManifestReader.parse(text, source: "stdin")
            continue
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ValidationError("\(path): no such file or directory")
        }
        if isDirectory.boolValue {
            let files = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".yaml") || $0.hasSuffix(".yml") || $0.hasSuffix(".json") }.sorted()
            for file in files {
                let full = (path as NSString).appendingPathComponent(file)
                // An example folder keeps its operator config (capstan.yaml, `kind: Config`)
                // beside its manifests: that file is for `capstan dev --config`, not the API.
                if isOperatorConfig(full) {
                    FileHandle.standardError.write(Data("skipping \(full): kind Config is an operator config (capstan dev --config), not an object\n".utf8))
                    continue
                }
                objects += try ManifestReader.read(file: full)
            }
        } else {
            objects += try ManifestReader.read(file: path)
        }
    }
    return objects
}

/// True when the file's only document is a `kind: Config`.
func isOperatorConfig(_ path: String) -> Bool {
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return false }
    let kinds = text.split(separator: "\n").filter { $0.hasPrefix("kind:") }.map { $0.dropFirst(5).trimmingCharacters(in: .whitespaces) }
    return kinds == ["Config"]
}

/// `capstan apply -f`: create what is new, replace what exists (keeping its status).
struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "apply", abstract: "Create or update objects from manifests (files, directories, multi-document YAML, - for stdin).")
    @OptionGroup var client: ClientOptions
    @Option(name: .shortAndLong, help: "A manifest file or directory (repeatable).") var filename: [String]
    @Flag(help: "Wait until every applied workload is rolled out and Ready.") var wait = false
    @Option(help: "Seconds to wait with --wait.") var timeout: Double = 120

    func validate() throws { try checkTimeout(timeout) }

    func run() async throws {
        let objects = try readManifests(filename)
        let api = client.client
        var failed = false
        for object in objects {
            do {
                let ref = "\(object.kind.lowercased())/\(object.name)"
                if let existing = try await api.fetch(kind: object.kind, name: object.name) {
                    if Self.isUnchanged(object, existing) {
                        print("\(ref) unchanged")
                        continue
                    }
                    // The server keeps status and what only the system sets (a claim's volume,
                    // an instance's node, owners); the manifest is sent as written.
                    var updated = object
                    updated.metadata.revision = existing.metadata.revision
                    _ = try await api.update(updated)
                    print("\(ref) configured")
                } else {
                    _ = try await api.create(object)
                    print("\(ref) created")
                }
            } catch let error as APIError {
                failed = true
                FileHandle.standardError.write(Data("error: \(object.kind.lowercased())/\(object.name): \(error)\n".utf8))
                if error.status == 0 { throw ExitCode(CLIExit.unreachable) }
            }
        }
        if failed { throw ExitCode(CLIExit.refused) }
        if wait {
            for case .workload(let workload) in objects {
                try await RolloutCommand.waitForRollout(api: api, name: workload.metadata.name, timeout: timeout)
            }
        }
    }

    /// True when applying `object` would change nothing the manifest says: its labels,
    /// annotations and spec (fields the system set and the manifest leaves out — a claim's
    /// volume, an instance's node, a node's agent address — do not count).
    static func isUnchanged(_ object: AnyResource, _ existing: AnyResource) -> Bool {
        var candidate = existing
        candidate.metadata.labels = object.metadata.labels
        candidate.metadata.annotations = object.metadata.annotations
        switch (object, existing) {
        case (.workload(let new), .workload(var old)): old.spec = new.spec; old.metadata = candidate.metadata; candidate = .workload(old)
        case (.instance(var new), .instance(var old)):
            new.spec.nodeName = new.spec.nodeName ?? old.spec.nodeName
            if new.spec.gpuDevices.isEmpty { new.spec.gpuDevices = old.spec.gpuDevices }
            old.spec = new.spec; old.metadata = candidate.metadata; candidate = .instance(old)
        case (.volumeClaim(var new), .volumeClaim(var old)):
            new.spec.volumeName = new.spec.volumeName ?? old.spec.volumeName
            old.spec = new.spec; old.metadata = candidate.metadata; candidate = .volumeClaim(old)
        case (.node(var new), .node(var old)):
            new.spec.agentAddress = new.spec.agentAddress ?? old.spec.agentAddress
            old.spec = new.spec; old.metadata = candidate.metadata; candidate = .node(old)
        case (.service(let new), .service(var old)): old.spec = new.spec; old.metadata = candidate.metadata; candidate = .service(old)
        case (.volume(let new), .volume(var old)): old.spec = new.spec; old.metadata = candidate.metadata; candidate = .volume(old)
        case (.endpoints(let new), .endpoints(var old)): old.spec = new.spec; old.metadata = candidate.metadata; candidate = .endpoints(old)
        case (.event(let new), .event(var old)): old.spec = new.spec; old.metadata = candidate.metadata; candidate = .event(old)
        case (.secret(let new), .secret(var old)): old.spec = new.spec; old.metadata = candidate.metadata; candidate = .secret(old)
        case (.lease(let new), .lease(var old)): old.spec = new.spec; old.metadata = candidate.metadata; candidate = .lease(old)
        case (.storageClass(let new), .storageClass(var old)): old.spec = new.spec; old.metadata = candidate.metadata; candidate = .storageClass(old)
        case (.volumeSnapshot(let new), .volumeSnapshot(var old)): old.spec = new.spec; old.metadata = candidate.metadata; candidate = .volumeSnapshot(old)
        default: return false
        }
        return candidate == existing
    }
}

/// `capstan get KIND [NAME]`.
struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "get", abstract: "List objects of a kind, or show one.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The kind: instances (inst, i), workloads (wl), nodes (no), events (ev), services, volumes…; or servers (the API servers and which leads).") var kind: String
    @Argument(help: "One object's name.") var name: String?
    @Option(name: .shortAndLong, help: "table, wide, json or yaml.") var output = "table"
    @Option(name: .shortAndLong, help: "Only objects with these labels (k=v,k2=v2).") var selector: String?
    @Flag(name: .shortAndLong, help: "After listing, print each change as it happens.") var watch = false
    @Flag(help: "Print Secrets' values (left out by default).") var showSecrets = false

    func run() async throws {
        if ["servers", "server"].contains(kind) { return try await servers() }
        let kind = try resourceKind(kind)
        guard let format = OutputFormat(rawValue: output) else { throw ValidationError("-o \(output): use table, wide, json or yaml") }
        let api = client.client
        var query: [String: String] = [:]
        if let selector { query["labelSelector"] = selector }
        // Straight to the file descriptor, a line at a time: with --watch, each change reaches
        // a pipe (`get --watch | grep …`) as it happens, not when a buffer fills.
        func emit(_ text: String) { FileHandle.standardOutput.write(Data((text + "\n").utf8)) }
        do {
            let revision: UInt64
            if let name {
                let object = try await api.get(kind, name)
                emit(try ResourceTable.render([object], kind: kind, format: format, showSecrets: showSecrets))
                revision = object.metadata.revision ?? 0
            } else {
                let list = try await api.list(kind, query: query)
                if list.items.isEmpty && !watch {
                    FileHandle.standardError.write(Data("No \(kind.plural) found.\n".utf8))
                } else {
                    emit(try ResourceTable.render(list.items, kind: kind, format: format, showSecrets: showSecrets, asList: true))
                }
                revision = list.revision
            }
            guard watch else { return }
            for try await event in try await api.watch(kind, after: revision, query: query) {
                guard let object = event.object, name == nil || object.name == name else { continue }
                let line = try ResourceTable.render([object], kind: kind, format: format, headers: false, showSecrets: showSecrets)
                // Deletions are shown as such: the last state, marked.
                emit(event.type == .deleted && (format == .table || format == .wide) ? line + "  (deleted)" : line)
            }
        } catch let error as APIError {
            throw CLIExit.fail(error)
        }
    }
}

extension GetCommand {
    /// `capstan get servers`: every live API server, its address, and which one leads.
    func servers() async throws {
        guard ["table", "wide", "json"].contains(output) else { throw ValidationError("-o \(output): servers print as table, wide or json") }
        do {
            let servers = try await client.client.servers()
            if output == "json" {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try encoder.encode(servers), as: UTF8.self))
                return
            }
            var rows = [["NAME", "ADDRESS", "ROLE", "TERM", "AGE"]]
            for server in servers {
                rows.append([server.name, server.address, server.leader ? "leader" : "follower", server.term.map(String.init) ?? "-",
                             ResourceTable.age(Timestamp(secondsSinceEpoch: server.since))])
            }
            print(PluginTable.table(rows))
        } catch let error as APIError {
            throw CLIExit.fail(error)
        }
    }
}

/// `capstan describe KIND NAME`: the object and its recent events.
struct DescribeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "describe", abstract: "Show an object in detail, with its recent events.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The kind.") var kind: String
    @Argument(help: "The name.") var name: String

    func run() async throws {
        let kind = try resourceKind(kind)
        let api = client.client
        do {
            let object = try await api.get(kind, name)
            print(try ResourceTable.render([object], kind: kind, format: .yaml), terminator: "")
            var events = try await api.list(.event, query: ["involvedObject": "\(kind.kind)/\(name)"]).items
            if case .workload = object {
                // A workload's story includes its instances'.
                let instances = try await api.list(.instance, query: ["owner": "Workload/\(name)"]).items.map { "Instance/\($0.name)" }
                for involved in instances { events += try await api.list(.event, query: ["involvedObject": involved]).items }
            }
            events.sort { eventTime($0) < eventTime($1) }
            print("Events:")
            if events.isEmpty {
                print("  <none>")
            } else {
                print(try ResourceTable.render(Array(events.suffix(20)), kind: .event, format: .table).split(separator: "\n").map { "  \($0)" }.joined(separator: "\n"))
            }
        } catch let error as APIError {
            throw CLIExit.fail(error)
        }
    }

    private func eventTime(_ object: AnyResource) -> Double {
        if case .event(let event) = object { return event.spec.lastTimestamp?.secondsSinceEpoch ?? 0 }
        return 0
    }
}

/// `capstan delete KIND NAME` or `capstan delete -f manifests`.
struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete objects by kind and name, or those a manifest names.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The kind and name (omit with -f).") var target: [String] = []
    @Option(name: .shortAndLong, help: "Delete what these manifests name.") var filename: [String] = []
    @Flag(help: "Remove instances at once, without waiting for their agent to stop them.") var force = false

    func run() async throws {
        var targets: [(ResourceKind, String)] = []
        if !filename.isEmpty {
            for object in try readManifests(filename) {
                targets.append((try resourceKind(object.kind), object.name))
            }
        } else {
            guard target.count >= 2 else { throw ValidationError("give a kind and a name (capstan delete workload hello-web), or -f manifests") }
            let kind = try resourceKind(target[0])
            targets = target.dropFirst().map { (kind, $0) }
        }
        let api = client.client
        var failed = false
        for (kind, name) in targets {
            let outcome = await deleting(api, kind, name)
            if let error = outcome {
                if error.status == 0 { throw CLIExit.fail(error) }
                FileHandle.standardError.write(Data("error: \(kind.kind.lowercased())/\(name): \(error)\n".utf8))
                failed = true
            } else {
                print("\(kind.kind.lowercased())/\(name) deleted")
            }
        }
        if failed { throw ExitCode(CLIExit.refused) }
    }

    /// The delete's error, if any.
    private func deleting(_ api: APIClient, _ kind: ResourceKind, _ name: String) async -> APIError? {
        do {
            try await api.delete(kind, name, force: force)
            return nil
        } catch {
            return error
        }
    }
}

/// `capstan logs NAME [-f] [--stream stdout|stderr]`.
struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "Print an instance's output: stdout and stderr, or one of them.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "The instance.") var name: String
    @Flag(name: .shortAndLong, help: "Keep printing new output as it comes.") var follow = false
    @Option(help: "stdout or stderr (default: both; stdout's output so far first, then stderr's; while following, each as it comes).") var stream: String?
    @Flag(help: "Only stderr (the same as --stream stderr).") var stderr = false

    func validate() throws {
        if let stream, !["stdout", "stderr"].contains(stream) { throw ValidationError("--stream \(stream): use stdout or stderr") }
    }

    func run() async throws {
        let api = client.client
        let streams = stderr ? ["stderr"] : (stream.map { [$0] } ?? ["stdout", "stderr"])
        do {
            // What there is so far: stdout's, then stderr's.
            var offsets: [String: UInt64] = [:]
            for name in streams {
                let (data, next) = try await api.logs(self.name, stream: name)
                FileHandle.standardOutput.write(Data(data))
                offsets[name] = next
            }
            guard follow else { return }
            // Then each stream as its output comes: the server holds each read open until
            // there is some (up to 20 s), so nothing is polled.
            let instance = self.name
            try await withThrowingTaskGroup(of: Void.self) { group in
                for name in streams {
                    let start = offsets[name] ?? 0
                    group.addTask {
                        var offset = start
                        while !Task.isCancelled {
                            let asked = ContinuousClock.now
                            let (data, next) = try await api.logs(instance, stream: name, offset: offset, wait: 20)
                            if !data.isEmpty { FileHandle.standardOutput.write(Data(data)) }
                            offset = next
                            // A runtime that cannot hold the read open answers at once: pace it.
                            if data.isEmpty && ContinuousClock.now - asked < .seconds(1) { try await Task.sleep(for: .seconds(1)) }
                        }
                    }
                }
                try await group.waitForAll()
            }
        } catch let error as APIError {
            throw CLIExit.fail(error)
        }
    }
}

/// `capstan events`.
struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "List recent events, oldest first.")
    @OptionGroup var client: ClientOptions
    @Option(name: .customLong("for"), help: "Only events about this object (Kind/name, e.g. Instance/hello-web-1a2b3c4d-0).") var involved: String?

    func run() async throws {
        do {
            var query: [String: String] = [:]
            if let involved { query["involvedObject"] = involved }
            let events = try await client.client.list(.event, query: query).items.sorted {
                guard case .event(let a) = $0, case .event(let b) = $1 else { return false }
                return (a.spec.lastTimestamp?.secondsSinceEpoch ?? 0) < (b.spec.lastTimestamp?.secondsSinceEpoch ?? 0)
            }
            print(try ResourceTable.render(events, kind: .event, format: .table))
        } catch let error as APIError {
            throw CLIExit.fail(error)
        }
    }
}

/// `capstan scale workload NAME --replicas N`.
struct ScaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "Set a workload's replicas.")
    @OptionGroup var client: ClientOptions
    @Argument(help: "workload") var kind: String
    @Argument(help: "The workload's name.") var name: String
    @Option(help: "The number of instances.") var replicas: Int

    func run() async throws {
        guard try resourceKind(kind).kind == "Workload" else { throw ValidationError("only workloads scale") }
        guard replicas >= 0 else { throw ValidationError("--replicas \(replicas) is negative") }
        let api = client.client
        for attempt in 0..<5 {
            do {
                guard case .workload(var workload) = try await api.get(.workload, name) else { return }
                workload.spec.replicas = replicas
                _ = try await api.update(.workload(workload))
                print("workload/\(name) scaled to \(replicas)")
                return
            } catch {
                if error.status == 409 && attempt < 4 { continue }
                throw CLIExit.fail(error)
            }
        }
    }
}

/// `capstan rollout status NAME`.
struct RolloutCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rollout", abstract: "Follow a workload's rollout.", subcommands: [Status.self])

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "status", abstract: "Wait until a workload's instances are all of its current template and Ready.")
        @OptionGroup var client: ClientOptions
        @Argument(help: "The workload.") var name: String
        @Option(help: "Seconds to wait.") var timeout: Double = 300

        func validate() throws { try checkTimeout(timeout) }

        func run() async throws {
            try await RolloutCommand.waitForRollout(api: client.client, name: name, timeout: timeout)
        }
    }

    /// Prints a progress line until done; exits 4 on timeout with the reasons the instances
    /// give (Unschedulable and why, CrashLoopBackOff and the last exit). Follows a watch of
    /// the workload: each status change the controller writes wakes it, nothing is polled.
    static func waitForRollout(api: APIClient, name: String, timeout: Double) async throws {
        let progress = LastLine()
        // What `print` buffered goes first (apply's lines), then the progress, unbuffered.
        fflush(nil)
        let limit = Duration.clampedSeconds(timeout)
        do {
            let done = try await withThrowingTaskGroup(of: Bool.self) { group in
                group.addTask {
                    try await followRollout(api: api, name: name) { line in
                        let changed = progress.text.withLock { last in
                            defer { last = line }
                            return last != line
                        }
                        if changed { FileHandle.standardOutput.write(Data((line + "\n").utf8)) }
                    }
                    return true
                }
                group.addTask {
                    try await Task.sleep(for: limit)
                    return false
                }
                let first = try await group.next() ?? false
                group.cancelAll()
                return first
            }
            if done { return }
            let reasons = await waitReasons(api: api, workload: name)
            let last = progress.text.withLock { $0 }
            throw CLIExit.fail("timed out after \(seconds(timeout)): \(last)" + reasons.map { "\n  \($0)" }.joined(), code: CLIExit.timedOut)
        } catch let error as APIError {
            throw CLIExit.fail(error)
        }
    }

    /// Lists, then watches workloads from the list's revision, calling `report` with a
    /// progress line for each state of `name`, until it is rolled out. A broken watch (the
    /// server restarted, 410 Gone) lists again.
    static func followRollout(api: APIClient, name: String, report: @Sendable (String) -> Void) async throws(APIError) {
        while !Task.isCancelled {
            let list = try await api.list(.workload)
            guard let object = list.items.first(where: { $0.name == name }), case .workload(let workload) = object else {
                throw APIError(status: 404, body: ErrorBody(code: 404, reason: "NotFound", message: "workload \"\(name)\" not found"))
            }
            if let done = progress(of: workload) {
                report(done)
                return
            }
            report(line(for: workload))
            do {
                for try await event in try await api.watch(.workload, after: list.revision) {
                    guard case .workload(let changed)? = event.object, changed.metadata.name == name else { continue }
                    if event.type == .deleted { throw APIError(status: 404, body: ErrorBody(code: 404, reason: "NotFound", message: "workload \"\(name)\" was deleted while waiting")) }
                    if let done = progress(of: changed) {
                        report(done)
                        return
                    }
                    report(line(for: changed))
                }
            } catch let error as APIError where error.status == 404 {
                throw error
            } catch {
                if Task.isCancelled { return }
            }
        }
    }

    /// The closing line once the controller has acted on the workload's current spec
    /// (`status.observedGeneration`) and every instance is of it and Ready; nil until then.
    static func progress(of workload: Workload) -> String? {
        let status = workload.status
        let want = workload.spec.replicas
        guard observed(workload), status.updatedReplicas == want, status.readyReplicas == want, status.replicas == want else { return nil }
        return "workload \"\(workload.metadata.name)\" successfully rolled out: \(want)/\(want) ready"
    }

    static func observed(_ workload: Workload) -> Bool {
        (workload.status.observedGeneration ?? 0) >= (workload.metadata.generation ?? 1)
    }

    static func line(for workload: Workload) -> String {
        let status = workload.status
        let want = workload.spec.replicas
        let name = workload.metadata.name
        if !observed(workload) { return "Waiting for the controller to see workload \"\(name)\" (generation \(workload.metadata.generation ?? 1))..." }
        if status.updatedReplicas < want { return "Waiting for rollout of \"\(name)\": \(status.updatedReplicas) of \(want) updated instances, \(status.readyReplicas) ready..." }
        if status.replicas > want { return "Waiting for rollout of \"\(name)\": \(status.replicas - want) old instance(s) pending termination..." }
        return "Waiting for rollout of \"\(name)\": \(status.readyReplicas) of \(want) ready..."
    }

    /// Why the workload's instances are not Ready: one line per instance that says (at most 5).
    static func waitReasons(api: APIClient, workload: String) async -> [String] {
        guard let list = try? await api.list(.instance, query: ["owner": "Workload/\(workload)"]) else { return [] }
        var reasons: [String] = []
        for case .instance(let instance) in list.items where !instance.status.ready && instance.metadata.deletionTimestamp == nil {
            let status = instance.status
            var text = "\(instance.metadata.name): \(status.phase.rawValue)"
            if let reason = status.reason { text += " (\(reason))" }
            if let message = status.message, !message.isEmpty { text += ": \(message)" }
            if instance.spec.nodeName == nil && status.reason == nil { text += ": not yet placed on a node" }
            if status.restarts > 0 { text += "; \(status.restarts) restart(s)" }
            reasons.append(text)
        }
        return Array(reasons.sorted().prefix(5))
    }

    static func seconds(_ value: Double) -> String {
        value == value.rounded() && value < 1e9 ? "\(Int(value))s" : String(format: "%.1fs", value)
    }
}

/// The last progress line printed, shared between the follower and the timeout.
final class LastLine: Sendable {
    let text = Mutex("")
}

/// `--timeout` is a number of seconds in 0…31,536,000 (NaN and infinities refused).
func checkTimeout(_ seconds: Double) throws {
    guard seconds.isFinite, (0...FieldLimits.maxSeconds).contains(seconds) else {
        throw ValidationError("--timeout \(seconds): give 0 to \(Int(FieldLimits.maxSeconds)) seconds")
    }
}
