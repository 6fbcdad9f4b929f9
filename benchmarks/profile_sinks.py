"""Where an export worker's time goes: each sink's export function under cProfile, on this thread.

    python benchmarks/profile_sinks.py                  # stdout, otlp, langsmith; 500 runs' events each
    python benchmarks/profile_sinks.py otlp --runs 2000 --top 30

The events of ``--runs`` runs of the workload are recorded, then handed to the sink's export function
(what its worker calls) in batches of 512, on the main thread so that cProfile sees them; the OTLP and
LangSmith sinks post to the loopback backends of ``sinks.py``. The LangSmith SDK does part of its work
(multipart bodies, HTTP) on threads of its own, which cProfile does not see: the CPU those threads used
is printed beside the profile. cProfile slows every Python call, so read the shares, not the times.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

os.environ["TRACEDAGENT_DISABLE_PLUGIN_AUTOLOAD"] = "1"

import telemetry as T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("sinks", nargs="*", default=["stdout", "otlp", "langsmith"])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--top", type=int, default=20)
    args = parser.parse_args()
    T.quiet_exporter_logs()
    sinks = T.Sinks()
    try:
        events = asyncio.run(T.record_events(args.runs))
        for name in args.sinks:
            log = Path(tempfile.gettempdir()) / f"tracedagent-profile-{name}.log"
            tracers = T.make_tracers(
                sinks.urls["otlp"], sinks.urls["langsmith"], log, max_queue=10**7, interval_s=10**6
            )
            tracer = getattr(tracers, name)
            export = tracer._pipeline._export
            export(events[:240])  # warm: connections, the SDK's /info
            tracer.flush(30)
            profiler = cProfile.Profile()
            cpu0, main0 = time.process_time(), time.thread_time()
            profiler.enable()
            for k in range(0, len(events), 512):
                export(events[k : k + 512])
            profiler.disable()
            tracer.flush(60)
            others = (time.process_time() - cpu0) - (time.thread_time() - main0)
            print(
                f"\n## {name}: {len(events)} events; other threads' CPU (not profiled): "
                f"{others / len(events) * 1e6:.1f} us/event\n"
            )
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(args.top)
            tracer.shutdown(10)
    finally:
        sinks.close()


if __name__ == "__main__":
    main()
