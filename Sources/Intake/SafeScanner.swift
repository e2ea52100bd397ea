import CIntake
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Walks a directory tree on untrusted media. Every open is relative to an already-open
/// directory and refuses symlinks in any component (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS);
/// only regular files are reported; FIFOs, devices, sockets, symlinks, unreadable entries and
/// I/O errors (a pulled drive) are skipped with a reason, never fatal; caps bound what a hostile
/// drive can make us do.
public final class SafeScanner {
    public struct Limits: Sendable {
        public var maxFileBytes: Int64 = 256 << 20
        public var maxTotalBytes: Int64 = 64 << 30
        public var maxFiles = 200_000
        public var maxDepth = 32
        public var maxNameBytes = 255
        public var maxPathBytes = 4096
        public init() {}
    }

    /// A regular file found by the scan. `path` is for people and the registry (invalid UTF-8
    /// bytes written as \xNN); `rawPath` opens it.
    public struct File: Sendable, Equatable {
        public let path: String
        public let rawPath: [UInt8]
        public let size: Int64
        public let mtime: Double
    }

    public struct Skipped: Sendable, Equatable {
        public let path: String
        public let reason: String
    }

    public let root: String
    public let limits: Limits
    let rootFD: Int32

    /// Opens the root (an absolute path, no symlink anywhere in it).
    public init(root: String, limits: Limits = Limits()) throws {
        guard root.hasPrefix("/") else { throw IntakeError("\(root) is not an absolute path") }
        self.root = root
        self.limits = limits
        rootFD = twinbrain_open_directory_nofollow(root)
        guard rootFD >= 0 else {
            let e = errno
            throw IntakeError(e == ELOOP ? "\(root) goes through a symbolic link; give the real path"
                : e == ENOTDIR ? "\(root) is not a directory" : "cannot open \(root): \(String(cString: strerror(e)))")
        }
    }

    deinit { close(rootFD) }

    /// Every file and every skip, in a stable (sorted) order. Throws only when the root itself
    /// becomes unreadable (the drive went away), after reporting what it found so far.
    public func scan(file: (File) throws -> Void, skipped: (Skipped) throws -> Void, onlyTopLevel: Bool = false) throws {
        var files = 0, bytes: Int64 = 0
        var rootGone: String?

        func walk(_ dirFD: Int32, _ prefix: [UInt8], depth: Int) throws {
            guard let dir = fdopendir(dup(dirFD)) else {
                try skipped(Skipped(path: Self.display(prefix), reason: "unreadable directory: \(String(cString: strerror(errno)))"))
                return
            }
            defer { closedir(dir) }
            var names: [[UInt8]] = []
            while true {
                errno = 0
                guard let entry = readdir(dir) else {
                    if errno != 0 {
                        let reason = "directory listing failed: \(String(cString: strerror(errno))) (drive removed?)"
                        if prefix.isEmpty { rootGone = reason }
                        try skipped(Skipped(path: Self.display(prefix), reason: reason))
                    }
                    break
                }
                let name = Array(UnsafeRawBufferPointer(start: twinbrain_dirent_name(entry), count: strlen(twinbrain_dirent_name(entry))))
                if name == [0x2E] || name == [0x2E, 0x2E] { continue }
                names.append(name)
            }
            for name in names.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
                let raw = prefix.isEmpty ? name : prefix + [0x2F] + name
                let shown = Self.display(raw)
                if name.count > limits.maxNameBytes { try skipped(Skipped(path: shown, reason: "name longer than \(limits.maxNameBytes) bytes")); continue }
                if raw.count > limits.maxPathBytes { try skipped(Skipped(path: shown, reason: "path longer than \(limits.maxPathBytes) bytes")); continue }
                var st = stat()
                let cName = name.map { CChar(bitPattern: $0) } + [0]
                if fstatat(dirFD, cName, &st, AT_SYMLINK_NOFOLLOW) != 0 { try skipped(Skipped(path: shown, reason: "cannot stat: \(String(cString: strerror(errno)))")); continue }
                switch st.st_mode & S_IFMT {
                case S_IFDIR:
                    if onlyTopLevel { continue }
                    if depth + 1 > limits.maxDepth { try skipped(Skipped(path: shown, reason: "deeper than \(limits.maxDepth) directories")); continue }
                    let fd = twinbrain_open_beneath(dirFD, cName, O_RDONLY | O_DIRECTORY)
                    if fd < 0 { try skipped(Skipped(path: shown, reason: Self.openFailure(errno))); continue }
                    defer { close(fd) }
                    try walk(fd, raw, depth: depth + 1)
                case S_IFREG:
                    let size = Int64(st.st_size)
                    if size > limits.maxFileBytes { try skipped(Skipped(path: shown, reason: "larger than \(limits.maxFileBytes) bytes")); continue }
                    if files >= limits.maxFiles { try skipped(Skipped(path: shown, reason: "over the limit of \(limits.maxFiles) files per scan")); continue }
                    if bytes + size > limits.maxTotalBytes { try skipped(Skipped(path: shown, reason: "over the limit of \(limits.maxTotalBytes) bytes per scan")); continue }
                    files += 1
                    bytes += size
                    try file(File(path: shown, rawPath: raw, size: size,
                                  mtime: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9))
                case S_IFLNK: try skipped(Skipped(path: shown, reason: "symbolic link (never followed)"))
                case S_IFIFO: try skipped(Skipped(path: shown, reason: "FIFO (not a regular file)"))
                case S_IFSOCK: try skipped(Skipped(path: shown, reason: "socket (not a regular file)"))
                case S_IFCHR, S_IFBLK: try skipped(Skipped(path: shown, reason: "device node (not a regular file)"))
                default: try skipped(Skipped(path: shown, reason: "not a regular file"))
                }
            }
        }
        try walk(rootFD, [], depth: 0)
        if let rootGone { throw IntakeError("\(root): \(rootGone)") }
    }

    /// Opens a scanned file for reading, again without following any symlink, and checks it is
    /// still a regular file. The caller owns the descriptor.
    public func open(_ file: File) throws -> (fd: Int32, size: Int64, mtime: Double) {
        let fd = twinbrain_open_beneath(rootFD, file.rawPath.map { CChar(bitPattern: $0) } + [0], O_RDONLY | O_NONBLOCK | O_NOCTTY)
        guard fd >= 0 else { throw IntakeError(Self.openFailure(errno)) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw IntakeError("no longer a regular file")
        }
        // Back to blocking reads (O_NONBLOCK only kept a swapped-in FIFO from hanging the open).
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return (fd, Int64(st.st_size), Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
    }

    static func openFailure(_ e: Int32) -> String {
        switch e {
        case ELOOP: return "symbolic link in the path (never followed)"
        case EXDEV: return "path leaves the scanned tree"
        case EACCES, EPERM: return "permission denied"
        case EIO: return "I/O error (damaged medium or drive removed)"
        case ENOENT: return "vanished during the scan"
        default: return "cannot open: \(String(cString: strerror(e)))"
        }
    }

    /// UTF-8 as is; each byte of an invalid sequence as \xNN, so every name has a readable,
    /// stable form.
    public static func display(_ bytes: [UInt8]) -> String {
        if let s = String(validating: bytes, as: UTF8.self) { return s }
        var out = "", i = 0
        while i < bytes.count {
            var decoded = false
            for length in (1...4).reversed() where i + length <= bytes.count {
                if let s = String(validating: bytes[i..<i + length], as: UTF8.self) { out += s; i += length; decoded = true; break }
            }
            if !decoded { out += String(format: "\\x%02X", bytes[i]); i += 1 }
        }
        return out
    }
}

public struct IntakeError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
