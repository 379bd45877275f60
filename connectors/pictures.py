"""Item pictures for targets that take an image only as its bytes (Exact Online's `Picture` base64 on
logistics/Items — `PictureUrl` and `PictureThumbnailUrl` are read-only; Business Central's
`items({id})/picture` content): the image URL is downloaded over the process's shared HTTP client:
at most `max_bytes`, and only raster image types. What was sent is remembered per item in Redis (the
URL, its ETag and the bytes' SHA-256): the same image is not uploaded again — a conditional GET
(If-None-Match) usually answers 304 without the bytes.

An image that cannot be used (gone, too large, not an image) is an expected failure: the item is
written without it and one log line names the URL and the fix. A shop that does not answer is a
TransientError (the job is retried).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import posixpath
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx
import redis

from gateway import keys
from gateway.errors import PermanentError, TransientError

log = logging.getLogger("koppel.pictures")

DEFAULT_MAX_BYTES = 5_000_000
PICTURE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/bmp", "image/webp"})
_TIMEOUT = httpx.Timeout(20.0, connect=5.0)


class PictureRejected(PermanentError):
    """The image cannot be sent to the target (gone, too large, not a raster image); names URL and fix."""


@dataclass(frozen=True)
class Picture:
    url: str
    name: str
    content: bytes
    etag: str | None

    @property
    def base64(self) -> str:
        return base64.b64encode(self.content).decode("ascii")

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


def picture_name(url: str) -> str:
    """The file name of the image URL's path ("hoodie-blue.jpg"), or "picture"."""
    name = posixpath.basename(unquote(urlsplit(url).path)).strip()
    return name[-100:] or "picture"


class Pictures:
    """Downloads item pictures and remembers, per item, the one the target (`title`) has."""

    def __init__(
        self, http: httpx.Client, conn: redis.Redis, cache: str, *, max_bytes: int = DEFAULT_MAX_BYTES,
        setting: str = "settings.picture_max_bytes", title: str = "the target",
    ) -> None:  # fmt: skip
        self.http, self.conn, self.cache, self.max_bytes, self.setting = http, conn, cache, max_bytes, setting
        self.title = title

    def known(self, item_id: str) -> dict[str, str] | None:
        raw = self.conn.hget(self.cache, item_id)
        if not raw:
            return None
        try:
            found = json.loads(keys.text(raw))
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    def fetch(self, url: str, item_id: str | None) -> Picture | None:
        """The picture to send for the item (None: the item has this image already, or it cannot be used)."""
        known = self.known(item_id) if item_id is not None else None
        same_url = known is not None and known.get("url") == url
        try:
            picture = self._download(url, known.get("etag") if known is not None and same_url else None)
        except PictureRejected as exc:
            log.warning("%s; the item is written without it", exc)
            return None
        if picture is None:
            return None  # 304: unchanged
        if same_url and known is not None and known.get("sha256") == picture.sha256:
            return None
        return picture

    def remember(self, item_id: str, picture: Picture) -> None:
        entry = {"url": picture.url, "etag": picture.etag or "", "sha256": picture.sha256}
        self.conn.hset(self.cache, item_id, json.dumps(entry))

    def _download(self, url: str, etag: str | None) -> Picture | None:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in ("http", "https"):
            raise PictureRejected(f"product image {url[:200]!r}: not an http(s) URL")
        headers = {"If-None-Match": etag} if etag else {}
        try:
            with self.http.stream("GET", url, headers=headers, timeout=_TIMEOUT, follow_redirects=True) as response:
                if response.status_code == 304:
                    return None
                if response.status_code >= 500 or response.status_code == 429:
                    raise TransientError(f"product image {url[:200]}: the shop answered {response.status_code}")
                if response.status_code != 200:
                    raise PictureRejected(
                        f"product image {url[:200]}: the shop answered {response.status_code}; fix the product's "
                        "image in the shop"
                    )
                kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if kind not in PICTURE_TYPES:
                    raise PictureRejected(
                        f"product image {url[:200]}: {kind or 'no content type'} is not a picture {self.title} takes "
                        f"({', '.join(sorted(PICTURE_TYPES))})"
                    )
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > self.max_bytes:
                    raise self._too_large(url)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        raise self._too_large(url)
                return Picture(url, picture_name(url), bytes(body), response.headers.get("etag"))
        except httpx.HTTPError as exc:
            raise TransientError(f"product image {url[:200]}: {type(exc).__name__}") from exc

    def _too_large(self, url: str) -> PictureRejected:
        return PictureRejected(
            f"product image {url[:200]}: larger than {self.max_bytes} bytes ({self.setting}); "
            "upload a smaller image in the shop"
        )
