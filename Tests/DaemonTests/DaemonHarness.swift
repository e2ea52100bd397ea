import ControlAPI
import Foundation
import XCTest

/// Paths of the checkout and its release binaries (`make test` builds them first).
enum Checkout {
    static let root: URL = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }()

    static func binary(_ name: String) throws -> String {
        let path = root.appendingPathComponent(".build/release/\(name)").path
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw XCTSkip("\(path) is not built: run `swift build -c release` (make test does)")
        }
        return path
    }

    static func model() throws -> String {
        let path = ProcessInfo.processInfo.environment["TWINBRAIN_MODEL"]
            ?? root.appendingPathComponent(".cache/models/SmolLM2-135M-Instruct.Q4_1.gguf").path
        guard FileManager.default.fileExists(atPath: path) else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("the model is missing under CI") }
            throw XCTSkip("needs the default model: run `make model`")
        }
        return path
    }
}

/// A real twinbraind on a temporary socket, with the real model.
final class DaemonProcess {
    let directory: URL
    let socket: String
    let process = Process()
    let log: URL
    var client: SocketClient { SocketClient(socketPath: socket) }

    /// Removed with the process unless a later daemon is to start on the same state.
    var removesDirectory = true

    /// `directory`: reuse another daemon's directory (its state and socket path), as a restart does.
    init(arguments: [String] = [], environment: [String: String] = [:], directory reused: URL? = nil) throws {
        directory = reused ?? URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("twinbraind-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        socket = directory.appendingPathComponent("d.sock").path
        log = directory.appendingPathComponent("daemon.log")
        FileManager.default.createFile(atPath: log.path, contents: nil)
        process.executableURL = URL(fileURLWithPath: try Checkout.binary("twinbraind"))
        process.arguments = ["--socket", socket, "--state-dir", directory.appendingPathComponent("state").path,
                             "--model", try Checkout.model(), "--config", "/dev/null"] + arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "NOTIFY_SOCKET")
        env.removeValue(forKey: "LISTEN_FDS")
        env.merge(environment) { $1 }
        process.environment = env
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    /// Waits until /v1/health answers 200.
    func waitUntilReady(timeout: TimeInterval = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let reply = try? client.send("GET", "/v1/health"), reply.status == 200 { return }
            guard process.isRunning else { throw DaemonError.exited(logText) }
            usleep(50_000)
        }
        throw DaemonError.timeout(logText)
    }

    var logText: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }

    func terminate() -> Int32 {
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// SIGKILL: no shutdown code runs, as when the box loses power or the OOM killer strikes.
    func kill9() {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit {
        if process.isRunning { process.terminate(); process.waitUntilExit() }
        if removesDirectory { try? FileManager.default.removeItem(at: directory) }
    }

    enum DaemonError: Error { case exited(String), timeout(String) }
}

/// Polls `probe` every 0.1 s until it gives a value.
func waitFor<T>(_ what: String, timeout: TimeInterval = 20, _ probe: () throws -> T?) throws -> T {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if let value = try probe() { return value }
        usleep(100_000)
    }
    throw NSError(domain: "timeout", code: 1, userInfo: [NSLocalizedDescriptionKey: "timed out waiting for \(what)"])
}

func json(_ object: Any) -> Data { try! JSONSerialization.data(withJSONObject: object) }

/// Runs a program, returns (exit code, stdout, stderr).
@discardableResult
func runProgram(_ path: String, _ arguments: [String], environment: [String: String] = [:], stdin: String? = nil) throws -> (Int32, String, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = arguments
    var env = ProcessInfo.processInfo.environment
    env.merge(environment) { $1 }
    p.environment = env
    let out = Pipe(), err = Pipe(), input = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = input
    try p.run()
    if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
    try input.fileHandleForWriting.close()
    let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}
