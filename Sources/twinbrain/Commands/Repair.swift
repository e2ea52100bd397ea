import ArgumentParser
import ControlAPI
import Foundation

extension Twinbrain {
    struct Repair: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Rebuild a damaged store from what can still be read of it (admin).",
            discussion: """
                A daemon whose store fails its check at start waits for this instead of serving: it copies every \
                row that still reads into a new store, keeps the damaged file beside it, names the documents whose \
                text was lost (read their drive again), and restarts; passages are then cut again from the stored \
                texts. On a healthy daemon it only checks the store.
                """)

        @OptionGroup var connection: ConnectionOptions
        @Option(help: "Seconds to wait for twinbraind to serve again after a repair (0: do not wait).") var wait = 180
        @Flag(help: "Print the daemon's JSON reply.") var json = false

        func run() throws {
            try runReportingErrors {
                let reply = try connection.client.send("POST", "/v1/admin/repair")
                let result = try decodeOK(RepairResponse.self, reply)
                if json { printRaw(reply.body) } else { Self.describe(result) }
                if result.repaired && result.restarting && wait > 0 { try waitUntilServing() }
                if !result.repaired && result.problem != nil {
                    throw CLIError(description: "the store needs repairing: restart twinbraind, then run `twinbrain repair` again", code: 5)
                }
            }
        }

        static func describe(_ r: RepairResponse) {
            print(r.message)
            if let problem = r.problem { print("problem found: \(problem)") }
            guard r.repaired else { return }
            if let copy = r.damagedCopy { print("damaged file kept as \(copy)") }
            printTable(["table", "rows recovered", "unreadable rowids"],
                       r.tables.map { [$0.name, String($0.recovered), $0.unreadable.isEmpty ? "-" : $0.unreadable.joined(separator: ", ")] })
            if r.orphansDropped > 0 { print("\(r.orphansDropped) rows dropped whose source or job was lost") }
            if r.documentsLost.isEmpty {
                print("no learned document was lost")
            } else {
                print("\(r.documentsLost.count) document version\(r.documentsLost.count == 1 ? "" : "s") lost their text; read these again "
                      + "(plug their drive in, or `twinbrain ingest PATH`):")
                for d in r.documentsLost.prefix(50) {
                    // A path source names the file itself; a drive, its key and the path on it.
                    let source = d.source.hasPrefix("path:") ? String(d.source.dropFirst(5)) + "/" : d.source + "  "
                    print("  " + source + Docs.printable(d.path))
                }
                if r.documentsLost.count > 50 { print("  … \(r.documentsLost.count - 50) more (`twinbrain repair --json` lists them)") }
            }
        }

        /// Polls /v1/health until the restarted daemon has loaded its model.
        func waitUntilServing() throws {
            let deadline = Date().addingTimeInterval(TimeInterval(wait))
            if !json { FileHandle.standardError.write(Data("waiting for twinbraind to restart…\n".utf8)) }
            Thread.sleep(forTimeInterval: 1)
            while Date() < deadline {
                if let reply = try? connection.client.send("GET", "/v1/health"), reply.status == 200 {
                    if !json { print("twinbraind serves again") }
                    return
                }
                Thread.sleep(forTimeInterval: 0.5)
            }
            throw CLIError(description: "twinbraind did not serve again within \(wait) s: see `journalctl -u twinbraind`", code: 1)
        }
    }
}
