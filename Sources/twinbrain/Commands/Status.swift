import ArgumentParser
import ControlAPI
import Foundation

extension Twinbrain {
    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show what the daemon is doing: model, queue, memory, your access.")

        @OptionGroup var connection: ConnectionOptions
        @Flag(help: "Print the daemon's JSON reply.") var json = false

        func run() throws {
            try runReportingErrors {
                let reply = try connection.client.send("GET", "/v1/status")
                let status = try decodeOK(StatusResponse.self, reply)
                if json { printRaw(reply.body); return }
                print("twinbraind \(status.version): \(status.state) (\(status.activity))")
                if let m = status.model {
                    print("model:   \(m.id) (\(m.architecture), \(m.layers) layers, context \(m.contextLength))")
                    if let kernels = m.kernels, let threads = m.threads {
                        print("engine:  \(kernels) kernels, \(threads) threads, \(m.arithmetic ?? "?") arithmetic, \(m.kvCache ?? "?") KV cache")
                    }
                }
                print("uptime:  \(Self.duration(status.uptimeSeconds))   memory: \(Int(status.residentMemoryMiB)) MiB   threads: \(status.threads)")
                let q = status.queue
                if let slots = q.slots, let inUse = q.slotsInUse {
                    let rate = (q.tokensPerSecond ?? 0) > 0
                        ? String(format: ", %.1f tokens/s (%.1f per request), %.1f per step on average", q.tokensPerSecond!,
                                 q.tokensPerSecondPerRequest ?? 0, q.meanBatch ?? 0) : ""
                    print("slots:   \(inUse) of \(slots) generating\(rate)")
                }
                print("queue:   \(q.running) running, \(q.waiting) waiting (room for \(q.capacity))")
                if let i = status.intake {
                    let docs = i.documents.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
                    print("drives:  \(i.drivesPresent) present, \(i.jobsRunning) job\(i.jobsRunning == 1 ? "" : "s") running (events: \(i.driveEvents))")
                    print("docs:    \(docs.isEmpty ? "none yet" : docs)")
                }
                if let l = status.learning {
                    let now = l.current.map { ", learning \(Docs.printable($0))" } ?? ""
                    let memory = l.memoryEntries.map { ", \($0) memory entries" } ?? ""
                    print("learned: \(l.documentsLearned) documents (\(l.passages) passages\(memory)), \(l.documentsWaiting) waiting\(now)")
                    if let paused = l.paused { print("paused:  \(paused)") }
                    if let fit = l.keyspaceFit { print("memory:  fitting its keyspace for this model (\(fit)); passages answer meanwhile") }
                }
                print("you:     uid \(status.caller.uid), \(status.caller.access) access")
            }
        }

        static func duration(_ s: Double) -> String {
            let t = Int(s)
            if t < 60 { return "\(t)s" }
            if t < 3600 { return "\(t / 60)m \(t % 60)s" }
            return "\(t / 3600)h \(t % 3600 / 60)m"
        }
    }
}
