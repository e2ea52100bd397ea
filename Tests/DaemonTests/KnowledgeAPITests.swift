import ControlAPI
import Foundation
import GRDB
import XCTest

/// Joint inference against a real daemon and the real model: ingested documents are learned
/// on their own, questions recall their passages and cite them, a changed file replaces its
/// old knowledge, forgetting removes it, and `knowledge: false` leaves the main brain alone.
final class KnowledgeAPITests: XCTestCase {
    let travel = """
        Employees travelling between offices must take the train when the journey is shorter than six hours.
        Flights are only approved by the finance director, Mirela Kovacs, for journeys longer than six hours.
        Hotel costs are reimbursed up to 140 euros per night in Vienna and 110 euros elsewhere.
        """
    let canteen = """
        The canteen on floor 3 serves lunch from 11:30 to 14:00. On Fridays the canteen serves fish soup.
        The coffee machine on floor 2 is maintained by Bogdan every Tuesday.
        """

    func learning(_ daemon: DaemonProcess) throws -> StatusResponse.Learning {
        try XCTUnwrap(JSONDecoder().decode(StatusResponse.self, from: try daemon.client.send("GET", "/v1/status").body).learning)
    }

    func ingest(_ daemon: DaemonProcess, _ path: String, expectLearned: Int) throws {
        let reply = try daemon.client.send("POST", "/v1/ingest", body: json(["path": path]))
        XCTAssertEqual(reply.status, 202)
        let job = try JSONDecoder().decode(JobBody.self, from: reply.body)
        _ = try waitFor("the ingest job", timeout: 60) { () -> Bool? in
            try JSONDecoder().decode(JobBody.self, from: try daemon.client.send("GET", "/v1/jobs/\(job.id)").body).isFinished ? true : nil
        }
        _ = try waitFor("\(expectLearned) documents learned", timeout: 60) { () -> Bool? in
            let l = try learning(daemon)
            return l.documentsLearned == expectLearned && l.documentsWaiting == 0 ? true : nil
        }
    }

    func chat(_ daemon: DaemonProcess, _ question: String, extra: [String: Any] = [:]) throws -> GenerateResponse {
        var body: [String: Any] = ["messages": [["role": "user", "content": question]], "max_tokens": 4, "temperature": 0]
        body.merge(extra) { $1 }
        let reply = try daemon.client.send("POST", "/v1/chat", body: json(body))
        XCTAssertEqual(reply.status, 200, String(decoding: reply.body, as: UTF8.self))
        return try JSONDecoder().decode(GenerateResponse.self, from: reply.body)
    }

    /// A daemon that has learned `travel.md` and `canteen.txt` (their passages), from `docs`.
    func daemonWithTravelAndCanteen() throws -> (DaemonProcess, URL) {
        let daemon = try DaemonProcess()
        try daemon.waitUntilReady()
        let docs = daemon.directory.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        try Data(travel.utf8).write(to: docs.appendingPathComponent("travel.md"))
        try Data(canteen.utf8).write(to: docs.appendingPathComponent("canteen.txt"))
        try ingest(daemon, docs.path, expectLearned: 2)
        return (daemon, docs)
    }

    func testQuestionsRecallLearnedDocumentsWithSourcesAndForgettingRemovesThem() throws {
        let (daemon, docs) = try daemonWithTravelAndCanteen()
        XCTAssertEqual(try learning(daemon).passages, 2)
        let memorised = try waitFor("both documents in the token memory") { () -> StatusResponse.Learning? in
            let l = try learning(daemon)
            return l.memoryDocuments == 2 ? l : nil
        }
        let entries = try XCTUnwrap(memorised.memoryEntries)
        XCTAssertGreaterThan(entries, 40)
        let segments = daemon.directory.appendingPathComponent("state/memory")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: segments.path).filter { $0.hasSuffix(".seg") }.count, 2)
        // Behind the memory, the reader learns each document's layout (one file per version).
        _ = try waitFor("the reader adapted to both documents") { try learning(daemon).readerDocuments == 2 ? true : nil }
        let readerFiles = daemon.directory.appendingPathComponent("state/reader")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: readerFiles.path).filter { $0.hasSuffix(".rdx") }.count, 2)

        // Continuing a learned sentence: the memory (and the recalled passage) bring back its words, and say so.
        let reply = try daemon.client.send("POST", "/v1/generate", body: json([
            "prompt": "The coffee machine on floor 2 is maintained by", "max_tokens": 12, "temperature": 0]))
        let continued = try JSONDecoder().decode(GenerateResponse.self, from: reply.body)
        XCTAssertTrue(continued.text.hasPrefix(" Bogdan"), continued.text)
        let canteenSource = try XCTUnwrap(continued.sources?.first { $0.path == "canteen.txt" })
        XCTAssertGreaterThan(canteenSource.memoryTokens, 0)
        XCTAssertEqual(continued.sources?.reduce(0) { $0 + $1.weight } ?? 0, 1, accuracy: 1e-9)

        // The question's words find the travel policy, and the answer cites it.
        let flights = try chat(daemon, "Who approves flights to Vienna?")
        let cited = try XCTUnwrap(flights.sources)
        XCTAssertEqual(cited.map(\.path), ["travel.md"])
        XCTAssertEqual(cited[0].version, 1)
        XCTAssertEqual(cited[0].source, "path:\(docs.path)")
        XCTAssertEqual(cited.reduce(0) { $0 + $1.weight }, 1, accuracy: 1e-9)
        // The evidence is the line that answers, cited by path and line.
        let evidence = try XCTUnwrap(flights.evidence?.first)
        XCTAssertEqual(evidence.citation, "travel.md:2")
        XCTAssertEqual([evidence.lineStart, evidence.lineEnd], [2, 2])
        XCTAssertTrue(evidence.text.contains("Mirela Kovacs"), evidence.text)
        XCTAssertEqual(evidence.source, "path:\(docs.path)")
        // The passages are in the prompt: many more prompt tokens than the question alone.
        let alone = try chat(daemon, "Who approves flights to Vienna?", extra: ["knowledge": false])
        XCTAssertNil(alone.sources, "knowledge off: nothing recalled, nothing cited")
        XCTAssertNil(alone.evidence)
        XCTAssertNil(alone.reader, "knowledge off: the reader reads nothing")
        XCTAssertTrue(["stated", "silent", "unsure"].contains(flights.reader ?? ""), "the reader read the recalled passages")
        XCTAssertGreaterThan(flights.usage.promptTokens, alone.usage.promptTokens + 40)
        // A general question recalls nothing: the main brain answers it as it would alone.
        let general = try chat(daemon, "What is it?")
        XCTAssertEqual(general.sources, [])
        XCTAssertEqual(general.evidence, [], "no evidence: the answer is the model's alone")
        XCTAssertNil(general.reader, "nothing recalled, nothing near: the reader reads nothing")
        XCTAssertEqual(general.usage.promptTokens, try chat(daemon, "What is it?", extra: ["knowledge": false]).usage.promptTokens)
        // So does one that shares a word or two with the documents but asks about something else.
        let unrelated = "How long does the train from Paris to Rome take?"
        XCTAssertEqual(try chat(daemon, unrelated).usage.promptTokens,
                       try chat(daemon, unrelated, extra: ["knowledge": false]).usage.promptTokens)

        // The OpenAI endpoint cites too; streamed native replies carry the sources on the last line.
        let openAI = try daemon.client.send("POST", "/v1/chat/completions", body: json([
            "messages": [["role": "user", "content": "What does the canteen serve on Fridays?"]], "max_tokens": 4]))
        let openAIReply = try JSONDecoder().decode(OpenAIChatResponse.self, from: openAI.body)
        XCTAssertEqual(openAIReply.sources?.map(\.path), ["canteen.txt"])
        XCTAssertEqual(openAIReply.evidence?.first?.citation, "canteen.txt:1")
        let streamed = try daemon.client.send("POST", "/v1/chat", body: json([
            "messages": [["role": "user", "content": "When is the coffee machine maintained?"]], "max_tokens": 4, "stream": true]))
        let last = try XCTUnwrap(String(decoding: streamed.body, as: UTF8.self).split(separator: "\n").last)
        let lastLine = try JSONDecoder().decode(StreamLine.self, from: Data(last.utf8))
        XCTAssertEqual(lastLine.result?.sources?.map(\.path), ["canteen.txt"])
        XCTAssertEqual(lastLine.result?.evidence?.first?.citation, "canteen.txt:2")

        // The CLI prints the sources under the answer. Asked without a temperature, an answer
        // from recalled passages takes the most likely words: it quotes the policy, every time.
        let cli = try Checkout.binary("twinbrain")
        let (code, out, err) = try runProgram(cli, ["ask", "--socket", daemon.socket, "--max-tokens", "40", "Who approves flights?"])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("Sources:") && out.contains("travel.md"), out)
        XCTAssertTrue(out.contains("Evidence:\n  travel.md:2\n    │ Flights are only approved by the finance director, Mirela Kovacs"), out)
        XCTAssertTrue(out.contains("Mirela Kovacs"), out)
        XCTAssertEqual(try runProgram(cli, ["ask", "--socket", daemon.socket, "--max-tokens", "40", "Who approves flights?"]).1, out)
        let (learnCode, learnOut, learnErr) = try runProgram(cli, ["learn", "status", "--json", "--socket", daemon.socket])
        XCTAssertEqual(learnCode, 0, learnErr)
        XCTAssertEqual(try JSONDecoder().decode(StatusResponse.Learning.self, from: Data(learnOut.utf8)).documentsLearned, 2)

        // A changed file: its new version is learned and the old version's passages go.
        try Data(travel.replacingOccurrences(of: "Mirela Kovacs", with: "Tomasz Wróblewski-Nowak").utf8).write(to: docs.appendingPathComponent("travel.md"))
        try ingest(daemon, docs.path, expectLearned: 2)
        XCTAssertEqual(try learning(daemon).passages, 2, "the superseded version's passage is gone")
        _ = try waitFor("the superseded version out of the memory") { () -> Bool? in
            let l = try learning(daemon)
            let files = try FileManager.default.contentsOfDirectory(atPath: segments.path).filter { $0.hasSuffix(".seg") }
            return l.memoryDocuments == 2 && files.count == 2 && l.readerDocuments == 2 && l.current == nil ? true : nil
        }
        XCTAssertEqual(try chat(daemon, "Who approves flights?").sources?.map(\.version), [2])
        XCTAssertEqual(try chat(daemon, "Is Mirela Kovacs here?").sources, [], "the old text is not recalled")

        // Forgotten: no longer recalled, passages deleted.
        let travelID = try XCTUnwrap(try chat(daemon, "Who approves flights?").sources?.first?.documentId)
        XCTAssertEqual(try daemon.client.send("DELETE", "/v1/documents/\(travelID)").status, 200)
        XCTAssertEqual(try chat(daemon, "Who approves flights to Vienna?").sources, [])
        XCTAssertEqual(try learning(daemon).passages, 1)
        XCTAssertEqual(try learning(daemon).memoryDocuments, 1, "forgotten from the memory before the reply")
        XCTAssertFalse(FileManager.default.fileExists(atPath: segments.appendingPathComponent("\(travelID).seg").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: readerFiles.appendingPathComponent("\(travelID).rdx").path),
                       "the reader's examples of it are gone before the reply")
        XCTAssertEqual(try learning(daemon).readerDocuments, 1)
        let remaining = try XCTUnwrap(try learning(daemon).memoryEntries)
        XCTAssertEqual(try chat(daemon, "What does the canteen serve on Fridays?").sources?.map(\.path), ["canteen.txt"])

        // A learned daemon restarts with its knowledge.
        daemon.removesDirectory = false
        XCTAssertEqual(daemon.terminate(), 0)
        let restarted = try DaemonProcess(directory: daemon.directory)
        try restarted.waitUntilReady()
        XCTAssertEqual(try chat(restarted, "What does the canteen serve on Fridays?").sources?.map(\.path), ["canteen.txt"])
        XCTAssertEqual(try learning(restarted).documentsLearned, 1)
        XCTAssertEqual(try learning(restarted).memoryEntries, remaining, "the memory read back from its segment")
        XCTAssertTrue(restarted.logText.contains("entries of 1 documents loaded, 0 to learn"), restarted.logText)
        XCTAssertTrue(restarted.logText.contains("reader: adapted to 1 documents, 0 to learn"), restarted.logText)

        // A damaged segment is not trusted: the document is learned again, to the same entries.
        restarted.removesDirectory = false
        XCTAssertEqual(restarted.terminate(), 0)
        let segment = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: segments.path).first { $0.hasSuffix(".seg") })
        var bytes = try Data(contentsOf: segments.appendingPathComponent(segment))
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: segments.appendingPathComponent(segment))
        let repaired = try DaemonProcess(directory: daemon.directory)
        try repaired.waitUntilReady()
        _ = try waitFor("the damaged document learned again") { try learning(repaired).memoryEntries == remaining ? true : nil }
        XCTAssertTrue(repaired.logText.contains("checksum mismatch"), repaired.logText)
        XCTAssertEqual(repaired.terminate(), 0)
    }

    /// The retrieval test: `GET /v1/search` and `twinbrain search` show what recall would put
    /// before the main brain and why, the same passages an answer then cites; a question the
    /// documents do not hold recalls nothing; the token memory's view of the first token.
    func testSearchExplainsWhatRecallPutsBeforeTheMainBrain() throws {
        let (daemon, _) = try daemonWithTravelAndCanteen()
        _ = try waitFor("both documents in the token memory") { try learning(daemon).memoryDocuments == 2 ? true : nil }
        func search(_ q: String, limit: Int? = nil) throws -> SearchResponse {
            let escaped = q.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let reply = try daemon.client.send("GET", "/v1/search?q=\(escaped)" + (limit.map { "&limit=\($0)" } ?? ""))
            XCTAssertEqual(reply.status, 200, String(decoding: reply.body, as: UTF8.self))
            return try JSONDecoder().decode(SearchResponse.self, from: reply.body)
        }
        let flights = try search("Who approves flights?")
        let recalled = flights.candidates.filter { $0.verdict == "recalled" }
        XCTAssertEqual(recalled.map(\.path), ["travel.md"], "\(flights.candidates)")
        XCTAssertTrue(recalled.allSatisfy { $0.share >= flights.floor && ($0.relativeScore ?? 0) >= flights.relativeFloor })
        XCTAssertTrue(flights.candidates.filter { $0.verdict == "below-floor" }.allSatisfy { $0.share < flights.floor })
        XCTAssertTrue(flights.words.contains("flights") || flights.words.contains("flight"), "\(flights.words)")
        XCTAssertTrue(flights.decision.contains("1 passage of 1 document"), flights.decision)
        XCTAssertTrue(flights.evidence.contains { $0.text.contains("Mirela Kovacs") && $0.citation.hasPrefix("travel.md") }, "\(flights.evidence)")
        let memory = try XCTUnwrap(flights.memory)
        XCTAssertGreaterThan(memory.entries, 40)
        XCTAssertTrue((0...1).contains(memory.weight))
        XCTAssertFalse(memory.documents.isEmpty)
        // The answer cites what the search showed.
        let answer = try chat(daemon, "Who approves flights?", extra: ["max_tokens": 16])
        XCTAssertEqual(answer.sources?.filter { $0.passages > 0 }.map(\.path), recalled.map(\.path))

        let nothing = try search("What is the boiling point of liquid nitrogen?")
        XCTAssertFalse(nothing.candidates.contains { $0.verdict == "recalled" })
        XCTAssertTrue(nothing.decision.contains("main brain answers alone") || nothing.decision.contains("near miss"), nothing.decision)
        XCTAssertTrue(nothing.evidence.isEmpty)
        XCTAssertTrue(try search("Who approves flights?", limit: 0).candidates.allSatisfy { $0.verdict != "recalled" })

        XCTAssertEqual(try daemon.client.send("GET", "/v1/search").status, 400)
        XCTAssertEqual(try daemon.client.send("GET", "/v1/search?q=x&limit=99").status, 400)
        let cli = try Checkout.binary("twinbrain")
        let (code, out, err) = try runProgram(cli, ["search", "--socket", daemon.socket, "When does the canteen serve lunch?"])
        XCTAssertEqual(code, 0, err)
        XCTAssertTrue(out.contains("recalled") && out.contains("canteen.txt") && out.contains("11:30"), out)
        XCTAssertEqual(daemon.terminate(), 0)
    }

    /// Questions asked at once are decoded together (continuous batching), each with its own
    /// recall, token memory tally and reader, and get the reply and sources they get alone.
    func testQuestionsAskedTogetherGetWhatTheyGetAlone() throws {
        let (daemon, _) = try daemonWithTravelAndCanteen()
        _ = try waitFor("both documents in the token memory") { try learning(daemon).memoryDocuments == 2 ? true : nil }
        let questions = ["Who approves flights?", "When does the canteen serve lunch?", "What is served on Fridays?",
                         "How much is a hotel night in Vienna?", "Who maintains the coffee machine?", "Write a haiku about trains."]
        let alone = try questions.map { try chat(daemon, $0, extra: ["max_tokens": 24]) }
        let together = ReplyBox(count: questions.count)
        let client = daemon.client
        DispatchQueue.concurrentPerform(iterations: questions.count) { i in
            together.set(i, Result {
                let body = json(["messages": [["role": "user", "content": questions[i]]], "max_tokens": 24, "temperature": 0])
                return try JSONDecoder().decode(GenerateResponse.self, from: try client.send("POST", "/v1/chat", body: body).body)
            })
        }
        for (i, reply) in together.replies.enumerated() {
            let r = try XCTUnwrap(reply).get()
            XCTAssertEqual(r.text, alone[i].text, questions[i])
            XCTAssertEqual(r.sources, alone[i].sources, questions[i])
            XCTAssertEqual(r.reader, alone[i].reader, questions[i])
        }
        let status = try JSONDecoder().decode(StatusResponse.self, from: try daemon.client.send("GET", "/v1/status").body)
        XCTAssertEqual(status.queue.slots, 8)
        XCTAssertGreaterThan(try XCTUnwrap(status.queue.meanBatch), 1.05, "the questions were decoded one by one")
        XCTAssertEqual(daemon.terminate(), 0)
    }

    /// A full disk while the token memory learns pauses learning with a clear status; questions
    /// are still answered; once space is freed learning resumes by itself, and nothing was
    /// half-written. Needs root (the state directory is a size-limited tmpfs).
    func testAFullDiskPausesLearningUntilSpaceIsFreed() throws {
        guard getuid() == 0 else { throw XCTSkip("needs root to mount a small tmpfs") }
        let directory = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("twinbraind-full-\(UUID().uuidString.prefix(8))")
        let state = directory.appendingPathComponent("state")
        try FileManager.default.createDirectory(at: state, withIntermediateDirectories: true)
        XCTAssertEqual(try runProgram("/bin/mount", ["-t", "tmpfs", "-o", "size=32m", "tmpfs", state.path]).0, 0)
        defer {
            _ = try? runProgram("/bin/umount", [state.path])
            try? FileManager.default.removeItem(at: directory)
        }
        let daemon = try DaemonProcess(directory: directory)
        daemon.removesDirectory = false
        defer { _ = daemon.terminate() }
        try daemon.waitUntilReady()
        // Long documents (about 9,000 tokens each): the memory takes seconds over each.
        let licence = try String(contentsOfFile: "/usr/share/common-licenses/GPL-3", encoding: .utf8)
        let docs = directory.appendingPathComponent("docs")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        for (n, steward) in ["Vermillion", "Marchetti", "Okonkwo"].enumerated() {
            try Data("# Copy \(n + 1)\n\nThe steward of this copy is Ada \(steward).\n\n\(licence)".utf8)
                .write(to: docs.appendingPathComponent("copy-\(n + 1).md"))
        }
        try ingest(daemon, docs.path, expectLearned: 3)
        XCTAssertLessThan(try learning(daemon).memoryDocuments ?? 0, 3)
        // Fill the disk.
        let filler = state.appendingPathComponent("filler")
        FileManager.default.createFile(atPath: filler.path, contents: nil)
        let handle = try FileHandle(forWritingTo: filler)
        let block = Data(repeating: 0, count: 1 << 20)
        while (try? handle.write(contentsOf: block)) != nil {}
        try? handle.close()

        let paused = try waitFor("learning to pause", timeout: 120) { try learning(daemon).paused }
        XCTAssertTrue(paused.contains("is full") && paused.contains(state.path) && paused.contains("resumes"), paused)
        XCTAssertEqual(try chat(daemon, "Who is Ada Marchetti?").sources?.first?.path, "copy-2.md", "questions are answered meanwhile")
        // A document read meanwhile: with no room for the job, the ingest is refused saying so;
        // with room for the job but not for the text (a megabyte), the job waits for room too.
        let late = directory.appendingPathComponent("late")
        try FileManager.default.createDirectory(at: late, withIntermediateDirectories: true)
        try Data(("# Late memo\n\nThe late memo's keeper is Bo Lindqvist.\n\n" + String(repeating: licence, count: 30)).utf8)
            .write(to: late.appendingPathComponent("late.md"))
        let refused = try daemon.client.send("POST", "/v1/ingest", body: json(["path": late.path]))
        XCTAssertEqual(refused.status, 503)
        XCTAssertTrue(String(decoding: refused.body, as: UTF8.self).contains("is full"), String(decoding: refused.body, as: UTF8.self))
        let room = try FileHandle(forUpdating: filler)
        try room.truncate(atOffset: try room.seekToEnd() - (512 << 10))
        try room.close()
        let reply = try daemon.client.send("POST", "/v1/ingest", body: json(["path": late.path]))
        XCTAssertEqual(reply.status, 202, String(decoding: reply.body, as: UTF8.self))
        let job = try JSONDecoder().decode(JobBody.self, from: reply.body)
        _ = try waitFor("the ingest job to pause", timeout: 60) { daemon.logText.contains("intake paused") ? true : nil }
        try FileManager.default.removeItem(at: filler)
        _ = try waitFor("learning to resume and finish", timeout: 180) { () -> Bool? in
            let l = try learning(daemon)
            return l.memoryDocuments == 3 && l.documentsLearned == 4 && l.paused == nil ? true : nil
        }
        let finished = try JSONDecoder().decode(JobBody.self, from: try daemon.client.send("GET", "/v1/jobs/\(job.id)").body)
        XCTAssertEqual(finished.state, "done", "the job waited for room instead of failing: \(finished.error ?? "")")
        XCTAssertEqual(try chat(daemon, "Who is the late memo's keeper?").sources?.first?.path, "late.md")
        let segments = try FileManager.default.contentsOfDirectory(atPath: state.appendingPathComponent("memory").path)
        XCTAssertEqual(segments.filter { $0.hasSuffix(".seg") }.count, 3, "\(segments)")
        XCTAssertFalse(segments.contains { $0.hasSuffix(".tmp") }, "\(segments)")
        XCTAssertTrue(daemon.logText.contains("learning paused") && daemon.logText.contains("resuming"))
        XCTAssertEqual(daemon.terminate(), 0)
    }

    /// A store damaged while the daemon was down: the daemon does not start serving, nor exit
    /// into a restart loop; it says what is wrong to every request and waits for `twinbrain
    /// repair`, which rebuilds the store (the damaged passages cut again from the stored texts),
    /// restarts the daemon and leaves every document answerable.
    func testADamagedStoreWaitsForRepairThenServesWhatItKept() throws {
        let cli = try Checkout.binary("twinbrain")
        let (daemon, _) = try daemonWithTravelAndCanteen()
        daemon.removesDirectory = false
        XCTAssertEqual(daemon.terminate(), 0)
        // Garbage over the passages' first page (SQLite's dbstat says which).
        let path = daemon.directory.appendingPathComponent("state/twinbrain.sqlite").path
        let queue = try DatabaseQueue(path: path)
        let (page, pageSize) = try queue.read { db in
            (try Int.fetchOne(db, sql: "SELECT min(pageno) FROM dbstat WHERE name = 'passages'")!,
             try Int.fetchOne(db, sql: "PRAGMA page_size")!)
        }
        try queue.close()
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64((page - 1) * pageSize))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: pageSize))
        try handle.close()

        let damaged = try DaemonProcess(directory: daemon.directory)
        let refusal = try waitFor("the daemon in repair mode") { () -> HTTPReply? in
            guard let reply = try? damaged.client.send("GET", "/v1/status"), reply.status == 503 else { return nil }
            return reply
        }
        let error = try JSONDecoder().decode(ErrorBody.self, from: refusal.body).error
        XCTAssertEqual(error.code, "store-damaged")
        XCTAssertTrue(error.message.contains(path) && error.message.contains("twinbrain repair"), error.message)
        var (code, out, err) = try runProgram(cli, ["status", "--socket", damaged.socket])
        XCTAssertEqual(code, 5)
        XCTAssertTrue(err.contains("twinbrain repair"), err)

        (code, out, err) = try runProgram(cli, ["repair", "--socket", damaged.socket])
        XCTAssertEqual(code, 0, err + out)
        XCTAssertTrue(out.contains("damaged file kept as") && out.contains("no learned document was lost"), out)
        XCTAssertTrue(out.contains("twinbraind serves again"), out)
        XCTAssertTrue(damaged.process.isRunning, "the same process serves again")
        let kept = try FileManager.default.contentsOfDirectory(atPath: daemon.directory.appendingPathComponent("state").path)
        XCTAssertTrue(kept.contains { $0.hasPrefix("twinbrain.sqlite.damaged-") }, "\(kept)")

        let learned = try waitFor("the passages cut again from the texts", timeout: 60) { () -> StatusResponse.Learning? in
            let l = try learning(damaged)
            return l.passages == 2 && l.documentsLearned == 2 ? l : nil
        }
        XCTAssertEqual(learned.documentsWaiting, 0)
        XCTAssertEqual(try chat(damaged, "Who approves flights?").sources?.first?.path, "travel.md")
        XCTAssertEqual(try chat(damaged, "What does the canteen serve on Fridays?").sources?.first?.path, "canteen.txt")
        let audit = String(decoding: try damaged.client.send("GET", "/v1/audit").body, as: UTF8.self)
        XCTAssertTrue(audit.contains("\"repair\""), audit)
        XCTAssertEqual(damaged.terminate(), 0)
    }

    /// A conversation with the documents: the next turn reuses the earlier turns (and, asked
    /// again, everything before the excerpts the reader reads), and every answer, its sources and
    /// evidence are what a daemon evaluating each prompt whole gives.
    func testAConversationWithKnowledgeReusesEarlierTurnsAndAnswersTheSame() throws {
        let (daemon, _) = try daemonWithTravelAndCanteen()
        daemon.removesDirectory = false
        func ask(_ d: DaemonProcess, _ messages: [[String: String]]) throws -> GenerateResponse {
            let reply = try d.client.send("POST", "/v1/chat", body: json(["messages": messages, "max_tokens": 16, "temperature": 0]))
            XCTAssertEqual(reply.status, 200, String(decoding: reply.body, as: UTF8.self))
            return try JSONDecoder().decode(GenerateResponse.self, from: reply.body)
        }
        var messages = [["role": "user", "content": "Who approves flights for long journeys?"]]
        let first = try ask(daemon, messages)
        messages += [["role": "assistant", "content": first.text], ["role": "user", "content": "What does the canteen serve on Fridays?"]]
        let second = try ask(daemon, messages)
        XCTAssertGreaterThan(second.usage.promptTokensReused ?? 0, 0, "the first turn is reused")
        let again = try ask(daemon, messages)
        XCTAssertGreaterThan(again.usage.promptTokensReused ?? 0, second.usage.promptTokensReused ?? 0, "asked again: up to the excerpts")
        XCTAssertEqual(again.text, second.text)
        XCTAssertEqual(daemon.terminate(), 0)

        let whole = try DaemonProcess(arguments: ["--prefix-cache-mib", "0"], directory: daemon.directory)
        try whole.waitUntilReady()
        for (asked, reused) in [(Array(messages.prefix(1)), first), (messages, second)] {
            let evaluated = try ask(whole, asked)
            XCTAssertEqual(evaluated.usage.promptTokensReused, 0)
            XCTAssertEqual(evaluated.text, reused.text)
            XCTAssertEqual(evaluated.sources?.map(\.path), reused.sources?.map(\.path))
            XCTAssertEqual(evaluated.evidence?.map(\.citation), reused.evidence?.map(\.citation))
        }
        XCTAssertEqual(second.sources?.first?.path, "canteen.txt")
        XCTAssertEqual(whole.terminate(), 0)
    }

    /// Passages first: every document of a drive is answerable as soon as it is extracted,
    /// while the token memory is still learning them behind; the answer cites the line.
    func testEveryDocumentIsAnswerableBeforeTheMemoryHasLearnedIt() throws {
        let daemon = try DaemonProcess()
        try daemon.waitUntilReady()
        let docs = daemon.directory.appendingPathComponent("drive")
        try FileManager.default.createDirectory(at: docs, withIntermediateDirectories: true)
        let count = 40
        let filler = String(repeating: canteen + "\n" + travel + "\n", count: 3)
        for n in 1...count {
            let text = "# Project \(n)\n\nThe code name of project \(n) is Zebra\(n * 7919).\n\n\(filler)"
            try Data(text.utf8).write(to: docs.appendingPathComponent(String(format: "project-%03d.md", n)))
        }
        let reply = try daemon.client.send("POST", "/v1/ingest", body: json(["path": docs.path]))
        XCTAssertEqual(reply.status, 202)
        let learned = try waitFor("every document's passages", timeout: 120) { () -> StatusResponse.Learning? in
            let l = try learning(daemon)
            return l.documentsLearned == count ? l : nil
        }
        XCTAssertLessThan(learned.memoryDocuments ?? 0, count, "the memory learns behind the passages")
        let answer = try chat(daemon, "What is the code name of project \(count)?")
        XCTAssertEqual(answer.sources?.first?.path, String(format: "project-%03d.md", count))
        XCTAssertEqual(answer.evidence?.first?.citation, String(format: "project-%03d.md:3", count))
        XCTAssertEqual(answer.evidence?.first?.headings, ["Project \(count)"])

        // A long document's memory takes many pieces; a document extracted meanwhile gets its
        // passages between two of them, not after the whole.
        _ = try waitFor("the memory caught up", timeout: 300) { try learning(daemon).memoryDocuments == count ? true : nil }
        let long = daemon.directory.appendingPathComponent("long")
        try FileManager.default.createDirectory(at: long, withIntermediateDirectories: true)
        try Data(String(repeating: filler, count: 12).utf8).write(to: long.appendingPathComponent("long.md"))
        XCTAssertEqual(try daemon.client.send("POST", "/v1/ingest", body: json(["path": long.path])).status, 202)
        _ = try waitFor("the long document's memory under way", timeout: 60) { () -> Bool? in
            let l = try learning(daemon)
            return l.documentsLearned == count + 1 && l.current == "long.md" ? true : nil
        }
        let late = daemon.directory.appendingPathComponent("late")
        try FileManager.default.createDirectory(at: late, withIntermediateDirectories: true)
        try Data("The late memo says the meeting moved to room Quokka-17.\n".utf8).write(to: late.appendingPathComponent("late.md"))
        XCTAssertEqual(try daemon.client.send("POST", "/v1/ingest", body: json(["path": late.path])).status, 202)
        let interleaved = try waitFor("the late document's passages", timeout: 60) { () -> StatusResponse.Learning? in
            let l = try learning(daemon)
            return l.documentsLearned == count + 2 ? l : nil
        }
        XCTAssertEqual(interleaved.memoryDocuments, count, "the long document's memory is still being learned")
        XCTAssertEqual(try chat(daemon, "Which room did the meeting move to?").sources?.first?.path, "late.md")
        XCTAssertEqual(daemon.terminate(), 0)
    }
}

/// Replies collected from concurrent clients, by index.
final class ReplyBox: @unchecked Sendable {
    private let lock = NSLock()
    private var _replies: [Result<GenerateResponse, Error>?]
    init(count: Int) { _replies = Array(repeating: nil, count: count) }
    func set(_ i: Int, _ reply: Result<GenerateResponse, Error>) { lock.withLock { _replies[i] = reply } }
    var replies: [Result<GenerateResponse, Error>?] { lock.withLock { _replies } }
}
