/// How long the agent waits before restarting an instance that exited: `initialSeconds`, doubled
/// after each restart up to `maxSeconds`; once an instance has run `resetAfterSeconds` without
/// exiting, the next delay starts from `initialSeconds` again (Kubernetes' CrashLoopBackOff).
public struct RestartBackoff: Codable, Sendable, Hashable {
    public var initialSeconds: Double
    public var maxSeconds: Double
    public var resetAfterSeconds: Double

    public init(initialSeconds: Double = 1, maxSeconds: Double = 300, resetAfterSeconds: Double = 600) {
        self.initialSeconds = initialSeconds
        self.maxSeconds = maxSeconds
        self.resetAfterSeconds = resetAfterSeconds
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case initialSeconds, maxSeconds, resetAfterSeconds }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        initialSeconds = try container.decodeIfPresent(Double.self, forKey: .initialSeconds) ?? 1
        maxSeconds = try container.decodeIfPresent(Double.self, forKey: .maxSeconds) ?? 300
        resetAfterSeconds = try container.decodeIfPresent(Double.self, forKey: .resetAfterSeconds) ?? 600
    }

    /// The delay before restart number `restart` (0 is the first restart of a run of failures).
    public func delay(forRestart restart: Int) -> Double {
        let exponent = Double(min(max(restart, 0), 60))
        let delay = min(maxSeconds, initialSeconds * pow2(exponent))
        // Stored objects from before the ranges were checked may hold anything: keep the delay
        // a number of seconds the agent can sleep for.
        return delay.isFinite ? min(max(delay, 0), FieldLimits.maxSeconds) : FieldLimits.maxSeconds
    }

    private func pow2(_ exponent: Double) -> Double {
        var value = 1.0
        var remaining = Int(exponent)
        while remaining > 0 && value < 1e12 { value *= 2; remaining -= 1 }
        return value
    }

    func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if let problem = ValidationProblem.seconds(initialSeconds, at: "\(path).initialSeconds") { problems.append(problem) }
        if let problem = ValidationProblem.seconds(maxSeconds, at: "\(path).maxSeconds") {
            problems.append(problem)
        } else if maxSeconds < initialSeconds {
            problems.append(ValidationProblem(path: "\(path).maxSeconds", message: "\(maxSeconds) is below initialSeconds (\(initialSeconds))"))
        }
        if let problem = ValidationProblem.seconds(resetAfterSeconds, at: "\(path).resetAfterSeconds") { problems.append(problem) }
        return problems
    }
}

/// How a workload replaces its instances when its template changes: at most `maxSurge`
/// instances above `replicas`, at most `maxUnavailable` below it (counting only Ready ones).
public struct RolloutStrategy: Codable, Sendable, Hashable {
    public var maxSurge: Int
    public var maxUnavailable: Int

    public init(maxSurge: Int = 1, maxUnavailable: Int = 0) {
        self.maxSurge = maxSurge
        self.maxUnavailable = maxUnavailable
    }

    enum CodingKeys: String, CodingKey, CaseIterable { case maxSurge, maxUnavailable }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        try container.rejectUnknownKeys(in: decoder)
        maxSurge = try container.decodeIfPresent(Int.self, forKey: .maxSurge) ?? 1
        maxUnavailable = try container.decodeIfPresent(Int.self, forKey: .maxUnavailable) ?? 0
    }

    func validate(at path: String) -> [ValidationProblem] {
        var problems: [ValidationProblem] = []
        if let problem = ValidationProblem.count(maxSurge, at: "\(path).maxSurge", in: 0...FieldLimits.maxReplicas) { problems.append(problem) }
        if let problem = ValidationProblem.count(maxUnavailable, at: "\(path).maxUnavailable", in: 0...FieldLimits.maxReplicas) { problems.append(problem) }
        if maxSurge == 0 && maxUnavailable == 0 {
            problems.append(ValidationProblem(path: path, message: "maxSurge and maxUnavailable are both 0, so no update could ever proceed; raise one of them"))
        }
        return problems
    }
}
