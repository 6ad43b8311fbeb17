"""The README's integration guide, run as written: its two Python files are taken from README.md
unchanged, the client run against the stack with the partner's key, the callback endpoint run as its
own server with the partner's webhook secret."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
import requests
from PIL import Image

from devstack.ports import free_port
from tests.imagegen import encode, synthetic_portrait
from tests.processes import ROOT

pytestmark = pytest.mark.system


def readme_file(name: str) -> str:
    """The README's ```python block whose first line is `# <name> …`."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [b for b in blocks if b.startswith(f"# {name}")]
    assert len(found) == 1, f"README.md has {len(found)} python blocks starting '# {name}'"
    return found[0]


@pytest.fixture
def callbacks_server(partner, tmp_path):
    (tmp_path / "portrait_callbacks.py").write_text(readme_file("portrait_callbacks.py"))
    port = free_port()
    log = open(tmp_path / "callbacks.log", "w+")
    proc = subprocess.Popen([sys.executable, "portrait_callbacks.py"], cwd=tmp_path, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PORT": str(port),
                                                           "PORTRAITS_WEBHOOK_SECRET": partner.secret})
    url = f"http://127.0.0.1:{port}/hooks/portraits"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url, timeout=1)
            break
        except requests.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "callbacks.log").read_text()
            time.sleep(0.2)
    yield url, tmp_path / "callbacks.log"
    proc.terminate()
    proc.wait(10)
    log.close()


def run_client(stack, partner, tmp_path, callback_url, *args) -> subprocess.CompletedProcess:
    (tmp_path / "portrait_client.py").write_text(readme_file("portrait_client.py"))
    env = {**os.environ, "PORTRAITS_API": stack.url, "PORTRAITS_KEY": partner.key,
           "PORTRAITS_CALLBACK_URL": callback_url}
    return subprocess.run([sys.executable, "portrait_client.py", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_readme_client_and_callback_endpoint_work_as_written(stack, partner, callbacks_server, tmp_path):
    callback_url, callback_log = callbacks_server
    (tmp_path / "grandmother.png").write_bytes(encode(synthetic_portrait(72)))
    done = run_client(stack, partner, tmp_path, callback_url, "grandmother.png", "order-7", "restored.png")
    assert done.returncode == 0, done.stdout + done.stderr
    with Image.open(tmp_path / "restored.png") as restored:
        assert restored.size == (288, 288)
    job_id = re.search(r"job (\S+): 72x72 → 288x288", done.stdout).group(1)
    deadline = time.monotonic() + 30
    while f"job.succeeded {job_id} succeeded" not in callback_log.read_text():
        assert time.monotonic() < deadline, callback_log.read_text()
        time.sleep(0.2)
    # Run again with the same order id: the same job, not a second one.
    again = run_client(stack, partner, tmp_path, callback_url, "grandmother.png", "order-7", "again.png")
    assert again.returncode == 0 and f"job {job_id}:" in again.stdout, again.stdout + again.stderr


def test_readme_client_stops_with_the_services_reason(stack, partner, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture at all")
    refused = run_client(stack, partner, tmp_path, "", "notes.png", "order-8", "out.png")
    assert refused.returncode == 1
    assert "HTTP 422 invalid_image" in refused.stderr and "Traceback" not in refused.stderr
