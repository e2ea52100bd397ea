import ArgumentParser
import ControlAPI
import Foundation

extension Twinbrain {
    struct Learn: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What the learning brain knows and is learning.",
            discussion: "Documents are learned by themselves as soon as they are read (see `twinbrain ingest`, `twinbrain drives`).",
            subcommands: [LearnStatus.self], defaultSubcommand: LearnStatus.self)
    }

    struct LearnStatus: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "status", abstract: "Documents learned and waiting, passages recalled from, and the document being learned.")

        @OptionGroup var connection: ConnectionOptions
        @Flag(help: "Print the learning section of the daemon's status as JSON.") var json = false

        func run() throws {
            try runReportingErrors {
                let status = try decodeOK(StatusResponse.self, try connection.client.send("GET", "/v1/status"))
                guard let l = status.learning else { throw CLIError(description: "this daemon reports no learning brain", code: 1) }
                if json {
                    let encoder = JSONEncoder()
                    encoder.outputFormatting = [.sortedKeys]
                    printRaw(try encoder.encode(l))
                    return
                }
                print("learned:  \(l.documentsLearned) document\(l.documentsLearned == 1 ? "" : "s") (\(l.passages) passages)")
                print("waiting:  \(l.documentsWaiting)")
                if let entries = l.memoryEntries {
                    print("memory:   \(entries) token entries of \(l.memoryDocuments ?? 0) documents")
                } else {
                    print("memory:   off (no gate fitted for this model, or token_memory = false)")
                }
                if let documents = l.readerDocuments {
                    print("reader:   adapted to \(documents) documents (\(l.readerExamples ?? 0) questions' examples)")
                }
                print("learning: \(l.current.map(Docs.printable) ?? "nothing now")")
            }
        }
    }
}
