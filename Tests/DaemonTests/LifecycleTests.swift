import ControlAPI
import Foundation
import XCTest

/// A datagram socket standing in for systemd's NOTIFY_SOCKET: collects sd_notify messages.
final class NotifyListener: @unchecked Sendable {
    let path: String
    private let fd: Int32
    private let lock = NSLock()
    private var _messages: [String] = []
    private var thread: Thread?

    init() throws {
        path = NSTemporaryDirectory() + "notify-\(UUID().uuidString.prefix(8)).sock"
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: bytes); raw[bytes.count] = 0 }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw NSError(domain: "bind", code: Int(errno)) }
        var timeout = timeval(tv_sec: 0, tv_usec: 200_000)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let t = Thread { [self] in
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !Thread.current.isCancelled {
                let n = recv(fd, &buffer, buffer.count, 0)
                if n > 0 { lock.withLock { _messages.append(String(decoding: buffer[..<n], as: UTF8.self)) } }
            }
        }
        thread = t
        t.start()
    }

    var messages: [String] { lock.withLock { _messages } }
    func count(_ fragment: String) -> Int { messages.filter { $0.contains(fragment) }.count }

    func wait(for fragment: String, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if count(fragment) > 0 { return true }
            usleep(20_000)
        }
        return false
    }

    deinit {
        thread?.cancel()
        usleep(300_000)
        close(fd)
        unlink(path)
    }
}

final class LifecycleTests: XCTestCase {
    /// READY only after loading, STATUS lines, WATCHDOG pings from a live compute loop (and none
    /// from a stalled one), STOPPING on SIGTERM, exit 0.
    func testNotifyProtocolAndWatchdog() throws {
        let notify = try NotifyListener()
        let daemon = try DaemonProcess(arguments: ["--debug-stall"],
                                       environment: ["NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "1000000"])
        XCTAssertTrue(notify.wait(for: "READY=1", timeout: 30), "\(notify.messages)\n\(daemon.logText)")
        let ready = notify.messages.firstIndex { $0.contains("READY=1") }!
        XCTAssertTrue(notify.messages[..<ready].contains { $0.contains("STATUS=loading") }, "\(notify.messages)")
        XCTAssertEqual(try daemon.client.send("GET", "/v1/health").status, 200, "READY means serving")
        XCTAssertTrue(notify.wait(for: "WATCHDOG=1", timeout: 3))

        // A stalled compute loop stops the pings.
        XCTAssertEqual(try daemon.client.send("POST", "/v1/debug/stall?seconds=3").status, 200)
        let audit = try JSONDecoder().decode(AuditList.self, from: try daemon.client.send("GET", "/v1/audit").body)
        XCTAssertEqual(audit.entries.first?.action, "debug-stall")
        XCTAssertEqual(audit.entries.first?.user, AuditUser.current)
        usleep(700_000)
        let before = notify.count("WATCHDOG=1")
        usleep(1_500_000)
        XCTAssertEqual(notify.count("WATCHDOG=1"), before, "pings continued while the compute loop hung")
        usleep(2_000_000)
        XCTAssertGreaterThan(notify.count("WATCHDOG=1"), before, "pings resume once the loop lives again")

        XCTAssertEqual(daemon.terminate(), 0)
        XCTAssertTrue(notify.wait(for: "STOPPING=1", timeout: 5), "\(notify.messages)")
    }

    /// A model shipped with `<model>.sha256` (as the package installs it) is checked before
    /// loading: the right digest starts, a wrong one stops the start saying what to do.
    func testModelDigestIsCheckedWhenShipped() throws {
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("model-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = directory.appendingPathComponent("SmolLM2-135M-Instruct.Q4_1.gguf").path
        try FileManager.default.createSymbolicLink(atPath: model, withDestinationPath: try Checkout.model())
        let (status, digest, _) = try runProgram("/usr/bin/sha256sum", [try Checkout.model()])
        XCTAssertEqual(status, 0)
        try "\(digest.prefix(64))  SmolLM2-135M-Instruct.Q4_1.gguf\n".write(toFile: model + ".sha256", atomically: true, encoding: .utf8)
        let good = try DaemonProcess(arguments: ["--model", model])
        try good.waitUntilReady()
        XCTAssertEqual(good.terminate(), 0)

        try "\(String(repeating: "0", count: 64))  SmolLM2-135M-Instruct.Q4_1.gguf\n".write(toFile: model + ".sha256", atomically: true, encoding: .utf8)
        let bad = try DaemonProcess(arguments: ["--model", model])
        XCTAssertThrowsError(try bad.waitUntilReady()) { error in
            XCTAssertTrue("\(error)".contains("damaged or was replaced") && "\(error)".contains("apt-get install --reinstall twinbrain"), "\(error)")
        }
        XCTAssertNotEqual(bad.terminate(), 0)
    }

    /// SIGTERM during a generation: the stream ends cleanly, the daemon exits 0 quickly.
    func testSIGTERMDuringGeneration() throws {
        let daemon = try DaemonProcess()
        try daemon.waitUntilReady()
        let streamEnded = expectation(description: "stream ended")
        let lines = ResultBox()
        let client = daemon.client
        Thread.detachNewThread {
            _ = try? client.streamLines("POST", "/v1/generate", body: json(["prompt": "A long story:", "max_tokens": 4000, "stream": true])) { line in
                lines.add(line.isEmpty ? 0 : 1, retryAfter: "")
                return true
            }
            streamEnded.fulfill()
        }
        while lines.statuses.count < 3 { usleep(20_000) }
        let start = Date()
        daemon.process.interrupt()  // SIGINT takes the same graceful path as SIGTERM
        kill(daemon.process.processIdentifier, SIGTERM)
        wait(for: [streamEnded], timeout: 15)
        daemon.process.waitUntilExit()
        XCTAssertEqual(daemon.process.terminationStatus, 0, daemon.logText)
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertFalse(FileManager.default.fileExists(atPath: daemon.socket), "the socket is removed on exit")
    }

    /// The CLI against a real daemon: status, models, ask (streamed), --json, exit codes.
    func testCLIEndToEnd() throws {
        let cli = try Checkout.binary("twinbrain")
        let daemon = try DaemonProcess()
        try daemon.waitUntilReady()
        var (code, out, err) = try runProgram(cli, ["--socket", daemon.socket, "status"])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("ready") && out.contains("SmolLM2"), out)
        XCTAssertTrue(out.contains("engine:") && out.contains("kernels") && out.contains("exact arithmetic, f32 KV cache"), out)
        (code, out, err) = try runProgram(cli, ["status", "--json"], environment: ["TWINBRAIN_SOCKET": daemon.socket])
        XCTAssertEqual(code, 0, err)
        let status = try JSONDecoder().decode(StatusResponse.self, from: Data(out.utf8))
        XCTAssertEqual(status.state, "ready")
        XCTAssertTrue(["avx2", "portable"].contains(status.model?.kernels ?? ""), out)
        (code, out, err) = try runProgram(cli, ["ask", "--socket", daemon.socket, "--temperature", "0", "What is the capital of Germany?"])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("Berlin"), out)
        (code, out, _) = try runProgram(cli, ["models", "--socket", daemon.socket])
        XCTAssertEqual(out.trimmingCharacters(in: .whitespacesAndNewlines), "SmolLM2-135M-Instruct.Q4_1")
        (code, out, err) = try runProgram(cli, ["chat", "--socket", daemon.socket, "--temperature", "0", "--max-tokens", "16"],
                                          stdin: "Hello!\n/reset\nWhat is 2+2?\n")
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("(conversation forgotten)"), out)
        (code, _, err) = try runProgram(cli, ["status", "--socket", daemon.directory.path + "/none.sock"])
        XCTAssertEqual(code, 3)
        XCTAssertTrue(err.contains("not running"), err)
        (code, _, err) = try runProgram(cli, ["ask", "--socket", daemon.socket, "--max-tokens", "0", "hi"])
        XCTAssertEqual(code, 5)
        XCTAssertTrue(err.contains("max_tokens"), err)
    }

    /// Access decided per caller: as `nobody` (no twinbrain group), a connectable socket gives
    /// 403 naming the group; the default socket mode refuses the connection itself.
    func testAccessControlAsAnUnprivilegedUser() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") else {
            throw XCTSkip("needs root and setpriv to act as another user")
        }
        // A copy in a world-readable place: the checkout may sit under a directory nobody cannot enter.
        let cli = NSTemporaryDirectory() + "twinbrain-cli-\(UUID().uuidString.prefix(6))"
        try FileManager.default.copyItem(atPath: try Checkout.binary("twinbrain"), toPath: cli)
        chmod(cli, 0o755)
        defer { unlink(cli) }
        let config = NSTemporaryDirectory() + "open-\(UUID().uuidString.prefix(6)).conf"
        try "socket_mode = \"0666\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        defer { unlink(config) }
        let daemon = try DaemonProcess(arguments: ["--config", config])
        try daemon.waitUntilReady()
        chmod(daemon.directory.path, 0o755)
        let asNobody = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", cli]
        var (code, _, err) = try runProgram("/usr/bin/setpriv", asNobody + ["ask", "--socket", daemon.socket, "hello"])
        XCTAssertEqual(code, 4, err)
        XCTAssertTrue(err.contains("twinbrain"), err)
        (code, _, err) = try runProgram("/usr/bin/setpriv", asNobody + ["status", "--socket", daemon.socket])
        XCTAssertEqual(code, 4, err)
        // Health needs no group (it says nothing about the data).
        XCTAssertEqual(try daemon.client.send("GET", "/v1/health").status, 200)
        _ = daemon.terminate()

        let closed = try DaemonProcess()  // default socket mode 0660
        try closed.waitUntilReady()
        chmod(closed.directory.path, 0o755)
        (code, _, err) = try runProgram("/usr/bin/setpriv", asNobody + ["status", "--socket", closed.socket])
        XCTAssertEqual(code, 4, err)
        XCTAssertTrue(err.contains("permission denied"), err)
    }

    /// The unit files verify, and the default configuration passes --check-config.
    func testUnitFilesVerifyAndDefaultConfigChecks() throws {
        let daemonBinary = try Checkout.binary("twinbraind")
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else { throw XCTSkip("no systemd-analyze") }
        let dir = NSTemporaryDirectory() + "units-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let systemd = Checkout.root.appendingPathComponent("systemd")
        for unit in ["twinbraind.service", "twinbraind.socket"] {
            let text = try String(contentsOf: systemd.appendingPathComponent(unit), encoding: .utf8)
                .replacingOccurrences(of: "/usr/bin/twinbraind", with: daemonBinary)
            try text.write(toFile: "\(dir)/\(unit)", atomically: true, encoding: .utf8)
        }
        let (code, out, err) = try runProgram("/usr/bin/systemd-analyze", ["verify", "\(dir)/twinbraind.socket", "\(dir)/twinbraind.service"])
        XCTAssertEqual(code, 0, out + err)
        XCTAssertFalse((out + err).contains("Unknown key"), out + err)
        XCTAssertFalse((out + err).contains("Unknown section"), out + err)
        let (checked, checkOut, checkErr) = try runProgram(daemonBinary, [
            "--check-config", "--config", systemd.appendingPathComponent("twinbraind.conf").path, "--model", try Checkout.model(),
        ])
        XCTAssertEqual(checked, 0, checkOut + checkErr)
        let bad = "\(dir)/bad.conf"
        try "threads = \"many\"\nmystery = 1\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let (badCode, _, badErr) = try runProgram(daemonBinary, ["--check-config", "--config", bad])
        XCTAssertNotEqual(badCode, 0)
        XCTAssertTrue(badErr.contains("'threads' must be an integer"), badErr)
        try "arithmetic = \"fast\"\n".write(toFile: bad, atomically: true, encoding: .utf8)
        let (arithmeticCode, _, arithmeticErr) = try runProgram(daemonBinary, ["--check-config", "--config", bad])
        XCTAssertNotEqual(arithmeticCode, 0)
        XCTAssertTrue(arithmeticErr.contains("'arithmetic' is 'fast', expected \"mixed\", \"quantized\" or \"exact\""), arithmeticErr)
    }
}
