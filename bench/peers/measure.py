"""Runs a command and measures its whole process tree: wall time, CPU time, peak memory.

    measure.py OUT.json -- COMMAND [ARGS...]

CPU seconds: user + system of every process of the tree, from getrusage(RUSAGE_CHILDREN) once all
have been reaped. This process makes itself a child subreaper, so descendants whose parent exits
first (Spark's JVM) are reparented to it and counted too.
Peak memory: the largest sum of the tree's resident set sizes, sampled every 50 ms with psutil, or
the largest single process's peak (ru_maxrss, exact) when that is larger.
Writes one JSON object to OUT.json; the command's own output passes through.
"""

import ctypes
import json
import os
import resource
import subprocess
import sys
import time

import psutil

PR_SET_CHILD_SUBREAPER = 36


def main():
    out, sep, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
    assert sep == "--" and cmd, __doc__
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    load_before = os.getloadavg()
    start = time.monotonic()
    child = subprocess.Popen(cmd)
    root = psutil.Process(child.pid)
    peak_tree = 0
    while child.poll() is None:
        try:
            procs = [root] + root.children(recursive=True)
        except psutil.NoSuchProcess:
            procs = []
        rss = 0
        for p in procs:
            try:
                rss += p.memory_info().rss
            except psutil.Error:
                pass
        peak_tree = max(peak_tree, rss)
        time.sleep(0.05)
    wall = time.monotonic() - start
    # Reap whatever the command left behind (reparented to us), so its CPU time counts.
    me = psutil.Process()
    for p in me.children(recursive=False):
        try:
            p.wait(timeout=60)
        except psutil.Error:
            pass
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                break
        except ChildProcessError:
            break
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "cmd": cmd,
        "exit_code": child.returncode,
        "wall_s": round(wall, 3),
        "user_s": round(usage.ru_utime, 3),
        "sys_s": round(usage.ru_stime, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "peak_rss_mib": round(max(peak_tree, usage.ru_maxrss * 1024) / 2**20, 1),
        "max_single_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    with open(out, "w") as f:
        json.dump(result, f)
    sys.exit(child.returncode)


if __name__ == "__main__":
    main()
