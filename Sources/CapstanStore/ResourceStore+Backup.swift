import CapstanCore
import Foundation
import GRDB

extension ResourceStore {
    /// Copies the store at `path` to `destination` with SQLite's online backup API: one
    /// consistent snapshot, taken while a server may be writing. `destination` must not exist.
    /// - Returns: the revision the copy holds.
    public static func backup(databaseAt path: String, to destination: String) throws(StoreError) -> UInt64 {
        guard FileManager.default.fileExists(atPath: path) else { throw .storage("\(path) does not exist; give the server's --data-dir") }
        guard !FileManager.default.fileExists(atPath: destination) else { throw .storage("\(destination) exists already; name a new file") }
        do {
            let source = try DatabaseQueue(path: path)
            let copy = try DatabaseQueue(path: destination)
            try source.backup(to: copy)
            let revision = try copy.read(currentRevisionOfCopy)
            try copy.close()
            try source.close()
            chmod(destination, 0o600)
            return revision
        } catch {
            try? FileManager.default.removeItem(atPath: destination)
            throw .storage("backup of \(path) to \(destination) failed: \(error)")
        }
    }

    /// Replaces the store at `path` with the backup at `backup`: the database, its WAL and the
    /// revision marker. The server must be stopped. Watchers resuming from a newer revision are
    /// told to relist.
    /// - Returns: the revision the store now holds.
    public static func restore(backup: String, to path: String) throws(StoreError) -> UInt64 {
        guard FileManager.default.fileExists(atPath: backup) else { throw .storage("\(backup) does not exist") }
        let staging = path + ".restoring"
        do {
            try? FileManager.default.removeItem(atPath: staging)
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            let source = try DatabaseQueue(path: backup, configuration: readOnly)
            let revision = try source.read(currentRevisionOfCopy)
            let copy = try DatabaseQueue(path: staging)
            try source.backup(to: copy)
            try copy.close()
            try source.close()
            for stale in [path + "-wal", path + "-shm"] { try? FileManager.default.removeItem(atPath: stale) }
            guard rename(staging, path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
            chmod(path, 0o600)
            _ = try RevisionMarker(path: path + markerSuffix, revision: revision)
            return revision
        } catch let error as StoreError {
            throw error
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw .storage("restore of \(backup) to \(path) failed: \(error)")
        }
    }

    private static var readOnly: Configuration {
        var configuration = Configuration()
        configuration.readonly = true
        return configuration
    }

    /// The revision of a store file, refusing files that are not Capstan stores.
    private static func currentRevisionOfCopy(_ db: Database) throws -> UInt64 {
        guard try db.tableExists("counters"), try db.tableExists("objects"),
              let revision = try UInt64.fetchOne(db, sql: "SELECT value FROM counters WHERE name = 'revision'") else {
            throw StoreError.storage("\(db.description) is not a Capstan store (no objects or revision)")
        }
        return revision
    }
}

extension ResourceStore {
    /// Puts a new key first in `secrets.keys` and seals every Secret with it again (the old
    /// keys stay, for backups sealed with them). Returns the new key's id and how many secrets
    /// were sealed again.
    public func rotateSecretsKey() throws(StoreError) -> (key: String, resealed: Int) {
        let rotated: SecretCipher
        do {
            rotated = try SecretCipher.rotated(at: currentCipher.path)
        } catch let error as StoreError {
            throw error
        } catch {
            throw .storage("\(error)")
        }
        cipher.withLock { $0 = rotated }
        let secrets = try list(kind: "Secret").items
        for secret in secrets { try update(secret) }
        return (rotated.current, secrets.count)
    }
}
