"""The service benches' CPU accounting (bench/service.py `cpu_by_process`): a process that exited inside
the window still counts, through the parent that reaped it (the worker's decoder is replaced every 200
images, and its parent, the forkserver, reaps it)."""
from __future__ import annotations

import subprocess
import sys

from tests.api_process import process_cpu_seconds

# The child burns 0.3 s of CPU (its own clock, not the wall's: the same on any machine), exits and is
# waited for; the parent then says so and sleeps.
PARENT = """
import subprocess, sys, time
subprocess.run([sys.executable, "-c", "import time\\nwhile time.process_time() < 0.3: pass"], check=True)
print("reaped", flush=True)
time.sleep(60)
"""


def test_a_reaped_childs_cpu_counts_with_its_parent_only_when_asked():
    with subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True) as parent:
        try:
            assert parent.stdout.readline().strip() == "reaped"
            own, with_reaped = process_cpu_seconds(parent.pid), process_cpu_seconds(parent.pid, reaped=True)
        finally:
            parent.kill()
    assert with_reaped - own >= 0.29, (own, with_reaped)  # the child's 0.3 s, to a clock tick
