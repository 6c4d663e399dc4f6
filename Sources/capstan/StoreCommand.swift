import ArgumentParser
import CapstanCore
import CapstanStore
import Foundation

/// `capstan store backup|restore|rotate-key`: the embedded SQLite store, offline or online.
struct StoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store",
        abstract: "Back up, restore or re-key the server's store (the SQLite file in its data directory).",
        subcommands: [StoreBackupCommand.self, StoreRestoreCommand.self, StoreRotateKeyCommand.self])

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
