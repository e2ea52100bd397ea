import ArgumentParser
import ControlAPI
import Foundation

// What the box has read: drives and paths, documents, ingest jobs, forgetting.

extension Twinbrain {
    struct Drives: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List the drives and paths documents came from.",
            discussion: "An absent drive keeps its documents and knowledge; plugged in again, only new or changed files are read.")

        @OptionGroup var connection: ConnectionOptions
        @Flag(help: "Print the daemon's JSON reply.") var json = false

        func run() throws {
            try runReportingErrors {
                let reply = try connection.client.send("GET", "/v1/sources")
                let list = try decodeOK(SourceList.self, reply)
                if json { printRaw(reply.body); return }
                if list.sources.isEmpty { print("no drives or paths yet: plug in a drive, or `twinbrain ingest PATH`"); return }
                let rows = list.sources.map { s in
                    [String(s.id), s.kind, s.label ?? s.mountPoint ?? "", s.state, String(s.documents), Self.date(s.lastSeen)]
                }
                printTable(["ID", "KIND", "NAME", "STATE", "DOCS", "LAST SEEN"], rows)
            }
        }

        static func date(_ t: Double) -> String {
            let f = DateFormatter()
            f.dateFormat = "yyyy-MM-dd HH:mm"
            return f.string(from: Date(timeIntervalSince1970: t))
        }
    }

    struct Docs: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List documents, or show one.",
            discussion: "By default only current versions; --all adds superseded and forgotten ones.")

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "A document id: show it (with --text, its extracted text).") var id: Int64?
        @Option(help: "Only documents from this source (see `twinbrain drives`).") var source: Int64?
        @Option(help: "Only these states, comma-separated (extracted, learned, failed, superseded, forgotten, discovered).") var state: String?
        @Option(help: "Only paths containing this text.") var path: String?
        @Flag(help: "Include superseded and forgotten versions.") var all = false
        @Option(help: "Most documents to list.") var limit = 100
        @Option(help: "Skip this many (paging).") var offset = 0
        @Flag(help: "With an id: print the extracted text.") var text = false
        @Flag(help: "Print the daemon's JSON reply.") var json = false

        func run() throws {
            try runReportingErrors {
                if let id {
                    let reply = try connection.client.send("GET", "/v1/documents/\(id)" + (text ? "?include=text" : ""))
                    let d = try decodeOK(DocumentBody.self, reply)
                    if json { printRaw(reply.body); return }
                    if text { print(d.text ?? ""); return }
                    print("document \(d.id): \(d.path) (source \(d.sourceId), version \(d.version), \(d.state))")
                    print("format \(d.format), \(d.size) bytes, sha256 \(d.sha256)")
                    if let e = d.error { print("error: \(e)") }
                    return
                }
                var query = ["limit=\(limit)", "offset=\(offset)"]
                if let source { query.append("source=\(source)") }
                if let state { query.append("state=\(state)") }
                if let path { query.append("path=\(path.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? path)") }
                if all { query.append("all=1") }
                let reply = try connection.client.send("GET", "/v1/documents?" + query.joined(separator: "&"))
                let list = try decodeOK(DocumentList.self, reply)
                if json { printRaw(reply.body); return }
                printTable(["ID", "SOURCE", "VER", "STATE", "FORMAT", "PATH"], list.documents.map { d in
                    [String(d.id), String(d.sourceId), String(d.version), d.state, d.format, Self.printable(d.path)]
                })
                if list.total > list.offset + list.documents.count {
                    print("… \(list.total) in all: --offset \(list.offset + list.documents.count) for more")
                }
            }
        }

        /// Control characters in names (a newline, say) shown escaped, so each row stays one line.
        static func printable(_ s: String) -> String {
            s.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? String(format: "\\x%02X", $0.value) : String($0) }.joined()
        }
    }

    struct Ingest: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Read a file or a directory into the box (admin).",
            discussion: """
                The daemon reads PATH as its own user and keeps going if you detach: Ctrl-C stops watching, not the job \
                (`twinbrain jobs ID` shows it later). Files already read are skipped unless they changed.
                """)

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "A file or directory on this machine.") var path: String
        @Flag(help: "Start the job and return at once.") var detach = false
        @Flag(help: "Print JSON (the job; with progress, one line per change).") var json = false

        func run() throws {
            try runReportingErrors {
                let absolute = URL(fileURLWithPath: path).standardizedFileURL.path
                let body = try JSONEncoder().encode(IngestRequest(path: absolute))
                let job = try decodeOK(JobBody.self, try connection.client.send("POST", "/v1/ingest", body: body))
                if detach {
                    if json { printRaw(try JSONEncoder().encode(job)) } else { print("job \(job.id) started: `twinbrain jobs \(job.id)` shows it") }
                    return
                }
                signal(SIGINT) { _ in
                    FileHandle.standardError.write(Data("\ndetached: the job goes on (`twinbrain jobs` shows it)\n".utf8))
                    Foundation.exit(0)
                }
                var final = job
                let reply = try connection.client.streamLines("GET", "/v1/jobs/\(job.id)/events") { line in
                    guard let j = try? JSONDecoder().decode(JobBody.self, from: line) else { return true }
                    final = j
                    if json { printRaw(line) } else { ProgressBar.draw(done: j.done, total: j.total, label: j.current ?? "") }
                    return true
                }
                guard reply.status == 200 else { throw CLIError.reply(reply) }
                if !json { ProgressBar.finish() }
                let full = try decodeOK(JobBody.self, try connection.client.send("GET", "/v1/jobs/\(job.id)"))
                if !json { Jobs.describe(full) }
                if final.state == "failed" { throw CLIError(description: "the ingest failed: \(final.error ?? "unknown error")", code: 5) }
            }
        }
    }

    struct Jobs: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List recent jobs, or show one with the files it skipped.")

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "A job id.") var id: Int64?
        @Flag(help: "Print the daemon's JSON reply.") var json = false

        func run() throws {
            try runReportingErrors {
                if let id {
                    let reply = try connection.client.send("GET", "/v1/jobs/\(id)")
                    let job = try decodeOK(JobBody.self, reply)
                    if json { printRaw(reply.body) } else { Self.describe(job) }
                    return
                }
                let reply = try connection.client.send("GET", "/v1/jobs")
                let list = try decodeOK(JobList.self, reply)
                if json { printRaw(reply.body); return }
                if list.jobs.isEmpty { print("no jobs yet"); return }
                printTable(["ID", "KIND", "STATE", "PROGRESS", "TARGET"], list.jobs.map { j in
                    [String(j.id), j.kind, j.state, "\(j.done)/\(j.total.map(String.init) ?? "?")", Docs.printable(j.target)]
                })
            }
        }

        static func describe(_ j: JobBody) {
            print("job \(j.id) (\(j.kind) \(Docs.printable(j.target))): \(j.state), \(j.done)/\(j.total.map(String.init) ?? "?") files")
            if let e = j.error { print("error: \(e)") }
            let skipped = j.skipped ?? []
            if !skipped.isEmpty {
                print("skipped \(skipped.count):")
                for s in skipped.prefix(50) { print("  \(Docs.printable(s.path)): \(s.reason)") }
                if skipped.count > 50 { print("  … \(skipped.count - 50) more (`twinbrain jobs \(j.id) --json`)") }
            }
        }
    }

    struct Forget: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Forget a document (every version) or everything from a source (admin).",
            discussion: "The text and knowledge are deleted from the box; the file on its drive is untouched.")

        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "A document id (see `twinbrain docs`).") var document: Int64?
        @Option(help: "Forget every document of this source instead (see `twinbrain drives`).") var source: Int64?
        @Flag(help: "Print the daemon's JSON reply.") var json = false

        func validate() throws {
            guard (document == nil) != (source == nil) else { throw ValidationError("give either a document id or --source ID") }
        }

        func run() throws {
            try runReportingErrors {
                let path = document.map { "/v1/documents/\($0)" } ?? "/v1/sources/\(source!)"
                let reply = try connection.client.send("DELETE", path)
                let result = try decodeOK(ForgetResponse.self, reply)
                if json { printRaw(reply.body); return }
                print("forgot \(result.forgotten.count) document version\(result.forgotten.count == 1 ? "" : "s")")
            }
        }
    }
}

/// Columns padded to their widest cell.
func printTable(_ header: [String], _ rows: [[String]]) {
    let widths = header.indices.map { i in ([header] + rows).map { $0[i].count }.max() ?? 0 }
    for row in [header] + rows {
        print(row.enumerated().map { i, cell in i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0) }
            .joined(separator: "  "))
    }
}

/// A one-line progress bar on a terminal; nothing when stderr is not one.
enum ProgressBar {
    static let isTerminal = isatty(2) != 0

    static func draw(done: Int, total: Int?, label: String) {
        guard isTerminal else { return }
        let width = 30
        let line: String
        if let total, total > 0 {
            let filled = min(width, width * done / total)
            line = "[\(String(repeating: "#", count: filled))\(String(repeating: ".", count: width - filled))] \(done)/\(total) "
        } else {
            line = "scanning… "
        }
        let name = Twinbrain.Docs.printable(label)
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line + String(name.suffix(40))).utf8))
    }

    static func finish() {
        if isTerminal { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
