import CSystemd
import ControlAPI
import Foundation
import NIOCore

/// What a caller may do, decided from the socket peer's credentials (SO_PEERCRED).
enum AccessLevel: String, Comparable {
    case none
    /// Members of the user group: read status and ask questions.
    case user
    /// Root, the daemon's own user, members of the admin group: change knowledge and configuration.
    case admin

    static func < (a: AccessLevel, b: AccessLevel) -> Bool {
        let order: [AccessLevel] = [.none, .user, .admin]
        return order.firstIndex(of: a)! < order.firstIndex(of: b)!
    }
}

struct PeerCredentials: Sendable, Equatable {
    let pid: Int32
    let uid: UInt32
    let gid: UInt32
}

struct AccessPolicy: Sendable {
    let userGroup: String
    let adminGroup: String

    func level(for peer: PeerCredentials) -> AccessLevel {
        if peer.uid == 0 || peer.uid == getuid() { return .admin }
        let groups = Self.groups(of: peer)
        if let admin = Self.gid(adminGroup), groups.contains(admin) { return .admin }
        if let user = Self.gid(userGroup), groups.contains(user) { return .user }
        return .none
    }

    /// The group a level needs, for the 403 message.
    func group(for level: AccessLevel) -> String {
        level == .admin ? "\(adminGroup) (or root)" : userGroup
    }

    static func gid(_ name: String) -> gid_t? {
        guard let g = getgrnam(name) else { return nil }
        return g.pointee.gr_gid
    }

    /// The peer's primary group and the supplementary groups of its user.
    static func groups(of peer: PeerCredentials) -> Set<gid_t> {
        var result: Set<gid_t> = [peer.gid]
        guard let pw = getpwuid(peer.uid) else { return result }
        var count: Int32 = 64
        var list = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(pw.pointee.pw_name, pw.pointee.pw_gid, &list, &count) < 0 {
            list = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(pw.pointee.pw_name, pw.pointee.pw_gid, &list, &count)
        }
        result.formUnion(list.prefix(Int(max(0, count))))
        return result
    }

    /// The caller's credentials and access, or 403 naming the group the call needs.
    func authorize(_ context: DaemonContext, needs: AccessLevel) async throws -> (PeerCredentials, AccessLevel) {
        guard let peer = await Self.credentials(of: context.channel) else {
            throw APIError(.forbidden, "cannot identify the caller (no peer credentials on this connection)")
        }
        let level = level(for: peer)
        guard level >= needs else {
            throw APIError(.forbidden, "uid \(peer.uid) may not do this: it needs membership of the group '\(group(for: needs))'")
        }
        return (peer, level)
    }

    /// Reads SO_PEERCRED of a connected Unix socket channel.
    static func credentials(of channel: any Channel) async -> PeerCredentials? {
        guard let provider = channel as? SocketOptionProvider else { return nil }
        do {
            let cred: twinbrain_ucred = try await provider.unsafeGetSocketOption(
                level: SocketOptionLevel(SOL_SOCKET), name: SocketOptionName(SO_PEERCRED)).get()
            return PeerCredentials(pid: cred.pid, uid: cred.uid, gid: cred.gid)
        } catch {
            return nil
        }
    }
}
