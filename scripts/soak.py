#!/usr/bin/env python3
"""`make soak`: a bounded soak of mixed load on a fresh twinbraind, over its local socket only.

For --minutes (default 10): --clients threads ask questions about the learned documents (streamed
chat, some hanging up after a few lines, as impatient people do) while another ingests a new
document every few seconds and forgets the oldest once five are learned, so what the box holds
stays the same size. Every 10 s it samples the daemon's resident memory and open files. It stops
by itself and fails (exit 1) when, between the first and the last third of the run (after a
minute's warm-up), the open files (not sockets) grew at all or the resident memory grew by more than
--rss-growth (10% by default); when, once the load stopped, more sockets stay open than before it
began (a connection never closed); or when any request got an answer other than 200/202/429.
The daemon keeps finished prompts in 64 MiB (--prefix-cache-mib), which they fill during the warm-up,
so the bound is what the run checks.
Usage: soak.py --daemon BIN --model FILE [--minutes 10] [--clients 4] [--out FILE]"""
import argparse, json, os, random, statistics, sys, tempfile, threading, time

import daemon_process
from daemon_process import call, send

def sample(pid):
    """(resident MiB, open files other than sockets, open sockets)."""
    rss = next(int(l.split()[1]) for l in open(f"/proc/{pid}/status") if l.startswith("VmRSS:")) / 1024
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    sockets = sum(t.startswith("socket:") for t in targets)
    return rss, len(targets) - sockets, sockets

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--daemon", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--rss-growth", type=float, default=0.10)
    ap.add_argument("--out")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp()
    daemon, sock_path = daemon_process.start(a.daemon, a.model, tmp, extra=["--prefix-cache-mib", "64"])
    time.sleep(1)
    idle_sockets = sample(daemon.pid)[2]
    deadline = time.time() + a.minutes * 60
    statuses, lock, samples = {}, threading.Lock(), []
    def count(status):
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
    learned = []   # (document id, number) of the documents the box holds, oldest first

    def asker(k):
        rng = random.Random(k)
        while time.time() < deadline:
            with lock:
                numbers = [n for _, n in learned]
            n = rng.choice(numbers) if numbers else 0
            body = {"messages": [{"role": "user", "content": f"What is the code word of memo {n}?"}],
                    "max_tokens": rng.choice([8, 32, 64]), "stream": True}
            s = send(sock_path, "POST", "/v1/chat", body)
            first = s.recv(65536)
            status = int(first.split(b" ", 2)[1]) if first else -1
            count(status)
            if status == 429:
                time.sleep(1)
            elif rng.random() < 0.25:
                s.close()    # hangs up mid-answer
                continue
            while s.recv(65536):
                pass
            s.close()

    def librarian():
        docs, n = os.path.join(tmp, "docs"), 0
        os.mkdir(docs)
        filler = open("/usr/share/common-licenses/GPL-3", encoding="utf-8").read()
        while time.time() < deadline:
            n += 1
            path = os.path.join(docs, f"memo-{n}.txt")
            start = (n * 977) % (len(filler) - 3000)
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"Memo {n}\n\nThe code word of memo {n} is Kestrel{n * 7919}.\n\n{filler[start:start + 2500]}\n")
            status, _ = call(sock_path, "POST", "/v1/ingest", {"path": path})
            count(status)
            # The new document's id, once it is learned.
            for _ in range(200):
                status, body = call(sock_path, "GET", f"/v1/documents?path=memo-{n}.txt&state=learned")
                found = json.loads(body).get("documents", []) if status == 200 else []
                if found:
                    with lock:
                        learned.append((found[0]["id"], n))
                    break
                time.sleep(0.1)
            with lock:
                oldest = learned.pop(0) if len(learned) > 5 else None
            if oldest:
                status, _ = call(sock_path, "DELETE", f"/v1/documents/{oldest[0]}")
                count(status)
            time.sleep(3)

    threads = [threading.Thread(target=asker, args=(k,)) for k in range(a.clients)] + [threading.Thread(target=librarian)]
    for t in threads:
        t.start()
    began = time.time()
    while time.time() < deadline:
        samples.append((time.time() - began,) + sample(daemon.pid))
        time.sleep(10)
    for t in threads:
        t.join()
    time.sleep(3)
    quiet_sockets = sample(daemon.pid)[2]
    samples.append((time.time() - began,) + sample(daemon.pid))
    daemon.terminate()
    daemon.wait()

    steady = [s for s in samples if s[0] >= 60] or samples
    third = max(1, len(steady) // 3)
    first, last = steady[:third], steady[-third:]
    rss0, rss1 = statistics.median(s[1] for s in first), statistics.median(s[1] for s in last)
    fd0, fd1 = max(s[2] for s in first), max(s[2] for s in last)
    problems = []
    if rss1 > rss0 * (1 + a.rss_growth):
        problems.append(f"resident memory grew from {rss0:.0f} to {rss1:.0f} MiB")
    if fd1 > fd0:
        problems.append(f"open files grew from {fd0} to {fd1}")
    if quiet_sockets > idle_sockets:
        problems.append(f"{quiet_sockets} sockets open after the load stopped, {idle_sockets} before it began")
    unexpected = {k: v for k, v in statuses.items() if k not in (200, 202, 429)}
    if unexpected:
        problems.append(f"unexpected replies {unexpected}")
    report = {"minutes": a.minutes, "clients": a.clients, "replies": statuses, "rss_mib_first_third": rss0,
              "rss_mib_last_third": rss1, "open_files_first_third": fd0, "open_files_last_third": fd1,
              "sockets_before": idle_sockets, "sockets_after": quiet_sockets,
              "samples": samples, "problems": problems}
    print(f"soak: {a.minutes:g} min, {a.clients} clients asking, a document ingested every ~3 s and the oldest forgotten; "
          f"replies {dict(sorted(statuses.items()))}; resident memory {rss0:.0f} → {rss1:.0f} MiB; open files {fd0} → {fd1}; "
          f"sockets {idle_sockets} before, {quiet_sockets} after")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(report, f, indent=1)
    for p in problems:
        print("soak: " + p, file=sys.stderr)
    sys.exit(1 if problems else 0)

if __name__ == "__main__":
    main()
