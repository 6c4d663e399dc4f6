import AsyncHTTPClient
import CapstanAPI
import CapstanCore
import CapstanJSON
import CapstanStore
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import PluginHost

/// The HTTP API: `/v1/<kind>[/<name>]`, `/v1/watch/<kind>`, `/v1/instances/<name>/log`,
/// `/v1/plugins`, `/healthz`, `/readyz`, `/metrics`. Every answer is JSON; errors carry an
/// ``ErrorBody`` (400 malformed, 404, 409 conflict, 410 watch too old, 413 too large,
/// 422 invalid with every field path).
struct APIRoutes: Sendable {
    let writer: StoreWriter
    let metrics: ServerMetrics
    let plugins: @Sendable () async -> [PluginInfo]
    let isReady: @Sendable () -> Bool
    /// The most instances the cluster may hold (``ControlPlane/Options/maxInstances``).
    var maxInstances = 50_000
    /// One JSON line per mutating request; nil writes none.
    var audit: AuditLog? = nil
    /// With TLS: the cluster CA, which signs joining nodes' certificates.
    var ca: ClusterCA? = nil
    /// The server's own certificate, presented to agents it calls (mutual TLS).
    var identity: TLSIdentity? = nil
    /// The shared informer's copy of an object, if it holds that kind: a status write that names
    /// the revision the cache holds needs no store read (the write's compare-and-swap on that same
    /// revision guarantees nothing came between).
    var cached: (@Sendable (_ kind: String, _ name: String) -> AnyResource?)? = nil
    /// Gives services their virtual IP and nodes their pod subnet as they are written.
    var addresses: AddressAllocator? = nil
    /// What `GET /v1/cluster` answers.
    var cluster: ClusterInfo? = nil
    /// With etcd: every object of a kind from the shared informer's cache, for the instance
    /// quota (a list of every instance from etcd per create would cost O(cluster) each).
    var cachedKind: (@Sendable (_ kind: String) -> [AnyResource])? = nil
    /// Who leads, for `/metrics`.
    var leadership: LeadershipState? = nil
    /// What `GET /v1/servers` answers.
    var servers: (@Sendable () async -> [ServerInfo])? = nil
    /// Watch lines, made from the JSON the store wrote while it holds it.
    let encoded: EncodedEvents

    init(writer: StoreWriter, metrics: ServerMetrics, plugins: @escaping @Sendable () async -> [PluginInfo], isReady: @escaping @Sendable () -> Bool,
         maxInstances: Int = 50_000, audit: AuditLog? = nil, ca: ClusterCA? = nil, identity: TLSIdentity? = nil) {
        self.writer = writer
        self.metrics = metrics
        self.plugins = plugins
        self.isReady = isReady
        self.maxInstances = maxInstances
        self.audit = audit
        self.ca = ca
        self.identity = identity
        encoded = EncodedEvents(forms: writer.storedForms)
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router(context: BasicRequestContext.self)
        router.add(middleware: UnknownRouteMiddleware())
        route(router, .get, "/healthz", "healthz", access: .open) { _, _, _ in text("ok\n") }
        route(router, .get, "/readyz", "readyz", access: .open) { _, _, _ in
            guard isReady() else { throw APIFailure(.serviceUnavailable, "Unavailable", "the control plane is starting") }
            return text("ok\n")
        }
        route(router, .get, "/metrics", "metrics") { _, _, _ in
            if let revision = try? await writer.revision() { metrics.revision.set(Double(revision)) }
            if let leadership { metrics.record(leadership.snapshot) }
            return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(bytes: metrics.render())))
        }
        route(router, .get, "/v1/plugins", "plugins") { _, _, _ in try json(await plugins()) }
        route(router, .get, "/v1/cluster", "cluster") { _, _, _ in
            guard let cluster else { throw APIFailure.notFound("this server has no address plan") }
            return try json(cluster)
        }
        route(router, .get, "/v1/servers", "servers") { _, _, _ in
            guard let servers else { throw APIFailure.notFound("this server does not list servers") }
            return try json(await servers())
        }
        route(router, .get, "/v1/ca", "ca", access: .open) { _, _, _ in
            guard let ca else { throw APIFailure.notFound("this server does not serve TLS, so it has no CA") }
            return Response(status: .ok, headers: [.contentType: "application/x-pem-file"], body: .init(byteBuffer: ByteBuffer(string: ca.certificatePEM)))
        }
        route(router, .post, "/v1/join", "join") { request, _, principal in try await join(request, principal) }
        route(router, .get, "/v1/tokens", "tokens") { _, _, principal in
            try requireAdmin(principal, "list tokens")
            return try json(try await writer.tokens())
        }
        route(router, .post, "/v1/tokens", "token-create") { request, _, principal in try await createToken(request, principal) }
        route(router, .delete, "/v1/tokens/{name}", "token-revoke") { _, context, principal in
            try requireAdmin(principal, "revoke tokens")
            let id = try name(context)
            guard try await writer.revokeToken(id: id) else {
                throw APIFailure.notFound("no token with id \"\(id)\"")
            }
            return try json(["revoked": id])
        }
        route(router, .get, "/v1/watch/{plural}", "watch") { request, context, principal in try await watch(request, context, principal) }
        // Hummingbird's trie does not fall back from a constant segment to a parameter, so the log
        // and status routes are `/v1/{plural}/{name}/<what>` and check the kind themselves.
        route(router, .get, "/v1/{plural}/{name}/log", "log") { request, context, principal in
            guard try kind(context).kind == "Instance" else { throw APIFailure.notFound("only instances have logs") }
            return try await log(request, context, principal)
        }
        route(router, .put, "/v1/{plural}/{name}/status", "status") { request, context, principal in try await updateStatus(request, context, principal) }
        route(router, .get, "/v1/{plural}", "list") { request, context, principal in try await list(request, context, principal) }
        route(router, .post, "/v1/{plural}", "create") { request, context, principal in try await create(request, context, principal) }
        route(router, .get, "/v1/{plural}/{name}", "get") { _, context, principal in
            let kind = try kind(context)
            let name = try name(context)
            guard let object = try await stored(kind.kind, name) else {
                // A node learns nothing of objects it may not read, not even whether they exist.
                try authorize(principal, .read, kind: kind.kind, name: name)
                throw APIFailure.notFound("\(kind.kind) \"\(name)\" not found")
            }
            try authorize(principal, .read, kind: kind.kind, name: name, stored: object, secretInUse: try await secretInUse(name, by: principal, kind: kind.kind))
            return try json(Self.redacted(object, for: principal))
        }
        route(router, .put, "/v1/{plural}/{name}", "update") { request, context, principal in try await update(request, context, principal) }
        route(router, .delete, "/v1/{plural}/{name}", "delete") { request, context, principal in try await delete(request, context, principal) }
        return router
    }

    // MARK: Handlers

    private func list(_ request: Request, _ context: BasicRequestContext, _ principal: Principal) async throws -> Response {
        let kind = try kind(context)
        let filter = try ObjectFilter { request.uri.queryParameters.get($0) }
        try authorize(principal, .read, kind: kind.kind, name: nil, nodeFilter: filter.nodeName)
        let (items, revision) = try await writer.list(kind: kind.kind)
        return try json(ObjectList(kind: "\(kind.kind)List", revision: revision, items: items.filter(filter.matches).map { Self.redacted($0, for: principal) }))
    }

    private func create(_ request: Request, _ context: BasicRequestContext, _ principal: Principal) async throws -> Response {
        let kind = try kind(context)
        try authorize(principal, .create, kind: kind.kind, name: nil, coarse: true)
        var object = try await RequestDecoding.object(from: request)
        guard object.kind == kind.kind else {
            throw APIFailure.badRequest("kind: \"\(object.kind)\" cannot be created under /v1/\(kind.plural); send it to /v1/\(ResourceKind.kind(object.kind)?.plural ?? "?")")
        }
        try authorize(principal, .create, kind: kind.kind, name: object.name, object: object)
        object = try SystemFields.clientWrite(object, stored: nil, by: principal)
        object = try await assignAddresses(object, stored: nil)
        try await StorageAdmission.check(object, stored: nil, lookup: stored)
        object.metadata.revision = nil
        object.metadata.deletionTimestamp = nil
        try await checkInstanceQuota(object, creating: true)
        return try written(try await writer.create(object), status: .created)
    }

    private func update(_ request: Request, _ context: BasicRequestContext, _ principal: Principal) async throws -> Response {
        let (object, current) = try await replacement(request, context, principal, .update)
        let written = try await assignAddresses(try SystemFields.clientWrite(object, stored: current, by: principal), stored: current)
        try await StorageAdmission.check(written, stored: current, lookup: stored)
        try await checkInstanceQuota(written, creating: false)
        return try self.written(try await writer.update(written))
    }

    /// The answer to a create or update: the object as the store wrote it — its stored JSON
    /// while the store holds that (no second encode), else encoded.
    private func written(_ object: AnyResource, status: HTTPResponse.Status = .ok) throws -> Response {
        if let revision = object.metadata.revision, let stored = encoded.forms?.object(at: revision) {
            return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: stored)))
        }
        return try json(object, status: status)
    }

    /// A service's virtual IP and a node's pod subnet: kept when stored, given when missing.
    private func assignAddresses(_ object: AnyResource, stored: AnyResource?) async throws -> AnyResource {
        guard let addresses else { return object }
        switch object {
        case .service(let service):
            guard case .service(let current)? = stored else { return .service(try await addresses.assign(service, stored: nil)) }
            return .service(try await addresses.assign(service, stored: current))
        case .node(let node):
            guard case .node(let current)? = stored else { return .node(try await addresses.assign(node, stored: nil)) }
            return .node(try await addresses.assign(node, stored: current))
        default:
            return object
        }
    }

    /// `PUT /v1/KIND/NAME/status`: the sent object's status on the stored object (its spec and
    /// metadata stay); compare-and-swap on `metadata.revision` when sent. Agents report here.
    private func updateStatus(_ request: Request, _ context: BasicRequestContext, _ principal: Principal) async throws -> Response {
        let (object, current) = try await replacement(request, context, principal, .updateStatus)
        return try written(try await writer.update(try SystemFields.statusWrite(object, stored: current)))
    }

    /// The body of a PUT to `/v1/KIND/NAME[/status]` and the stored object it replaces, once the
    /// principal may do `verb` on both (a node learns nothing of objects it may not touch, not
    /// even whether they exist).
    private func replacement(_ request: Request, _ context: BasicRequestContext, _ principal: Principal, _ verb: Authorizer.Verb) async throws -> (AnyResource, AnyResource) {
        let kind = try kind(context)
        let name = try name(context)
        try authorize(principal, verb, kind: kind.kind, name: name, coarse: true)
        let object = try await RequestDecoding.object(from: request)
        guard object.kind == kind.kind, object.name == name else {
            throw APIFailure.badRequest("the body is \(object.kind) \"\(object.name)\" but the path names \(kind.kind) \"\(name)\"")
        }
        // Status writes (the agents' hot path) may take the stored side from the informer; full
        // replacements read the store, whose decoded copy the authorizer compares field by field.
        let current: AnyResource?
        if verb == .updateStatus, let revision = object.metadata.revision, let copy = cached?(kind.kind, name), copy.metadata.revision == revision {
            current = copy
        } else {
            current = try await stored(kind.kind, name)
        }
        guard let current else {
            try authorize(principal, verb, kind: kind.kind, name: name, object: object)
            throw APIFailure(StoreError.notFound(kind: kind.kind, name: name))
        }
        try authorize(principal, verb, kind: kind.kind, name: name, object: object, stored: current)
        return (object, current)
    }

    /// `POST /v1/join` with a join (or admin) token: a node token for the named node and, with
    /// TLS, a certificate for the node's own public key signed by the cluster CA.
    private func join(_ request: Request, _ principal: Principal) async throws -> Response {
        guard principal.role == .join || principal.role == .admin else {
            throw APIFailure(.forbidden, "Forbidden", "joining needs a join token (capstan token create --role join)")
        }
        var request = request
        let body = try await request.collectBody(upTo: 64 << 10)
        guard let asked = try? JSONDecoder().decode(JoinRequest.self, from: Data(body.readableBytesView)) else {
            throw APIFailure.badRequest("send {\"node\": NAME, \"publicKey\": PEM, \"hosts\": [NAME or ADDRESS…]}")
        }
        if let problem = DNSLabel.problem(with: asked.node) { throw APIFailure(.unprocessableContent, "Invalid", "node: \(problem)") }
        guard asked.hosts.count <= 16, asked.hosts.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 253 && NodeSpec.agentAddressProblem("https://\($0):1") == nil }) else {
            throw APIFailure(.unprocessableContent, "Invalid", "hosts: at most 16 host names or IP addresses")
        }
        var certificate: String?
        if let ca {
            guard let pem = asked.publicKey, let key = try? P256.Signing.PublicKey(pemRepresentation: pem) else {
                throw APIFailure(.unprocessableContent, "Invalid", "publicKey: a P-256 public key in PEM is needed to issue the node's certificate")
            }
            certificate = try ca.issue(commonName: "node:\(asked.node)", hosts: asked.hosts, publicKey: key).serializeAsPEM().pemString
        }
        let created = try await writer.createToken(role: Principal.Role.node.rawValue, node: asked.node, description: "joined with token \(principal.tokenID)")
        return try json(JoinResponse(token: created.token, certificate: certificate, ca: ca?.certificatePEM), status: .created)
    }

    /// `POST /v1/tokens` `{"role": "viewer"|"admin"|"node", "node": NAME, "description": TEXT}`:
    /// the new token, shown once (admin only).
    private func createToken(_ request: Request, _ principal: Principal) async throws -> Response {
        try requireAdmin(principal, "create tokens")
        var request = request
        let body = try await request.collectBody(upTo: 64 << 10)
        guard let asked = try? JSONDecoder().decode(TokenRequest.self, from: Data(body.readableBytesView)) else {
            throw APIFailure.badRequest("send {\"role\": \"admin\"|\"viewer\"|\"node\", \"node\": NAME (for node), \"description\": TEXT}")
        }
        guard let role = Principal.Role(rawValue: asked.role) else {
            throw APIFailure(.unprocessableContent, "Invalid", "role: \"\(asked.role)\" is not a role; use admin, viewer or node")
        }
        if role == .node {
            guard let node = asked.node, DNSLabel.problem(with: node) == nil else {
                throw APIFailure(.unprocessableContent, "Invalid", "node: a node token needs the node's name (a DNS label)")
            }
        } else if asked.node != nil {
            throw APIFailure(.unprocessableContent, "Invalid", "node: only node tokens name a node")
        }
        let description = String((asked.description ?? "").prefix(200))
        let created = try await writer.createToken(role: role.rawValue, node: role == .node ? asked.node : nil, description: description)
        return try json(TokenCreated(id: created.record.id, role: created.record.role, node: created.record.node, token: created.token), status: .created)
    }

    /// Instances bound to a node are stopped by their agent first: the delete marks them
    /// (`deletionTimestamp`, 202) and the agent removes them once stopped. `force=true` removes
    /// at once; other kinds are removed at once (a workload's instances follow through its
    /// controller).
    private func delete(_ request: Request, _ context: BasicRequestContext, _ principal: Principal) async throws -> Response {
        let kind = try kind(context)
        let name = try name(context)
        try authorize(principal, .delete, kind: kind.kind, name: name, coarse: true)
        if principal.role == .node {
            try authorize(principal, .delete, kind: kind.kind, name: name, stored: try await stored(kind.kind, name))
        }
        let query = request.uri.queryParameters
        let revision = try query.get("revision").map { text in
            guard let value = UInt64(text) else { throw APIFailure.badRequest("revision: \"\(text)\" is not a revision number") }
            return value
        }
        let force = query.get("force") == "true"
        if kind.kind == "Instance" && !force {
            guard let stored = try await writer.get(kind: kind.kind, name: name) else {
                throw APIFailure.notFound("Instance \"\(name)\" not found")
            }
            if case .instance(var instance) = stored, instance.spec.nodeName != nil {
                if let revision, revision != instance.metadata.revision {
                    throw APIFailure(StoreError.conflict(kind: kind.kind, name: name, expected: revision, stored: instance.metadata.revision ?? 0))
                }
                if instance.metadata.deletionTimestamp != nil { return try json(AnyResource.instance(instance), status: .accepted) }
                instance.metadata.deletionTimestamp = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
                return try written(try await writer.update(.instance(instance)), status: .accepted)
            }
        }
        if kind.kind == "Volume" && !force && principal.role != .node, case .volume(var volume)? = try await stored("Volume", name) {
            let claims = try await writer.list(kind: "VolumeClaim").items
            if let refusal = StorageAdmission.volumeDeletion(volume, claims: claims) { throw refusal }
            if volume.spec.effectiveReclaimPolicy == .delete, volume.spec.controllerNode != nil {
                // Its node's agent deletes the data through the plugin, then the object.
                if volume.metadata.deletionTimestamp != nil { return try json(AnyResource.volume(volume), status: .accepted) }
                volume.metadata.deletionTimestamp = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
                volume.status.phase = .released
                return try written(try await writer.update(.volume(volume)), status: .accepted)
            }
        }
        if kind.kind == "VolumeSnapshot" && !force && principal.role != .node, case .volumeSnapshot(var snapshot)? = try await stored("VolumeSnapshot", name),
           snapshot.status.snapshotHandle != nil, snapshot.status.nodeName != nil {
            // Its node's agent deletes the plugin's copy, then the object.
            if snapshot.metadata.deletionTimestamp != nil { return try json(AnyResource.volumeSnapshot(snapshot), status: .accepted) }
            snapshot.metadata.deletionTimestamp = Timestamp(secondsSinceEpoch: Date().timeIntervalSince1970)
            return try written(try await writer.update(.volumeSnapshot(snapshot)), status: .accepted)
        }
        return try json(try await writer.delete(kind: kind.kind, name: name, revision: revision))
    }

    /// Newline-delimited ``WatchEvent``s after `revision` (or from now), filtered like a list.
    private func watch(_ request: Request, _ context: BasicRequestContext, _ principal: Principal) async throws -> Response {
        let kind = try kind(context)
        let query = request.uri.queryParameters
        let filter = try ObjectFilter { query.get($0) }
        try authorize(principal, .read, kind: kind.kind, name: nil, nodeFilter: filter.nodeName)
        if kind.kind == "Secret" && principal.role != .admin {
            throw APIFailure(.forbidden, "Forbidden", "only admin tokens watch secrets")
        }
        var after: UInt64?
        if let text = query.get("revision") {
            guard let value = UInt64(text) else { throw APIFailure.badRequest("revision: \"\(text)\" is not a revision number") }
            after = value
        }
        // What this server's bus has delivered; with etcd, a revision another server wrote may
        // be newer than that and is no future: etcd itself is asked.
        let delivered = writer.bus.channel(.resources).lastRevision
        let current = after.map { $0 > delivered } == true ? try await writer.revision() : delivered
        if let after, after > current {
            throw APIFailure.badRequest("revision: \(after) is in the future; the store is at revision \(current). List again and watch from the list's revision")
        }
        let subscription: BusSubscription<ResourceEvent>
        do {
            subscription = try writer.bus.subscribe(to: .resources, after: after ?? current)
        } catch {
            if case .revisionTooOld = error { throw APIFailure(.gone, "Gone", error.description) }
            throw APIFailure(.serviceUnavailable, "Unavailable", error.description)
        }
        let metrics = self.metrics
        let encoded = self.encoded
        let from = after ?? current
        metrics.watchers.increment(by: 1)
        return Response(status: .ok, headers: [.contentType: "application/x-ndjson"], body: ResponseBody { writer in
            defer {
                subscription.cancel()
                metrics.watchers.decrement(by: 1)
            }
            // What the bus delivered since the last write goes out as one write: with many
            // watchers, a write (a chunk, a TLS record, a syscall) per event was most of the
            // fan-out's cost.
            // A write holds at most `writeBytes` (or one line): a batch of thousands of large
            // objects goes out in pieces, not copied into one buffer.
            let writeBytes = 256 << 10
            var deliveries = subscription.makeAsyncIterator()
            while let batch = await deliveries.nextBatch() {
                var lines: [ByteBuffer] = []
                var pending = 0
                var ended = false
                for delivery in batch {
                    let line: ByteBuffer
                    switch delivery {
                    case .event(let revision, let event):
                        // A bus behind the asked revision repeats what the client has seen.
                        guard revision > from else { continue }
                        // Read once: each read of `event.object` from CapstanCore is a copy of the
                        // whole object (a retain of each of its fields), per event and watcher.
                        let object = event.object
                        guard object.kind == kind.kind, filter.matches(object) else { continue }
                        line = try encoded.line(event, revision: revision)
                    case .resync(let revision):
                        var data = try SortedJSON.data(WatchEvent(type: .resync, revision: revision))
                        data.append(UInt8(ascii: "\n"))
                        line = ByteBuffer(bytes: data)
                        ended = true
                    }
                    if pending > 0 && pending + line.readableBytes > writeBytes {
                        try await writer.write(Self.joined(lines, bytes: pending))
                        lines.removeAll(keepingCapacity: true)
                        pending = 0
                    }
                    lines.append(line)
                    pending += line.readableBytes
                    if ended { break }
                }
                if !lines.isEmpty { try await writer.write(Self.joined(lines, bytes: pending)) }
                if ended {
                    try await writer.finish(nil)
                    return
                }
            }
            try await writer.finish(nil)
        })
    }

    /// `lines` as one buffer (the one line itself, shared, when there is one).
    static func joined(_ lines: [ByteBuffer], bytes: Int) -> ByteBuffer {
        if lines.count == 1 { return lines[0] }
        var out = ByteBuffer()
        out.reserveCapacity(bytes)
        for var line in lines { out.writeBuffer(&line) }
        return out
    }

    /// Reads an instance's output from its node's agent.
    private func log(_ request: Request, _ context: BasicRequestContext, _ principal: Principal) async throws -> Response {
        let name = try name(context)
        guard principal.role != .node else { throw APIFailure(.forbidden, "Forbidden", "node tokens do not read logs through the API") }
        let wait: Double
        do throws(LogQuery.Problem) {
            _ = try LogQuery.parse { request.uri.queryParameters.get($0) }
            wait = try LogQuery.wait { request.uri.queryParameters.get($0) }
        } catch {
            throw APIFailure.badRequest(error.message)
        }
        guard case .instance(let instance)? = try await writer.get(kind: "Instance", name: name) else {
            throw APIFailure.notFound("Instance \"\(name)\" not found")
        }
        guard let nodeName = instance.spec.nodeName else {
            throw APIFailure(.badRequest, "NotScheduled", "instance \"\(name)\" is not on a node yet, so it has no output")
        }
        guard case .node(let node)? = try await writer.get(kind: "Node", name: nodeName),
              let address = node.spec.agentAddress else {
            throw APIFailure(.serviceUnavailable, "Unavailable", "node \"\(nodeName)\" has no agent address; is its agent running?")
        }
        // Only ever the agent's own log path: the address is checked to be scheme://host:port
        // (NodeSpec validation), and the name is a DNS label.
        guard NodeSpec.agentAddressProblem(address) == nil, DNSLabel.problem(with: name) == nil else {
            throw APIFailure(.badGateway, "Unavailable", "node \"\(nodeName)\" has no usable agent address")
        }
        var url = "\(address)/v1/instances/\(name)/log"
        let (offset, maxBytes) = try LogQuery.parse { request.uri.queryParameters.get($0) }
        let stream = request.uri.queryParameters.get("stream") == "stderr" ? "stderr" : "stdout"
        url += "?stream=\(stream)&offset=\(offset)&maxBytes=\(maxBytes)" + (wait > 0 ? "&wait=\(wait)" : "")
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await HTTPClients.client(caPEM: identity?.caPEM, identity: identity).execute(HTTPClientRequest(url: url), timeout: .seconds(10 + Int64(wait)))
            body = try await response.body.collect(upTo: 64 << 20)
        } catch {
            throw APIFailure(.badGateway, "Unavailable", "the agent of node \"\(nodeName)\" at \(address) did not answer: \(error)")
        }
        var answer = Response(status: .init(code: Int(response.status.code)), headers: [.contentType: "application/octet-stream"], body: .init(byteBuffer: body))
        if let next = response.headers.first(name: LogHeaders.nextOffset), let field = APIRoutes.nextOffsetField {
            answer.headers[field] = next
        }
        return answer
    }

    /// Refuses a write that would let the cluster hold more than ``maxInstances`` instances: the
    /// sum of every workload's replicas, and instances that belong to no workload. Checked on the
    /// API path only; controllers create what the workloads already account for.
    private func checkInstanceQuota(_ object: AnyResource, creating: Bool) async throws {
        // Every field problem first (the store would say them too), then the cluster's limit.
        let problems = object.validate()
        if !problems.isEmpty {
            throw APIFailure(StoreError.invalid(ValidationError(subject: "\(object.kind) \"\(object.name)\"", problems: problems)))
        }
        let limit = maxInstances
        switch object {
        case .workload(let workload):
            let name = workload.metadata.name
            let others: Int64, standalone: Int
            if let cachedKind {
                others = cachedKind("Workload").reduce(into: Int64(0)) { sum, object in
                    if case .workload(let other) = object, other.metadata.name != name { sum = sum.addingReportingOverflow(Int64(other.spec.replicas)).partialValue }
                }
                standalone = cachedKind("Instance").count { $0.metadata.owner == nil }
            } else {
                others = try await writer.sum(kind: "Workload", field: "$.spec.replicas", excluding: name)
                standalone = try await writer.count(kind: "Instance", withoutField: "$.metadata.owner")
            }
            let total = others.addingReportingOverflow(Int64(workload.spec.replicas)).partialValue + Int64(standalone)
            if total > Int64(limit) {
                throw APIFailure(StoreError.invalid(ValidationError(subject: "Workload \"\(name)\"", problems: [
                    ValidationProblem(path: "spec.replicas", message: "\(workload.spec.replicas) would bring the cluster to \(total) instances, over its maximum of \(limit) (capstan server --max-instances)"),
                ])))
            }
        case .instance(let instance) where creating && instance.metadata.owner == nil:
            let count = if let cachedKind { cachedKind("Instance").count } else { try await writer.count(kind: "Instance") }
            if count >= limit {
                throw APIFailure(StoreError.invalid(ValidationError(subject: "Instance \"\(instance.metadata.name)\"", problems: [
                    ValidationProblem(path: "", message: "the cluster holds \(count) instances, its maximum (capstan server --max-instances)"),
                ])))
            }
        default:
            return
        }
    }

    // MARK: Plumbing

    static let nextOffsetField = HTTPField.Name(LogHeaders.nextOffset)

    private func kind(_ context: BasicRequestContext) throws -> ResourceKind {
        let plural = context.parameters.get("plural") ?? ""
        guard let kind = ResourceKind.plural(plural) else {
            throw APIFailure.notFound("/v1/\(plural): no such kind; the API serves \(ResourceKind.names)")
        }
        return kind
    }

    private func name(_ context: BasicRequestContext) throws -> String {
        guard let name = context.parameters.get("name"), !name.isEmpty else { throw APIFailure.badRequest("the path names no object") }
        return name
    }

    enum Access { case open, authenticated }

    /// Registers a handler that answers failures as ``ErrorBody`` JSON and records its latency.
    /// Unless `access` is `.open`, the request must carry `Authorization: Bearer <token>` of a
    /// live token (else 401); the handler gets the token's principal and authorizes the rest.
    /// Mutating requests leave one line in the audit log.
    private func route(_ router: Router<BasicRequestContext>, _ method: HTTPRequest.Method, _ path: RouterPath, _ name: String, access: Access = .authenticated,
                       _ handler: @escaping @Sendable (Request, BasicRequestContext, Principal) async throws -> Response) {
        let metrics = self.metrics
        let audit = self.audit
        let writer = self.writer
        router.on(path, method: method) { request, context -> Response in
            let started = ContinuousClock.now
            var response: Response
            var principal: Principal?
            do {
                if access == .open {
                    response = try await handler(request, context, Principal(role: .viewer, tokenID: "anonymous"))
                } else {
                    guard request.headers[.authorization] != nil else {
                        throw APIFailure(.unauthorized, "Unauthorized", "send a token: Authorization: Bearer <token> (capstan finds it in $CAPSTAN_TOKEN, ~/.capstan/config or .capstan/admin.token; create more with capstan token create)")
                    }
                    guard let authenticated = await Self.authenticate(request, writer) else {
                        throw APIFailure(.unauthorized, "Unauthorized", "the token is not valid: unknown, revoked or malformed (a token is <id>.<secret>, from capstan token create)")
                    }
                    principal = authenticated
                    response = try await handler(request, context, authenticated)
                }
            } catch let failure as APIFailure {
                response = failureResponse(failure)
            } catch let error as StoreError {
                response = failureResponse(APIFailure(error))
            } catch let error as HTTPError {
                response = failureResponse(APIFailure(error.status, error.status.reasonPhrase.replacingOccurrences(of: " ", with: ""), error.body ?? error.status.reasonPhrase))
            } catch is NIOTooManyBytesError {
                response = failureResponse(APIFailure.tooLarge(RequestDecoding.maxBodyBytes))
            } catch {
                // Never a type name or a stack to the client: the log has the detail.
                context.logger.error("\(method) \(request.uri.path) failed: \(String(reflecting: error))")
                response = failureResponse(APIFailure(.internalServerError, "Internal", "the server failed to answer; its log has the detail"))
            }
            metrics.recordRequest(method: method.rawValue, route: name, code: response.status.code, duration: ContinuousClock.now - started)
            if response.status == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer" }
            if method != .get, let audit {
                audit.record(principal: principal?.name ?? "anonymous", method: method.rawValue, path: request.uri.path, code: response.status.code)
            }
            return response
        }
    }

    static func authenticate(_ request: Request, _ writer: StoreWriter) async -> Principal? {
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer ") else { return nil }
        return await writer.authenticateRequest(String(header.dropFirst("Bearer ".count))).flatMap(Principal.init)
    }

    /// Throws 403 with the reason when the policy says no. `coarse` checks only what the kind
    /// and verb decide, before the body is read: a node is refused a kind it never writes.
    /// A Secret as a viewer sees it: its keys, not their values.
    static func redacted(_ object: AnyResource, for principal: Principal) -> AnyResource {
        guard principal.role == .viewer, case .secret(var secret) = object else { return object }
        secret.spec.data = secret.spec.data.mapValues { _ in [] }
        secret.metadata.annotations["capstan.dev/redacted"] = "values are shown to admin tokens only"
        return .secret(secret)
    }

    /// For a node reading a Secret: whether an instance bound to it uses the secret.
    private func secretInUse(_ name: String, by principal: Principal, kind: String) async throws -> Bool {
        guard kind == "Secret", principal.role == .node, let node = principal.node else { return false }
        let instances = try await writer.list(kind: "Instance").items
        return instances.contains { object in
            guard case .instance(let instance) = object else { return false }
            return instance.spec.nodeName == node && instance.spec.template.secrets.contains { $0.secret == name }
        }
    }

    private func authorize(_ principal: Principal, _ verb: Authorizer.Verb, kind: String, name: String?, object: AnyResource? = nil, stored: AnyResource? = nil, nodeFilter: String? = nil, secretInUse: Bool = false, coarse: Bool = false) throws {
        if coarse {
            // Object-level rules need the object: decide only what the role and kind alone can.
            switch principal.role {
            case .admin, .node: return
            case .viewer, .join: break
            }
        }
        if let reason = Authorizer.denial(principal, verb, kind: kind, name: name, object: object, stored: stored, nodeFilter: nodeFilter, secretInUse: secretInUse) {
            throw APIFailure(.forbidden, "Forbidden", reason)
        }
    }

    private func requireAdmin(_ principal: Principal, _ what: String) throws {
        guard principal.role == .admin else { throw APIFailure(.forbidden, "Forbidden", "only an admin token may \(what)") }
    }

    private func stored(_ kind: String, _ name: String) async throws -> AnyResource? {
        try await writer.get(kind: kind, name: name)
    }
}

/// `POST /v1/tokens`'s body.
struct TokenRequest: Codable, Sendable {
    var role: String
    var node: String?
    var description: String?
}

func failureResponse(_ failure: APIFailure, headers extra: HTTPFields = [:]) -> Response {
    let data = (try? JSONEncoder().encode(failure.body)) ?? Data()
    var headers: HTTPFields = [.contentType: "application/json"]
    headers.append(contentsOf: extra)
    // A body past the limit was not read to its end: close the connection rather than read on.
    if failure.status == .contentTooLarge { headers[.connection] = "close" }
    return Response(status: failure.status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

private func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try SortedJSON.encode(value))))
}

private func text(_ value: String) -> Response {
    Response(status: .ok, headers: [.contentType: "text/plain"], body: .init(byteBuffer: ByteBuffer(string: value)))
}
