"""The pages in headless Chromium against the Procfile's processes: a partner signs in, uploads a
portrait, watches it finish, compares before and after, downloads it as is and fitted to a print; an
admin requeues jobs that really failed; and what must be refused is. No wait depends on this CPU's
speed: jobs run on the paced worker (tests/system), and every wait is for a state, not a duration."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from model.print_size import fit_to_print, parse_print_size
from tests.browser.conftest import PHONE
from tests.imagegen import encode, synthetic_portrait
from tests.system.conftest import TILE

pytestmark = pytest.mark.browser
LONG = 120_000  # ms: the most any state may take to arrive (a job of a few seconds, a worker restart)


def expect(locator):
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def sign_in(page, key: str, then: str = "/") -> None:
    page.goto(then)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def portrait_file(side: int, seed: int = 0, name: str = "portrait.png") -> dict:
    return {"name": name, "mimeType": "image/png", "buffer": encode(synthetic_portrait(side, seed))}


def downloaded(page, link_text: str) -> Image.Image:
    with page.expect_download() as info:
        page.get_by_role("link", name=re.compile(link_text)).click()
    with open(info.value.path(), "rb") as f:
        return Image.open(io.BytesIO(f.read()))


def test_a_partner_restores_compares_and_downloads_a_portrait(page, partner, stack):
    sign_in(page, partner.key)
    expect(page.get_by_role("heading", name="Restore a portrait")).to_be_visible()

    side = 8 * TILE  # 64 tiles on the paced worker
    page.get_by_label("Photo to restore").set_input_files(portrait_file(side))
    facts = page.locator("#preview-facts")
    expect(facts).to_contain_text(f"This photo is {side} × {side} px")
    expect(facts).to_contain_text(f"{4 * side} × {4 * side} px")
    expect(facts).to_contain_text("11 × 14 in: ")  # the print sizes, worked out in the page
    page.get_by_role("button", name="Restore this portrait").click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    job_id = page.url.rsplit("/", 1)[1]

    expect(page.locator("#job-percent")).to_have_text("100 %", timeout=LONG)  # polled, then reloaded
    expect(page.locator("#job-progress")).to_have_attribute("value", "100")
    expect(page.locator("#job-label .badge")).to_have_text("Ready")

    slider = page.locator(".compare-range")
    expect(slider).to_be_visible()
    page.wait_for_function("""() => [...document.querySelectorAll('.compare img')]
                                    .every(img => img.complete && img.naturalWidth > 0)""")
    natural = "all => all.map(i => [i.naturalWidth, i.naturalHeight])"
    sizes = page.eval_on_selector_all(".compare img", natural)
    assert sorted(sizes) == [[side, side], [4 * side, 4 * side]]
    slider.focus()
    for _ in range(5):
        page.keyboard.press("ArrowLeft")
    assert page.locator(".compare-before").evaluate("el => el.style.clipPath") == "inset(0px 55% 0px 0px)"

    assert downloaded(page, "^Restored portrait").size == (4 * side, 4 * side)  # exactly 4x
    fitted = downloaded(page, "Fitted to 11 × 14 in")
    assert fitted.size == fit_to_print(4 * side, 4 * side, parse_print_size("11x14in"), 300)
    assert [round(d) for d in fitted.info["dpi"]] == [300, 300]

    page.get_by_role("link", name="Your portraits", exact=True).click()
    expect(page.get_by_role("link", name=f"Portrait {job_id[:8]}")).to_be_visible()
    page.get_by_label("Show").select_option("failed")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("link", name=f"Portrait {job_id[:8]}")).to_have_count(0)
    assert partner.key not in stack.log()  # the key is never logged


def test_a_refused_file_is_explained_in_plain_words(page, partner):
    sign_in(page, partner.key)
    page.get_by_label("Photo to restore").set_input_files(
        {"name": "grandmother.jpg", "mimeType": "image/jpeg", "buffer": b"%PDF-1.4 not a photo at all"})
    page.get_by_role("button", name="Restore this portrait").click()
    message = page.locator("#upload-message")
    expect(message).to_contain_text("not a kind of picture the service accepts")
    expect(message).to_contain_text("JPEG, PNG, WebP, BMP or TIFF")
    assert page.url.endswith("/")  # nothing was created; the form stays


def test_an_admin_requeues_jobs_that_really_failed(page, partner, admin_key, stack_storage):
    busy = partner.client.submit(encode(synthetic_portrait(16 * TILE))).json()["id"]  # keeps the worker busy
    # The worker reads the next job's original while its model runs (WORKER_OVERLAP): this one's, before
    # the deletes below; the victims after it wait for the model, unread.
    partner.client.submit(encode(synthetic_portrait(TILE)))
    partner.client.wait(busy, until=lambda j: j["status"] == "running")
    victims = [partner.client.submit(encode(synthetic_portrait(40, seed=i))).json()["id"] for i in (1, 2)]
    originals = {}
    listed = stack_storage.client.list_objects(stack_storage.bucket, prefix="partners/", recursive=True)
    stored = [o.object_name for o in listed]
    for job_id in victims:  # deleted before the worker reaches them: a real, permanent `original_missing`
        key = next(name for name in stored if f"/jobs/{job_id}/original" in name)
        originals[key] = stack_storage.get(key)
        stack_storage.delete(key)
    partner.client.post(f"/v1/jobs/{busy}/cancel")
    for job_id in victims:
        assert partner.client.wait(job_id)[0]["error_code"] == "original_missing"
    for key, data in originals.items():  # restored: a requeue can now succeed
        stack_storage.put(key, data, "image/png")

    sign_in(page, admin_key)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    failed = page.get_by_role("region", name="Failed jobs")
    for job_id in victims:
        row = failed.get_by_role("row").filter(has_text=job_id[:8])
        expect(row).to_contain_text("original_missing")
        expect(row).to_contain_text(partner.name)

    page.get_by_role("link", name=victims[0][:8]).click()  # one: from its page, with its history
    expect(page.get_by_role("heading", name=f"Job {victims[0][:8]}")).to_be_visible()
    expect(page.get_by_role("region", name="History")).to_contain_text("NoSuchKey")  # internal detail
    page.get_by_label("Reason for the requeue").fill("original restored")
    page.get_by_role("button", name="Requeue", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Requeued")

    page.get_by_role("link", name="Overview", exact=True).click()  # the other: ticked in the list, in bulk
    page.get_by_label(f"Select job {victims[1][:8]}").check()
    page.get_by_label("Reason for the requeue").fill("originals restored")
    page.get_by_role("button", name="Requeue selected jobs").click()
    expect(page.get_by_role("status")).to_contain_text("Requeued 1 of 1 selected jobs")

    for job_id in victims:
        assert partner.client.wait(job_id)[0]["status"] == "succeeded"
    page.goto(f"/admin/jobs/{victims[0]}")
    expect(page.locator(".badge").first).to_have_text("Ready")
    history = page.get_by_role("region", name="History")
    expect(history).to_contain_text("original restored")
    expect(history).to_contain_text("key:ops")
    page.get_by_role("link", name="Find jobs").click()
    page.get_by_label("Id, error code or error text").fill(victims[1][:8])  # search by id prefix
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("heading", name="1 job found")).to_be_visible()


def test_a_partner_session_cannot_open_the_dashboard(page, partner):
    sign_in(page, partner.key)
    response = page.goto("/admin")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not for this key")).to_be_visible()


def test_a_form_posted_without_its_csrf_token_is_refused(page, partner):
    sign_in(page, partner.key)
    page.eval_on_selector("form.signout input[name=csrf_token]", "input => input.remove()")
    with page.expect_response(lambda r: r.url.endswith("/sign-out")) as answer:
        page.get_by_role("button", name="Sign out").click()
    assert answer.value.status == 400
    expect(page.get_by_role("heading", name="This did not work")).to_be_visible()
    assert page.goto("/jobs").url.endswith("/jobs")  # still signed in: the forged sign-out did nothing


def test_another_partners_job_is_not_found(page, partner, other_partner):
    job_id = partner.client.submit(encode(synthetic_portrait(40, seed=7))).json()["id"]
    sign_in(page, other_partner.key)
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/original", f"/jobs/{job_id}/status"):
        assert page.goto(path).status == 404, path
    page.goto("/jobs")
    expect(page.get_by_role("link", name=f"Portrait {job_id[:8]}")).to_have_count(0)


def test_pages_fit_a_phone_and_are_keyboard_operable(browser, stack, partner):
    context = browser.new_context(base_url=stack.url, viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    try:
        page.goto("/")
        expect(page.get_by_label("API key")).to_be_focused()  # typed into at once, sent with Enter
        page.keyboard.type(partner.key)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Restore a portrait")).to_be_visible()
        page.keyboard.press("Tab")  # the skip link first, with a visible focus ring
        focused = page.locator(":focus")
        expect(focused).to_have_text("Skip to content")
        # Retried, not read once: right after the sign-in redirect the stylesheet may still be loading,
        # and until it applies Chromium draws its own ring (outline-style "auto"), not ours.
        expect(focused).to_have_css("outline-style", "solid")
        page.keyboard.press("Enter")
        expect(page.locator("main")).to_be_focused()
        job_id = partner.client.submit(encode(synthetic_portrait(48, seed=3))).json()["id"]
        partner.client.wait(job_id)
        for path in ("/", "/jobs", f"/jobs/{job_id}"):
            page.goto(path)
            page.wait_for_load_state("networkidle")
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{path} is {width}px wide on a {PHONE['width']}px phone"
    finally:
        context.close()
