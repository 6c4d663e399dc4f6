import ArgumentParser
import CapstanCore
import CapstanEtcd
import CapstanStore
import Foundation

/// `capstan store backup|restore|rotate-key`: the embedded SQLite store, offline or online.
struct StoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Back up, restore or re-key the server's store (the SQLite file in its data directory), or copy it to etcd.",
        subcommands: [StoreBackupCommand.self, StoreRestoreCommand.self, StoreRotateKeyCommand.self, StoreMigrateCommand.self])

    /// Runs a store operation; its error is printed and exits 1.
    static func perform(_ body: () throws(StoreError) -> String) throws {
        do {
            print(try body())
        } catch {
            throw CLIExit.fail(error.description, code: CLIExit.refused)
        }
    }
}

/// `--data-dir`, shared by the store commands, and the database it holds.
struct StoreLocation: ParsableArguments {
    @Option(help: "The server's data directory.") var dataDir = ".capstan"

    var database: String { URL(fileURLWithPath: dataDir).standardizedFileURL.appendingPathComponent("capstan.db").path }
}

/// `capstan store backup --to FILE`.
struct StoreBackupCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Copy the store to a file, consistent at one revision, while the server runs (SQLite's online backup).")

    @OptionGroup var location: StoreLocation
    @Option(help: "The backup file to write (must not exist); written 0600.") var to: String

    func run() throws {
        let database = location.database
        try StoreCommand.perform { () throws(StoreError) in
            "backed up \(database) at revision \(try ResourceStore.backup(databaseAt: database, to: to)) to \(to)"
        }
    }
}

/// `capstan store restore --from FILE`.
struct StoreRestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Replace the store with a backup. Stop the server first; agents and watches relist when it is back.")

    @OptionGroup var location: StoreLocation
    @Option(help: "A file written by `capstan store backup`.") var from: String

    func run() throws {
        let database = location.database
        try StoreCommand.perform { () throws(StoreError) in
            "restored \(from) into \(database): the store is at revision \(try ResourceStore.restore(backup: from, to: database))"
        }
    }
}

/// `capstan store rotate-key`: a new key seals every Secret from now on.
struct StoreRotateKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-key",
        abstract: "Put a new key first in <data-dir>/secrets.keys and seal every Secret with it again (stop the server first; old keys stay, for backups).")

    @OptionGroup var location: StoreLocation

    func run() throws {
        let database = location.database
        guard FileManager.default.fileExists(atPath: database) else { throw CLIExit.fail("\(database) does not exist; give the server's --data-dir", code: CLIExit.refused) }
        try StoreCommand.perform { () throws(StoreError) in
            let store = try ResourceStore(path: database, bus: EventBus())
            let (key, count) = try store.rotateSecretsKey()
            store.close()
            return "secrets are sealed with key \(key) from now on; \(count) secret(s) sealed again"
        }
    }
}

/// `capstan store migrate --from sqlite:DIR --to etcd://…`: copies a single server's cluster into
/// etcd, for servers started with `--store etcd://…` afterwards. Safe to run again, even after
/// servers ran on etcd: what was copied is left alone, brought up to date if it changed in
/// SQLite and nobody touched it in etcd since, kept as etcd has it if a server changed or
/// deleted it there (a revoked token stays revoked); an object made in etcd by other means is
/// never overwritten — it is named, and the run fails.
struct StoreMigrateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "migrate",
        abstract: "Copy the SQLite store (objects, API tokens) into etcd; stop the server first. Safe to run again.")

    @Option(help: "sqlite:DIR (the server's data directory) or sqlite:FILE (its capstan.db).") var from: String
    @Option(help: "etcd://host:port[,host:port…]") var to: String
    @OptionGroup var etcd: EtcdConnectionOptions

    func run() async throws {
        guard from.hasPrefix("sqlite:") else { throw ValidationError("--from \(from): give sqlite:DIR or sqlite:FILE") }
        var path = URL(fileURLWithPath: String(from.dropFirst("sqlite:".count))).standardizedFileURL.path
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue { path += "/capstan.db" }
        guard FileManager.default.fileExists(atPath: path) else { throw CLIExit.fail("\(path) does not exist; give the server's data directory", code: CLIExit.refused) }
        let connection = try etcd.connection(to: to, flag: "--to")
        let endpoints = connection.endpoints
        let directory = (path as NSString).deletingLastPathComponent
        do {
            let store = try ResourceStore(path: path, bus: EventBus())
            defer { store.close() }
            let cipher = try SecretCipher(path: directory + "/secrets.keys")
            let client = EtcdClient(endpoints: endpoints, tls: connection.tls)
            let objects = EtcdObjectStore(client: client, cipher: cipher)
            var counts: [String: Int] = [:]
            var refused: [String] = []
            for kind in try store.kinds() {
                for object in try store.list(kind: kind).items {
                    switch try await objects.copy(object) {
                    case .added: counts["added", default: 0] += 1
                    case .updated: counts["updated", default: 0] += 1
                    case .unchanged: counts["unchanged", default: 0] += 1
                    case .changedInEtcd: counts["etcd", default: 0] += 1
                    case .different(let uid):
                        refused.append("\(kind) \"\(object.name)\": etcd holds another object of that name (uid \(uid ?? "none")); delete it there, or rename this one, and run again")
                    }
                }
            }
            let tokens = EtcdTokens(client: client)
            var tokensAdded = 0
            for record in try store.tokens() where try await tokens.copy(record) { tokensAdded += 1 }
            print("copied \(path) to \(endpoints.joined(separator: ",")): \(counts["added", default: 0]) objects added, \(counts["updated", default: 0]) updated, \(counts["unchanged", default: 0]) already there, \(counts["etcd", default: 0]) kept as etcd has them (changed or deleted there since they were copied); \(tokensAdded) API token(s) added")
            let tlsFlags = [("--etcd-cafile", etcd.etcdCafile), ("--etcd-certfile", etcd.etcdCertfile), ("--etcd-keyfile", etcd.etcdKeyfile)].compactMap { flag, value in value.map { " \(flag) \($0)" } }.joined()
            print("start each server with --store \(to)\(tlsFlags) and a data directory holding a copy of \(directory)/secrets.keys (and pki/ for TLS)")
            if !refused.isEmpty {
                throw CLIExit.fail((["\(refused.count) object(s) left alone:"] + refused.map { "  " + $0 }).joined(separator: "\n"), code: CLIExit.refused)
            }
        } catch let error as StoreError {
            throw CLIExit.fail(error.description, code: CLIExit.refused)
        } catch let error as EtcdError {
            throw CLIExit.fail(error.description, code: CLIExit.unreachable)
        }
    }
}
