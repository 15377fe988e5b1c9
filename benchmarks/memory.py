"""Peak memory of the current process, for the benchmarks' fresh-process measurements."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB.

    Linux's VmHWM starts afresh at exec; ru_maxrss would also count the memory of the forked parent
    that started this process. Elsewhere ru_maxrss is the best available.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
