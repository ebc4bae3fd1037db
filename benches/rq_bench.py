"""Python RQ side of darkroom's queue benchmark (driven by benches/queue.rs).

Talks only to the redis-server the Rust bench started on 127.0.0.1:PORT and prints
one JSON object on stdout.

  rq_bench.py --port P enqueue --producers 50 --jobs 2000
      times N enqueues of a no-op job from P threads (own connection each)
  rq_bench.py --port P drain --workers 4 --jobs 1000 [--producers 50]
      enqueues N no-op jobs from P threads, then times W burst SimpleWorker
      processes draining them; reports both times
"""

import argparse
import json
import logging
import multiprocessing
import sys
import threading
import time

from redis import Redis
from rq import Queue, SimpleWorker

QUEUE = "darkroom-bench"
PAYLOAD = "x" * 100  # the same 100-byte body the Redis and darkroom runs carry
TIME_LIMIT_S = 120


def noop(payload):
    """The job: does nothing, so the figure is the queue's own cost."""
    return len(payload)


def connect(port):
    return Redis(host="127.0.0.1", port=port)


def enqueue(port, producers, jobs):
    # Import ourselves by module name so RQ records `rq_bench.noop`, which the
    # worker processes can import.
    import rq_bench

    per = jobs // producers
    errors = []

    def produce():
        try:
            queue = Queue(QUEUE, connection=connect(port))
            deadline = time.monotonic() + TIME_LIMIT_S
            for _ in range(per):
                if time.monotonic() > deadline:
                    break
                queue.enqueue(rq_bench.noop, PAYLOAD)
        except Exception as exc:  # reported, not swallowed
            errors.append(repr(exc))

    threads = [threading.Thread(target=produce) for _ in range(producers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    done = Queue(QUEUE, connection=connect(port)).count
    return {"jobs": done, "seconds": seconds, "rate": done / seconds, "errors": errors}


def work(port):
    logging.getLogger("rq").setLevel(logging.WARNING)
    worker = SimpleWorker([Queue(QUEUE, connection=connect(port))], connection=connect(port))
    worker.work(burst=True, logging_level="WARNING", max_jobs=1_000_000)


def drain(port, workers, jobs, producers):
    enqueued = enqueue(port, producers, jobs)
    queue = Queue(QUEUE, connection=connect(port))
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=work, args=(port,)) for _ in range(workers)]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIME_LIMIT_S)
        if p.is_alive():
            p.kill()
    seconds = time.perf_counter() - start
    finished = queue.finished_job_registry.count
    return {
        "jobs": finished,
        "seconds": seconds,
        "rate": finished / seconds,
        "left": queue.count,
        "enqueue_seconds": enqueued["seconds"],
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    sub = parser.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("enqueue")
    e.add_argument("--producers", type=int, default=1)
    e.add_argument("--jobs", type=int, default=1000)
    d = sub.add_parser("drain")
    d.add_argument("--workers", type=int, default=1)
    d.add_argument("--jobs", type=int, default=1000)
    d.add_argument("--producers", type=int, default=50)
    args = parser.parse_args()
    connect(args.port).flushall()
    if args.cmd == "enqueue":
        out = enqueue(args.port, args.producers, args.jobs)
    else:
        out = drain(args.port, args.workers, args.jobs, args.producers)
    json.dump(out, sys.stdout)
    print()


if __name__ == "__main__":
    main()
