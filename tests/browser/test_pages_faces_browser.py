"""The console's face picker in Chromium against the running processes: a group photo is chosen, its
faces are offered with their thumbnails, the second person is picked, and the restored portrait is
exactly 4x that person's crop, compared before and after on that region."""
from __future__ import annotations

import re

import pytest

from tests.browser.test_pages import LONG, expect, sign_in
from tests.conftest import require_faces
from tests.group_photo import group_photo
from tests.imagegen import encode

pytestmark = [pytest.mark.browser, pytest.mark.data]


def test_a_partner_picks_one_face_of_a_group_photo(page, partner):
    paths = require_faces()
    rgb, _ = group_photo([paths[i] for i in (8, 88, 188)], [110, 80, 60], size=(760, 400))
    sign_in(page, partner.key)
    page.get_by_label("Photo to restore").set_input_files(
        {"name": "family.png", "mimeType": "image/png", "buffer": encode(rgb)})
    status = page.locator("#faces-status")
    expect(status).to_contain_text("3 faces were found", timeout=LONG)
    expect(page.locator(".face-choice canvas")).to_have_count(3)
    expect(page.get_by_label(re.compile("^The whole photo"))).to_be_checked()

    page.get_by_label(re.compile("^Face 2 from the left")).check()
    crop = page.locator("#crop").input_value()
    x, y, w, h = (int(v) for v in crop.split(","))
    expect(page.locator("#preview-facts")).to_contain_text(f"This photo is {w} × {h} px")
    page.get_by_role("button", name="Restore this portrait").click()
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"))
    expect(page.locator("#job-label .badge")).to_have_text("Ready", timeout=LONG)
    expect(page.locator(".facts")).to_contain_text(f"{w} × {h} px at ({x}, {y})")
    page.wait_for_function("""() => [...document.querySelectorAll('.compare img')]
                                    .every(img => img.complete && img.naturalWidth > 0)""")
    natural = "all => all.map(i => [i.naturalWidth, i.naturalHeight])"
    sizes = page.eval_on_selector_all(".compare img", natural)
    assert sorted(sizes) == [[w, h], [4 * w, 4 * h]]
