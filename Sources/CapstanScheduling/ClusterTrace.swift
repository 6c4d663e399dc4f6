import CapstanSDK
import Foundation

/// Nodes and pods of a cluster trace in the CSV format of Alibaba's openb traces
/// (`sn,cpu_milli,memory_mib,gpu,model` and `name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,…`).
/// Columns are found by header name; every malformed row is reported with its line number.
public struct ClusterTrace: Sendable {
    public var nodes: [NodeSnapshot]
    /// In creation order.
    public var pods: [SchedulingUnit]

    public init(nodes: [NodeSnapshot], pods: [SchedulingUnit]) {
        self.nodes = nodes
        self.pods = pods
    }

    /// A file's problems, each with its line.
    public struct ParseError: Error, Sendable, CustomStringConvertible {
        public var file: String
        public var problems: [(line: Int, message: String)]
        public var description: String {
            problems.prefix(20).map { "\(file):\($0.line): \($0.message)" }.joined(separator: "\n")
                + (problems.count > 20 ? "\n… and \(problems.count - 20) more" : "")
        }
    }

    public static func load(nodesFile: String, podsFile: String) throws -> ClusterTrace {
        ClusterTrace(nodes: try parseNodes(try read(nodesFile), file: nodesFile), pods: try parsePods(try read(podsFile), file: podsFile))
    }

    static func read(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ParseError(file: path, problems: [(0, "cannot be read (does it exist?)")])
        }
        return String(decoding: data, as: UTF8.self)
    }

    /// Parses a node list: `sn,cpu_milli,memory_mib,gpu,model`.
    public static func parseNodes(_ text: String, file: String) throws -> [NodeSnapshot] {
        var table = try CSVTable(text, file: file, required: ["sn", "cpu_milli", "memory_mib", "gpu", "model"])
        var nodes: [NodeSnapshot] = []
        for row in table.rows {
            guard let cpu = table.integer(row, "cpu_milli"), let memory = table.integer(row, "memory_mib"), let gpus = table.integer(row, "gpu", max: 64) else { continue }
            let model = row.value("model", in: table)
            nodes.append(NodeSnapshot(
                name: row.value("sn", in: table),
                allocatable: ResourceVector(cpuMilli: cpu, memoryBytes: memory << 20, extended: gpus > 0 ? [ResourceName.gpu: gpus] : [:]),
                gpus: (0..<Int(gpus)).map { _ in GPUSlot(model: model) }))
        }
        try table.finish()
        return nodes
    }

    /// Parses a pod list, sorted by `creation_time` when present (stable).
    public static func parsePods(_ text: String, file: String) throws -> [SchedulingUnit] {
        var table = try CSVTable(text, file: file, required: ["name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli"])
        var pods: [(created: Int64, line: Int, unit: SchedulingUnit)] = []
        for row in table.rows {
            guard let cpu = table.integer(row, "cpu_milli"), let memory = table.integer(row, "memory_mib"),
                  let count = table.integer(row, "num_gpu", max: 64), let milli = table.integer(row, "gpu_milli", max: 1000) else { continue }
            var extended: [String: Int64] = [:]
            if count == 1 && milli > 0 && milli < 1000 {
                extended[ResourceName.gpuMilli] = milli
            } else if count > 0 {
                extended[ResourceName.gpu] = count
            }
            let spec = table.has("gpu_spec") ? row.value("gpu_spec", in: table) : ""
            let created = table.has("creation_time") ? (Int64(row.value("creation_time", in: table)) ?? 0) : 0
            pods.append((created, row.line, SchedulingUnit(
                name: row.value("name", in: table),
                requests: ResourceVector(cpuMilli: cpu, memoryBytes: memory << 20, extended: extended),
                gpuModels: spec.isEmpty ? [] : spec.split(separator: "|").map(String.init))))
        }
        try table.finish()
        return pods.sorted { ($0.created, $0.line) < ($1.created, $1.line) }.map(\.unit)
    }
}

/// A CSV file with a header row; collects problems instead of stopping at the first.
struct CSVTable {
    struct Row {
        var line: Int
        var fields: [String]
        func value(_ column: String, in table: CSVTable) -> String { fields[table.columns[column]!] }
    }

    let file: String
    var columns: [String: Int] = [:]
    var rows: [Row] = []
    var problems: [(line: Int, message: String)] = []

    init(_ text: String, file: String, required: [String]) throws {
        self.file = file
        // By Character, "\r\n" is one character: split on every kind of line end (CRLF files
        // from Windows tools read as one line otherwise).
        var lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).map(String.init)
        while lines.last?.isEmpty == true { lines.removeLast() }
        guard let header = lines.first else { throw ClusterTrace.ParseError(file: file, problems: [(1, "is empty; expected a header row")]) }
        for (index, name) in header.split(separator: ",", omittingEmptySubsequences: false).enumerated() {
            columns[name.trimmingCharacters(in: .whitespaces)] = index
        }
        let missing = required.filter { columns[$0] == nil }
        guard missing.isEmpty else {
            throw ClusterTrace.ParseError(file: file, problems: [(1, "header lacks column(s) \(missing.joined(separator: ", ")); expected \(required.joined(separator: ","))")])
        }
        for (offset, line) in lines.dropFirst().enumerated() where !line.isEmpty {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            if fields.count < columns.count {
                problems.append((offset + 2, "has \(fields.count) fields; the header has \(columns.count)"))
                continue
            }
            rows.append(Row(line: offset + 2, fields: fields))
        }
    }

    func has(_ column: String) -> Bool { columns[column] != nil }

    mutating func integer(_ row: Row, _ column: String, max: Int64 = Int64.max / 4096) -> Int64? {
        let text = row.value(column, in: self)
        guard let value = Int64(text), value >= 0, value <= max else {
            problems.append((row.line, "\(column) \"\(text)\" is not an integer in 0...\(max)"))
            return nil
        }
        return value
    }

    func finish() throws {
        if !problems.isEmpty { throw ClusterTrace.ParseError(file: file, problems: problems.sorted { $0.line < $1.line }) }
    }
}
