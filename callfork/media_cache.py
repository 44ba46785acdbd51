"""Audio files that `<Play>` / SWML `play` give as URLs: download once, keep on disk, play locally.

The cache is keyed by URL; a cached file is revalidated with its ETag / Last-Modified (a 304 keeps
it). Only audio is accepted: WAV is stored as is, MP3 is converted to WAV with soundfile (so
FreeSWITCH needs no mod_shout), anything else (HTML error pages, images, text) is refused with a
`MediaError` naming the URL and what came back — the verb then skips, as Vobiz does.
Downloads are bounded in size and time. One download per URL at a time (other callers wait).
With private URLs not allowed ([server] allow_private_urls = false) the URL is checked first, the
connection dials only the public addresses that one lookup gave (webhooks.http_client's checked
pools), no redirect is followed and no proxy from the environment is used.
"""
from __future__ import annotations

import functools
import hashlib
import http.cookiejar
import io
import json
import logging
import os
from pathlib import Path

import gevent
import gevent.lock
import requests
import requests.adapters
from verbs.soundfile_threads import soundfile

from webhooks import UrlError, checked_addresses, clean_url, describe_request_error
from webhooks.http_client import pool_classes

log = logging.getLogger("callfork.media")

MAX_BYTES = 50 * 1024 * 1024
MAX_SECONDS = 30 * 60     # a prompt longer than this is not a prompt
AUDIO_TYPES = {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave", "audio/mpeg", "audio/mp3",
               "audio/mpeg3", "audio/x-mpeg-3"}


class MediaError(Exception):
    """A media URL that cannot be played (unreachable, not audio, too large)."""


class _CheckedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter on urllib3 pools whose connections dial only checked public addresses."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = pool_classes(
            functools.partial(checked_addresses, allow_private=False))


class MediaCache:
    def __init__(self, directory: Path, *, connect_timeout: float = 3, read_timeout: float = 15,
                 total_timeout: float = 60, user_agent: str = "callfork", allow_private: bool = True):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.timeouts = (connect_timeout, read_timeout)
        self.total_timeout = total_timeout  # a server trickling bytes must not hold a call forever
        self.user_agent = user_agent
        self.allow_private = allow_private   # [server] allow_private_urls
        self._locks: dict[str, gevent.lock.Semaphore] = {}
        self._get = requests.get   # a session of its own per download
        if not allow_private:
            session = requests.Session()
            session.trust_env = False    # a proxy would connect wherever the name leads it
            session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))  # keep none
            for prefix in ("http://", "https://"):
                session.mount(prefix, _CheckedAdapter())
            self._get = session.get

    def local_file(self, url: str) -> Path:
        """A local WAV with the audio at `url`; raises MediaError."""
        key = hashlib.sha256(url.encode()).hexdigest()[:32]
        lock = self._locks.setdefault(key, gevent.lock.Semaphore())
        with lock:
            timeout = gevent.Timeout(self.total_timeout,
                                     MediaError(f"{url}: download took longer than {self.total_timeout:g} s"))
            with timeout:
                return self._fetch(url, key)

    def _fetch(self, url: str, key: str) -> Path:
        wav = self.directory / f"{key}.wav"
        meta_path = self.directory / f"{key}.json"
        headers = {"User-Agent": self.user_agent}
        meta = {}
        if wav.exists() and meta_path.exists():
            try:
                meta = json.loads(meta_path.read_text())
            except ValueError:
                meta = {}
            if meta.get("etag"):
                headers["If-None-Match"] = meta["etag"]
            if meta.get("last_modified"):
                headers["If-Modified-Since"] = meta["last_modified"]
        try:
            clean_url(url, allow_private=self.allow_private)
        except UrlError as exc:
            raise MediaError(f"{url} is not allowed: {exc}") from None
        try:
            # with private targets refused, a redirect could lead to one: do not follow any
            resp = self._get(url, headers=headers, timeout=self.timeouts, stream=True,
                             allow_redirects=self.allow_private)
        except UrlError as exc:   # the name resolved to a private address as we connected
            raise MediaError(f"{url} is not allowed: {exc}") from None
        except requests.RequestException as exc:
            if wav.exists():
                log.warning("media %s unreachable (%s); playing the cached copy", url, exc)
                return wav
            raise MediaError(f"{url} is unreachable ({describe_request_error(exc)})") from None
        with resp:
            if resp.status_code == 304 and wav.exists():
                return wav
            if resp.status_code != 200:
                raise MediaError(f"{url} answered HTTP {resp.status_code}")
            data = self._read_bounded(resp, url)
            ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype and ctype not in AUDIO_TYPES and not ctype.startswith("audio/") \
                    and ctype != "application/octet-stream":
                raise MediaError(f"{url} is {ctype}, not audio")
            # decoding (MP3) is CPU work: off the hub, so live streams keep their 20 ms pace
            gevent.get_hub().threadpool.apply(self._store_as_wav, (data, wav, url))
            meta = {"url": url, "etag": resp.headers.get("ETag"), "last_modified": resp.headers.get("Last-Modified")}
            meta_path.write_text(json.dumps(meta))
            return wav

    @staticmethod
    def _read_bounded(resp, url: str) -> bytes:
        chunks, total = [], 0
        for chunk in resp.iter_content(64 * 1024):
            total += len(chunk)
            if total > MAX_BYTES:
                raise MediaError(f"{url} is larger than {MAX_BYTES // (1024 * 1024)} MB")
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _store_as_wav(data: bytes, wav: Path, url: str) -> None:
        try:
            info = soundfile.info(io.BytesIO(data))
        except Exception as exc:
            raise MediaError(f"{url} is not a WAV or MP3 file ({exc})") from None
        if info.duration > MAX_SECONDS:
            # a small MP3 can decode to hundreds of MB: refuse before decoding
            raise MediaError(f"{url} is {info.duration:.0f} s long; the limit is {MAX_SECONDS // 60} minutes")
        try:
            audio, rate = soundfile.read(io.BytesIO(data), dtype="int16", always_2d=True)
        except Exception as exc:
            raise MediaError(f"{url} is not a WAV or MP3 file ({exc})") from None
        if audio.shape[1] > 1:   # down-mix in int32, no float copy of the whole file
            audio = (audio.astype("int32").sum(axis=1) // audio.shape[1]).astype("int16")
        else:
            audio = audio[:, 0]
        tmp = wav.with_suffix(".tmp.wav")
        soundfile.write(tmp, audio, rate, subtype="PCM_16")
        os.replace(tmp, wav)
