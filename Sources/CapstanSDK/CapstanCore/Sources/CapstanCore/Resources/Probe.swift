/// A check the agent runs against a running instance, like a Kubernetes probe.
///
/// Exactly one of ``exec``, ``httpGet`` or ``tcpSocket``. A liveness probe that fails
/// ``failureThreshold`` times in a row restarts the instance; a readiness probe decides whether it
/// counts as `Ready` (and so whether a rolling update may go on, and whether services send it
/// traffic).
public struct Probe: Codable, Sendable, Hashable {
    /// Runs a command in the instance's environment; exit status 0 is success.
    public var exec: [String]?
    public var httpGet: HTTPGetAction?
    public var tcpSocket: TCPSocketAction?
    /// Seconds after start before the first check.
    public var initialDelaySeconds: Double
    /// Seconds between checks.
    public var periodSeconds: Double
    /// Seconds before one check counts as failed.
    public var timeoutSeconds: Double
    /// Consecutive failures that make the probe fail.
    public var failureThreshold: Int
    /// Consecutive successes that make a failed probe pass again.
    public var successThreshold: Int

    public init(exec: [String]? = nil, httpGet: HTTPGetAction? = nil, tcpSocket: TCPSocketAction? = nil, initialDelaySeconds: Double = 0, periodSeconds: Double = 10, timeoutSeconds: Double = 1, failureThreshold: Int = 3, successThreshold: Int = 1) {
        self.exec = exec
        self.httpGet = httpGet
        self.tcpSocket = tcpSocket
        self.initialDelaySeconds = initialDelaySeconds
        self.periodSeconds = periodSeconds
        self.timeoutSeconds = timeoutSeconds
        self.failureThreshold = failureThreshold
        self.successThreshold = successThreshold
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case exec, httpGet, tcpSocket, initialDelaySeconds, periodSeconds, timeoutSeconds, failureThreshold, successThreshold
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        exec = try container.decodeIfPresent([String].self, forKey: .exec)
        httpGet = try container.decodeIfPresent(HTTPGetAction.self, forKey: .httpGet)
        tcpSocket = try container.decodeIfPresent(TCPSocketAction.self, forKey: .tcpSocket)
        initialDelaySeconds = try container.decodeIfPresent(Double.self, forKey: .initialDelaySeconds) ?? 0
        periodSeconds = try container.decodeIfPresent(Double.self, forKey: .periodSeconds) ?? 10
        timeoutSeconds = try container.decodeIfPresent(Double.self, forKey: .timeoutSeconds) ?? 1
        failureThreshold = try container.decodeIfPresent(Int.self, forKey: .failureThreshold) ?? 3
        successThreshold = try container.decodeIfPresent(Int.self, forKey: .successThreshold) ?? 1
    }

    func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        let actions = [exec != nil, httpGet != nil, tcpSocket != nil].filter { $0 }.count
        if actions != 1 {
            problems.append(ValidationProblem(path: path, message: "give exactly one of exec, httpGet or tcpSocket (found \(actions))"))
        }
        if let exec, exec.isEmpty {
            problems.append(ValidationProblem(path: "\(path).exec", message: "is empty; give the command to run"))
        }
        if let port = httpGet?.port, !(1...65535).contains(port) {
            problems.append(ValidationProblem(path: "\(path).httpGet.port", message: "\(port) is not a port (1-65535)"))
        }
        if let path = httpGet?.path, !path.hasPrefix("/") {
            problems.append(ValidationProblem(path: "\(path).httpGet.path", message: "\"\(path)\" must start with /"))
        }
        if let port = tcpSocket?.port, !(1...65535).contains(port) {
            problems.append(ValidationProblem(path: "\(path).tcpSocket.port", message: "\(port) is not a port (1-65535)"))
        }
        if let problem = ValidationProblem.seconds(initialDelaySeconds, at: "\(path).initialDelaySeconds") { problems.append(problem) }
        if let problem = ValidationProblem.seconds(periodSeconds, at: "\(path).periodSeconds", positive: true) { problems.append(problem) }
        if let problem = ValidationProblem.seconds(timeoutSeconds, at: "\(path).timeoutSeconds", positive: true) { problems.append(problem) }
        if let problem = ValidationProblem.count(failureThreshold, at: "\(path).failureThreshold", in: 1...FieldLimits.maxProbeThreshold) { problems.append(problem) }
        if let problem = ValidationProblem.count(successThreshold, at: "\(path).successThreshold", in: 1...FieldLimits.maxProbeThreshold) { problems.append(problem) }
        return problems
    }
}

/// An HTTP GET on the instance's host (`127.0.0.1` unless the network plugin gave it an address);
/// any status from 200 to 399 is success.
public struct HTTPGetAction: Codable, Sendable, Hashable {
    public var path: String
    public var port: Int
    public var host: String?

    public init(path: String = "/", port: Int, host: String? = nil) {
        self.path = path
        self.port = port
        self.host = host
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        path = try container.decodeIfPresent(String.self, forKey: .path) ?? "/"
        port = try container.decode(Int.self, forKey: .port)
        host = try container.decodeIfPresent(String.self, forKey: .host)
    }
}

/// A TCP connect to the instance's port; an accepted connection is success.
public struct TCPSocketAction: Codable, Sendable, Hashable {
    public var port: Int
    public var host: String?

    public init(port: Int, host: String? = nil) {
        self.port = port
        self.host = host
    }
}
