import Foundation

/// One line of /proc/self/mountinfo.
public struct Mount: Sendable, Equatable, Hashable {
    public let majorMinor: String     // "8:17"
    public let mountPoint: String
    public let fstype: String
    public let device: String         // the mount source, /dev/sdb1
    public let options: String

    public var major: UInt32 { UInt32(majorMinor.split(separator: ":").first ?? "") ?? 0 }
    public var minor: UInt32 { UInt32(majorMinor.split(separator: ":").last ?? "") ?? 0 }
    public var isReadOnly: Bool { options.split(separator: ",").contains("ro") }
}

public enum MountTable {
    /// Parses mountinfo (proc(5)): ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL…] - FSTYPE SOURCE SUPEROPTIONS.
    public static func parse(_ text: String) -> [Mount] {
        text.split(separator: "\n").compactMap { line in
            let f = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 10, let dash = f.firstIndex(of: "-"), dash >= 6, dash + 2 < f.count else { return nil }
            return Mount(majorMinor: f[2], mountPoint: unescape(f[4]), fstype: f[dash + 1], device: unescape(f[dash + 2]), options: f[5])
        }
    }

    /// mountinfo writes space, tab, newline and backslash as \040 \011 \012 \134.
    static func unescape(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var bytes: [UInt8] = [], i = 0
        let u = Array(s.utf8)
        while i < u.count {
            if u[i] == 0x5C, i + 4 <= u.count, let v = UInt8(String(decoding: u[(i + 1)..<(i + 4)], as: UTF8.self), radix: 8) {
                bytes.append(v)
                i += 4
            } else {
                bytes.append(u[i])
                i += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The calling process's mount table, read to its end (`readToEnd`: Foundation's file
    /// reading stopped after the first 4 KB of this proc file).
    public static func current() -> [Mount] {
        let fd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return [] }
        defer { close(fd) }
        return parse(String(decoding: readToEnd(fd), as: UTF8.self))
    }

    /// Mounts strictly below one of the media roots (a root itself is not a drive).
    public static func media(_ mounts: [Mount], roots: [String]) -> [Mount] {
        mounts.filter { m in roots.contains { root in m.mountPoint.hasPrefix(root.hasSuffix("/") ? root : root + "/") } }
    }
}
