"""Screenshots of every page at desktop and phone width, for the README: docs/screenshots/*.png.

    .venv/bin/python -m devstack exec --services postgres,redis -- \
        .venv/bin/python -m tests.browser.screenshots

It runs the function below under pytest with the browser tests' fixtures (tests/browser/conftest.py):
the Procfile's processes with their own database, keys made with the `portraits` CLI, real jobs (faces
from ../shared/data when present, else drawn ones), one of them made to fail for real. Not collected by
`make test` (the file name does not start with test_).
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from PIL import Image

from tests.browser.conftest import DESKTOP, PHONE
from tests.conftest import VAL_FACES
from tests.imagegen import encode, synthetic_portrait

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "screenshots"


def face(index: int, side: int, gray: bool = False) -> bytes:
    """A validation face shrunk to `side` px (the small photos families send) as JPEG, else a drawn face."""
    faces = sorted(VAL_FACES.glob("*.jpg")) if VAL_FACES.is_dir() else []
    if not faces:
        return encode(synthetic_portrait(side, seed=index))
    with Image.open(faces[index % len(faces)]) as im:
        im = im.convert("L" if gray else "RGB").resize((side, round(side * im.height / im.width)), Image.BOX)
    buffer = io.BytesIO()
    im.save(buffer, format="JPEG", quality=72)
    return buffer.getvalue()


def shoot(page, name: str, full_page: bool = True, phone_at: str | None = None) -> None:
    """The whole page at desktop width; the first screen (from `phone_at`, when given) on a phone."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_load_state("networkidle")
        if label == "phone" and phone_at:
            page.locator(phone_at).evaluate("el => el.scrollIntoView({block: 'start'})")
        page.screenshot(path=str(OUT / f"{name}-{label}.png"), full_page=full_page and label == "desktop")
    page.set_viewport_size(DESKTOP)


def test_screenshots(page, partner, other_partner, admin_key, stack_storage):
    from playwright.sync_api import expect

    OUT.mkdir(parents=True, exist_ok=True)
    sides = (132, 112, 150)
    done = [partner.client.submit(face(i, side, gray=i == 2)).json()["id"] for i, side in enumerate(sides)]
    other_partner.client.submit(face(5, 120))
    for job_id in done:
        partner.client.wait(job_id)
    busy = partner.client.submit(encode(synthetic_portrait(512, seed=9))).json()["id"]
    partner.client.submit(face(6, 96))  # read ahead while the model runs (WORKER_OVERLAP): not a victim
    partner.client.wait(busy, until=lambda j: j["status"] == "running")
    failing = [partner.client.submit(face(i, 96)).json()["id"] for i in (7, 8)]
    listed = stack_storage.client.list_objects(stack_storage.bucket, prefix="partners/", recursive=True)
    wanted = [f"/jobs/{job_id}/original" for job_id in failing]
    originals = {o.object_name: None for o in listed if any(w in o.object_name for w in wanted)}
    for key in originals:  # a real `original_missing`, as tests/system/test_admin_requeue.py makes one
        originals[key] = stack_storage.get(key)
        stack_storage.delete(key)
    partner.client.post(f"/v1/jobs/{busy}/cancel")
    for job_id in failing:
        partner.client.wait(job_id)
    for key, data in originals.items():  # restored, as an operator would before requeueing
        stack_storage.put(key, data, "image/jpeg")

    page.goto("/")
    shoot(page, "sign-in")
    page.get_by_label("API key").fill(partner.key)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Photo to restore").set_input_files(
        {"name": "grandfather.jpg", "mimeType": "image/jpeg", "buffer": face(3, 240)})
    expect(page.locator("#preview-facts")).to_contain_text("11 × 14 in")
    shoot(page, "upload")

    page.get_by_role("button", name="Restore this portrait").click()  # large enough to be seen running
    page.wait_for_url("**/jobs/*")
    page.wait_for_function("() => document.querySelector('#job').dataset.busy === 'true' && "
                           "Number(document.querySelector('#job-progress').value) >= 25", timeout=120_000)
    page.evaluate("() => { for (let t = setTimeout(() => {}, 0); t > 0; t--) clearTimeout(t); }")
    shoot(page, "progress", full_page=False)  # the page stops polling: the picture holds still

    page.goto(f"/jobs/{done[0]}")
    page.wait_for_function("() => [...document.querySelectorAll('.compare img')].every(i => i.naturalWidth)")
    shoot(page, "result", phone_at="#compare-title")
    page.goto("/jobs")
    shoot(page, "jobs")

    page.context.clear_cookies()
    page.goto("/")
    page.get_by_label("API key").fill(admin_key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    shoot(page, "admin-overview")
    page.goto("/admin/jobs?status=failed")
    shoot(page, "admin-failed")
    page.goto(f"/admin/jobs/{failing[0]}")
    shoot(page, "admin-job")


def main() -> int:
    return pytest.main(["-q", "-p", "no:cacheprovider", "-o", "addopts=", __file__])


if __name__ == "__main__":
    sys.exit(main())
