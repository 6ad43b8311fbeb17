"""What `make run` prints: where the API is and a curl session to try it, plus a test portrait."""
from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VAL_FACES = Path(os.environ.get("PORTRAIT_DATA_DIR", ROOT.parent / "shared" / "data")) / "faces" / "val"

HOWTO = """\
------------------------------------------------------------------------------------------
 API: {api}   (liveness {api}/healthz, readiness {api}/readyz)
 Ctrl-C stops everything.  Try it from another terminal, in {root}:

   # an API key for a local partner "local-dev" (printed once; keys are stored hashed);
   # the partner's webhook secret (whsec_...) is shown on stderr
   KEY=$(.venv/bin/python -m devstack key)

   # a 128x128 test portrait (a face from {faces}, or a drawn one when absent)
   .venv/bin/python -m devstack portrait portrait.png

   # submit: 202 and the job as JSON; keep its id
   curl -s -H "Authorization: Bearer $KEY" -F image=@portrait.png {api}/v1/jobs | tee job.json
   JOB=$(.venv/bin/python -c 'import json; print(json.load(open("job.json"))["id"])')

   # poll until "status" is "succeeded" (or "failed")
   curl -s -H "Authorization: Bearer $KEY" {api}/v1/jobs/$JOB

   # download the 512x512 result (the API redirects to a presigned S3 URL)
   curl -sL -H "Authorization: Bearer $KEY" -o result.png {api}/v1/jobs/$JOB/result
------------------------------------------------------------------------------------------"""


def print_howto(port: int) -> int:
    print(HOWTO.format(api=f"http://127.0.0.1:{port}", root=ROOT, faces=VAL_FACES), flush=True)
    return 0


def write_portrait(path: Path, size: int = 128) -> int:
    """A size x size RGB PNG: the first validation face, centre-cropped; else a drawn face."""
    from PIL import Image, ImageDraw

    faces = sorted(VAL_FACES.glob("*.jpg")) if VAL_FACES.is_dir() else []
    if faces:
        with Image.open(faces[0]) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            image = im.crop((left, top, left + side, top + side)).resize((size, size), Image.LANCZOS)
        source = faces[0]
    else:
        image = Image.new("RGB", (size, size), (96, 118, 140))
        draw = ImageDraw.Draw(image)
        s = size / 128
        draw.ellipse([34 * s, 20 * s, 94 * s, 108 * s], fill=(222, 184, 156))  # face
        for x in (50, 78):
            draw.ellipse([(x - 5) * s, 54 * s, (x + 5) * s, 60 * s], fill=(40, 30, 30))  # eyes
        draw.arc([50 * s, 76 * s, 78 * s, 92 * s], 20, 160, fill=(150, 60, 60), width=max(1, round(2 * s)))
        source = "a drawing (no face data found)"
    image.save(path, format="PNG")
    print(f"wrote {path} ({size}x{size}) from {source}")
    return 0


def dev_key(local_dir: Path, partner_name: str = "local-dev") -> int:
    """Create a key for a local partner (made on first use) in the database `make run` uses.

    The key alone goes to stdout (`KEY=$(python -m devstack key)`); the partner's webhook secret, which
    verifies the callbacks it receives, goes to stderr.
    """
    env_file = local_dir / "env"
    if not env_file.exists():
        print(f"{env_file} is missing: start the stack with `make run` first", file=sys.stderr)
        return 1
    from dotenv import dotenv_values

    # The stack's own settings win, as in honcho (`-e .local/env`), which runs the stack.
    os.environ.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    from sqlalchemy import select

    from api.cli_env import schema_problem
    from shared.accounts import PARTNER, Partner, create_key, create_partner
    from shared.db import make_engine, make_session_factory
    from shared.settings import Settings

    url = Settings().database_url
    problem = schema_problem(url)
    if problem:
        print(f"devstack key: {problem}", file=sys.stderr)
        return 1
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session, session.begin():
            partner = session.scalar(select(Partner).where(Partner.name == partner_name)) \
                or create_partner(session, partner_name)
            _, key = create_key(session, role=PARTNER, name="make-run", partner=partner)
            secret = partner.webhook_secret
    finally:
        engine.dispose()
    print(f"webhook secret of partner {partner_name!r} (verifies its callbacks): {secret}",
          file=sys.stderr, flush=True)
    print(key)
    return 0
