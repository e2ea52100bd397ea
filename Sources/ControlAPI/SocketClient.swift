import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a call to the daemon failed before an HTTP reply arrived.
public enum ClientError: Error, CustomStringConvertible, Equatable {
    case daemonNotRunning(socket: String)
    case permissionDenied(socket: String)
    case socketPathTooLong(String)
    case io(String)
    case malformedReply(String)

    public var description: String {
        switch self {
        case let .daemonNotRunning(socket):
            return "twinbraind is not running (nothing listens on \(socket)). Start it with `systemctl start twinbraind` "
                + "(or `make run` in a checkout), or point --socket / $\(ControlSocket.environmentVariable) at the right socket"
        case let .permissionDenied(socket):
            return "permission denied on \(socket): add yourself to the 'twinbrain' group (`sudo usermod -aG twinbrain $USER`, then log in again)"
        case let .socketPathTooLong(path): return "socket path is too long for a Unix socket: \(path)"
        case let .io(what): return "connection to twinbraind failed: \(what)"
        case let .malformedReply(what): return "twinbraind sent a reply that could not be read: \(what)"
        }
    }
}

/// An HTTP reply: status, headers (lower-cased names) and, unless streamed, the body.
public struct HTTPReply: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data

    public init(status: Int, headers: [String: String], body: Data) {
        self.status = status
        self.headers = headers
        self.body = body
    }
}

/// A small blocking HTTP/1.1 client over a Unix socket, one request per connection. The CLI
/// and tests talk to twinbraind through it; streamed replies arrive line by line.
public struct SocketClient: Sendable {
    public let socketPath: String

    public init(socketPath: String) { self.socketPath = socketPath }

    /// `--socket`, then `$TWINBRAIN_SOCKET`, then the system socket.
    public static func resolvePath(_ explicit: String?) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        if let env = ProcessInfo.processInfo.environment[ControlSocket.environmentVariable], !env.isEmpty { return env }
        return ControlSocket.systemPath
    }

    /// Sends a request and reads the whole reply.
    public func send(_ method: String, _ path: String, body: Data? = nil) throws -> HTTPReply {
        var collected = Data()
        var reply = try exchange(method, path, body: body) { collected.append($0) }
        reply.body = collected
        return reply
    }

    /// Sends a request and hands each line of the reply body to `onLine` as it arrives
    /// (NDJSON and SSE replies). Returning false from `onLine` closes the connection.
    @discardableResult
    public func streamLines(_ method: String, _ path: String, body: Data? = nil,
                            onLine: (Data) throws -> Bool) throws -> HTTPReply {
        var buffer = Data()
        var stop = false
        let reply = try exchange(method, path, body: body) { chunk in
            guard !stop else { return }
            buffer.append(chunk)
            while let newline = buffer.firstIndex(of: 0x0A) {
                let line = buffer[buffer.startIndex..<newline]
                buffer.removeSubrange(buffer.startIndex...newline)
                if try !onLine(Data(line)) { stop = true; return }
            }
        } shouldStop: { stop }
        if !stop && !buffer.isEmpty { _ = try onLine(buffer) }
        return reply
    }

    // MARK: - Transport

    private func connectSocket() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ClientError.io("socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let pathBytes = Array(socketPath.utf8)
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw ClientError.socketPathTooLong(socketPath)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
            raw[pathBytes.count] = 0
        }
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        if result != 0 {
            let e = errno
            close(fd)
            switch e {
            case ENOENT, ECONNREFUSED: throw ClientError.daemonNotRunning(socket: socketPath)
            case EACCES, EPERM: throw ClientError.permissionDenied(socket: socketPath)
            default: throw ClientError.io("connect \(socketPath): \(String(cString: strerror(e)))")
            }
        }
        return fd
    }

    /// Writes the request. A daemon may answer before the body is all sent (a body over its
    /// limit) and stop reading: writing stops as soon as a reply is readable, and MSG_NOSIGNAL
    /// keeps a closed connection from killing the caller with SIGPIPE. The reply is then read.
    private func writeAll(_ fd: Int32, _ data: Data) throws {
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                var p = pollfd(fd: fd, events: Int16(POLLOUT | POLLIN), revents: 0)
                if poll(&p, 1, -1) < 0 {
                    if errno == EINTR { continue }
                    throw ClientError.io("poll: \(String(cString: strerror(errno)))")
                }
                if p.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 { return }
                let n = Glibc.send(fd, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                if n < 0 {
                    if errno == EINTR || errno == EAGAIN { continue }
                    if errno == EPIPE || errno == ECONNRESET { return }
                    throw ClientError.io("write: \(String(cString: strerror(errno)))")
                }
                offset += n
            }
        }
    }

    private func exchange(_ method: String, _ path: String, body: Data?, onBody: (Data) throws -> Void,
                          shouldStop: () -> Bool = { false }) throws -> HTTPReply {
        let fd = try connectSocket()
        defer { close(fd) }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nAccept: */*\r\n"
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        head += "\r\n"
        try writeAll(fd, Data(head.utf8) + (body ?? Data()))

        var reader = Reader(fd: fd)
        let statusLine = try reader.line()
        let parts = statusLine.split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, parts[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
            throw ClientError.malformedReply("status line '\(statusLine)'")
        }
        var headers: [String: String] = [:]
        while true {
            let line = try reader.line()
            if line.isEmpty { break }
            guard let colon = line.firstIndex(of: ":") else { throw ClientError.malformedReply("header '\(line)'") }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            while !shouldStop() {
                let sizeLine = try reader.line()
                guard let size = Int(sizeLine.split(separator: ";")[0].trimmingCharacters(in: .whitespaces), radix: 16) else {
                    throw ClientError.malformedReply("chunk size '\(sizeLine)'")
                }
                if size == 0 { break }
                try onBody(try reader.bytes(size))
                _ = try reader.line()
            }
        } else if let length = headers["content-length"].flatMap(Int.init) {
            if length > 0 { try onBody(try reader.bytes(length)) }
        } else {
            while !shouldStop(), let chunk = try reader.some() { try onBody(chunk) }
        }
        return HTTPReply(status: status, headers: headers, body: Data())
    }

    /// Buffered reads from the socket.
    private struct Reader {
        let fd: Int32
        var buffer = Data()
        var eof = false

        init(fd: Int32) { self.fd = fd }

        mutating func fill() throws {
            var chunk = [UInt8](repeating: 0, count: 16384)
            while true {
                let n = read(fd, &chunk, chunk.count)
                if n < 0 && errno == EINTR { continue }
                if n < 0 { throw ClientError.io("read: \(String(cString: strerror(errno)))") }
                if n == 0 { eof = true } else { buffer.append(contentsOf: chunk[..<n]) }
                return
            }
        }

        mutating func line() throws -> String {
            while true {
                if let lf = buffer.firstIndex(of: 0x0A) {
                    var line = buffer[buffer.startIndex..<lf]
                    if line.last == 0x0D { line = line.dropLast() }
                    buffer.removeSubrange(buffer.startIndex...lf)
                    return String(decoding: line, as: UTF8.self)
                }
                if eof { throw ClientError.malformedReply("connection closed mid-reply") }
                try fill()
            }
        }

        mutating func bytes(_ n: Int) throws -> Data {
            while buffer.count < n {
                if eof { throw ClientError.malformedReply("connection closed mid-body") }
                try fill()
            }
            let out = Data(buffer.prefix(n))
            buffer.removeFirst(n)
            return out
        }

        mutating func some() throws -> Data? {
            if buffer.isEmpty && !eof { try fill() }
            if buffer.isEmpty { return nil }
            defer { buffer.removeAll() }
            return buffer
        }
    }
}
