import ControlAPI
import Foundation
import XCTest

/// The API end to end: a real daemon, a real socket, the real model.
final class APITests: XCTestCase {
    nonisolated(unsafe) static var daemon: DaemonProcess?

    override class func setUp() {
        daemon = try? DaemonProcess(arguments: ["--queue-depth", "3"])
        try? daemon?.waitUntilReady()
    }

    override class func tearDown() {
        _ = daemon?.terminate()
        daemon = nil
    }

    func client() throws -> SocketClient {
        guard let d = Self.daemon else { _ = try Checkout.model(); _ = try Checkout.binary("twinbraind"); throw XCTSkip("no daemon") }
        return d.client
    }

    func errorCode(_ reply: HTTPReply) -> String? {
        (try? JSONDecoder().decode(ErrorBody.self, from: reply.body))?.error.code
    }

    func testHealthStatusModels() throws {
        let c = try client()
        XCTAssertEqual(try c.send("GET", "/v1/health").status, 200)
        let status = try JSONDecoder().decode(StatusResponse.self, from: try c.send("GET", "/v1/status").body)
        XCTAssertEqual(status.state, "ready")
        XCTAssertEqual(status.model?.architecture, "llama")
        XCTAssertEqual(status.caller.access, "admin", "the daemon's own uid is admin")
        XCTAssertEqual(status.queue.capacity, 3)
        let models = try JSONDecoder().decode(ModelList.self, from: try c.send("GET", "/v1/models").body)
        XCTAssertEqual(models.object, "list")
        XCTAssertEqual(models.data.map(\.id), ["SmolLM2-135M-Instruct.Q4_1"])
    }

    func testGenerateAndChatMatchTheEngine() throws {
        let c = try client()
        let reply = try c.send("POST", "/v1/generate", body: json(["prompt": "The capital of France is", "max_tokens": 6, "temperature": 0]))
        XCTAssertEqual(reply.status, 200)
        let r = try JSONDecoder().decode(GenerateResponse.self, from: reply.body)
        XCTAssertTrue(r.text.contains("Paris"), r.text)
        XCTAssertEqual(r.usage.completionTokens, 6)
        XCTAssertEqual(r.stopReason, "length")

        // Streamed chat: pieces then one final line whose text is their concatenation.
        var pieces = "", final: GenerateResponse?
        let s = try c.streamLines("POST", "/v1/chat", body: json([
            // France is a knife edge for this model: "Paris" with an f32 KV cache, "L'Étoile, …" with f16.
            "messages": [["role": "user", "content": "What is the capital of Germany?"]], "temperature": 0, "stream": true,
        ])) { line in
            let event = try JSONDecoder().decode(StreamLine.self, from: line)
            if let t = event.text { pieces += t }
            if event.done == true { final = event.result }
            return true
        }
        XCTAssertEqual(s.status, 200)
        XCTAssertEqual(s.headers["content-type"], "application/x-ndjson")
        XCTAssertEqual(final?.text, pieces)
        XCTAssertEqual(final?.stopReason, "stop")
        XCTAssertTrue(pieces.contains("Berlin"), pieces)
    }

    /// A conversation's next turn reuses the earlier turns' keys and values (`usage.prompt_tokens_reused`)
    /// and answers as a daemon evaluating it whole does.
    func testNextTurnReusesTheEarlierTurns() throws {
        let c = try client()
        func chat(_ messages: [[String: String]]) throws -> GenerateResponse {
            let reply = try c.send("POST", "/v1/chat", body: json(["messages": messages, "max_tokens": 12, "temperature": 0, "knowledge": false]))
            XCTAssertEqual(reply.status, 200, String(decoding: reply.body, as: UTF8.self))
            return try JSONDecoder().decode(GenerateResponse.self, from: reply.body)
        }
        var messages = [["role": "system", "content": "You are a helpful assistant for the staff of a small engineering office."],
                        ["role": "user", "content": "Name a tool an engineer uses every day."]]
        let first = try chat(messages)
        messages += [["role": "assistant", "content": first.text], ["role": "user", "content": "Why is it useful?"]]
        let second = try chat(messages)
        XCTAssertGreaterThan(second.usage.promptTokensReused ?? 0, first.usage.promptTokens - 17, "the first turn is reused")

        let fresh = try DaemonProcess(arguments: ["--prefix-cache-mib", "0"])
        try fresh.waitUntilReady()
        let reply = try fresh.client.send("POST", "/v1/chat", body: json(["messages": messages, "max_tokens": 12, "temperature": 0, "knowledge": false]))
        let evaluatedWhole = try JSONDecoder().decode(GenerateResponse.self, from: reply.body)
        XCTAssertEqual(evaluatedWhole.usage.promptTokensReused, 0)
        XCTAssertEqual(evaluatedWhole.text, second.text)
        XCTAssertEqual(fresh.terminate(), 0)
    }

    func testSeedAndStop() throws {
        let c = try client()
        func ask(_ extra: [String: Any]) throws -> GenerateResponse {
            var body: [String: Any] = ["prompt": "one, two, three, four,", "max_tokens": 12, "temperature": 0.9, "seed": 7]
            body.merge(extra) { $1 }
            return try JSONDecoder().decode(GenerateResponse.self, from: try c.send("POST", "/v1/generate", body: json(body)).body)
        }
        XCTAssertEqual(try ask([:]).text, try ask([:]).text, "same seed, same text")
        let stopped = try ask(["temperature": 0, "stop": ["six"]])
        XCTAssertFalse(stopped.text.contains("six"))
        XCTAssertEqual(stopped.stopReason, "stop")
    }

    /// A corpus of malformed requests: each gets a JSON 4xx, and the daemon keeps serving.
    func testMalformedRequestsLeaveTheDaemonServing() throws {
        let c = try client()
        let cases: [(String, String, Data?, Int, String)] = [
            ("POST", "/v1/generate", Data("{\"prompt\":".utf8), 400, "bad-request"),
            ("POST", "/v1/generate", Data("[1,2]".utf8), 400, "bad-request"),
            ("POST", "/v1/generate", Data(), 400, "bad-request"),
            ("POST", "/v1/generate", json(["prompt": 5]), 400, "bad-request"),
            ("POST", "/v1/generate", json(["prompt": "x", "max_tokens": "many"]), 400, "bad-request"),
            ("POST", "/v1/generate", json(["prompt": "x", "max_tokens": 0]), 400, "bad-request"),
            ("POST", "/v1/generate", json(["prompt": "x", "top_p": 2]), 400, "bad-request"),
            ("POST", "/v1/generate", json(["prompt": ""]), 400, "bad-request"),
            ("POST", "/v1/generate", json(["prompt": String(repeating: "word ", count: 5000)]), 400, "context-exceeded"),
            ("POST", "/v1/generate", Data(repeating: 0x61, count: 2 << 20), 413, "body-too-large"),
            ("POST", "/v1/chat", json(["messages": []]), 400, "bad-request"),
            ("POST", "/v1/chat", json(["messages": [["role": "wizard", "content": "hi"]]]), 400, "bad-request"),
            ("POST", "/v1/chat/completions", json(["model": "gpt-4", "messages": [["role": "user", "content": "hi"]]]), 404, "unknown-model"),
            ("POST", "/v1/chat/completions", json(["messages": [["role": "user", "content": "hi"]], "n": 3]), 400, "bad-request"),
            ("GET", "/v1/nothing", nil, 404, "not-found"),
        ]
        for (method, path, body, status, code) in cases {
            let reply = try c.send(method, path, body: body)
            XCTAssertEqual(reply.status, status, "\(method) \(path) \(String(decoding: (body ?? Data()).prefix(60), as: UTF8.self))")
            XCTAssertEqual(errorCode(reply), code, String(decoding: reply.body, as: UTF8.self))
        }
        // Broken HTTP on raw connections.
        for raw in ["GARBAGE\r\n\r\n", "POST /v1/generate HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
                    "GET /v1/health HTTP/1.1\r\n" + String(repeating: "X-A: b\r\n", count: 5000) + "\r\n", "\u{0}\u{1}\u{2}"] {
            try rawExchange(raw)
        }
        XCTAssertEqual(try c.send("GET", "/v1/health").status, 200, "still serving")
        let ok = try c.send("POST", "/v1/generate", body: json(["prompt": "Hello", "max_tokens": 2]))
        XCTAssertEqual(ok.status, 200)
    }

    /// Writes raw bytes to the socket and reads whatever comes back (or nothing).
    func rawExchange(_ text: String) throws {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = Array(try client().socketPath.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in raw.copyBytes(from: path); raw[path.count] = 0 }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        XCTAssertEqual(rc, 0)
        _ = text.withCString { write(fd, $0, strlen($0)) }
        shutdown(fd, Int32(SHUT_WR))
        var buffer = [UInt8](repeating: 0, count: 4096)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        while read(fd, &buffer, buffer.count) > 0 {}
    }

    /// More clients than the queue holds: every one is answered or told to retry.
    func testConcurrentClientsAreAnsweredOrToldToRetry() throws {
        let c = try client()
        let results = ResultBox()
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            do {
                let reply = try c.send("POST", "/v1/generate", body: json(["prompt": "Client \(i) says", "max_tokens": 16]))
                results.add(reply.status, retryAfter: reply.headers["retry-after"])
            } catch {
                results.add(-1, retryAfter: nil)
            }
        }
        let statuses = results.statuses
        XCTAssertEqual(statuses.count, 16)
        XCTAssertTrue(statuses.allSatisfy { $0 == 200 || $0 == 429 }, "\(statuses)")
        XCTAssertGreaterThanOrEqual(statuses.filter { $0 == 200 }.count, 4, "\(statuses)")
        XCTAssertTrue(results.retryHeadersPresent, "429 replies carry Retry-After")
    }

    /// A client that goes away cancels its generation: the queue empties at once.
    func testDisconnectCancelsGeneration() throws {
        let c = try client()
        var lines = 0
        try c.streamLines("POST", "/v1/generate", body: json(["prompt": "Write a very long story.", "max_tokens": 3000, "stream": true])) { _ in
            lines += 1
            return lines < 3
        }
        let deadline = Date().addingTimeInterval(3)
        var idle = false
        while Date() < deadline && !idle {
            let s = try JSONDecoder().decode(StatusResponse.self, from: try c.send("GET", "/v1/status").body)
            idle = s.queue.running == 0
            usleep(50_000)
        }
        XCTAssertTrue(idle, "the generation kept running after the client left")
    }

    func testMetricsCountRequests() throws {
        let c = try client()
        _ = try c.send("POST", "/v1/generate", body: json(["prompt": "Hi", "max_tokens": 2]))
        let text = String(decoding: try c.send("GET", "/v1/metrics").body, as: UTF8.self)
        XCTAssertTrue(text.contains("twinbrain_requests_total{route=\"/v1/generate\",status=\"200\"}"), text)
        XCTAssertTrue(text.contains("twinbrain_generated_tokens_total"))
        XCTAssertTrue(text.contains("twinbrain_queue_waiting"))
    }

    /// The official OpenAI Python client against the socket (httpx over a Unix-socket transport).
    func testOfficialOpenAIClient() throws {
        let c = try client()
        let script = Checkout.root.appendingPathComponent("Tests/DaemonTests/openai_client_check.py").path
        let (check, _, _) = try runProgram("/usr/bin/env", ["python3", "-c", "import openai, httpx"])
        if check != 0 {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("python3 lacks openai/httpx under CI (make test installs them)") }
            throw XCTSkip("python3 lacks the openai package: pip install openai httpx")
        }
        let (code, out, err) = try runProgram("/usr/bin/env", ["python3", script, c.socketPath])
        XCTAssertEqual(code, 0, out + err)
        XCTAssertTrue(out.contains("all OpenAI client checks passed"), out + err)
    }
}

final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _statuses: [Int] = []
    private var missingRetry = false
    func add(_ status: Int, retryAfter: String?) {
        lock.withLock {
            _statuses.append(status)
            if status == 429 && retryAfter == nil { missingRetry = true }
        }
    }
    var statuses: [Int] { lock.withLock { _statuses } }
    var retryHeadersPresent: Bool { lock.withLock { !missingRetry } }
}
