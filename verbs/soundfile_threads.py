"""soundfile, safe to call from gevent's thread pool (where callfork converts, trims and reads audio
files so that the hub is never blocked): import it from here.

soundfile serialises its file opens with a class-level `threading.Lock` made when it is imported;
callfork imports it after `monkey.patch_all()`, so that lock is a gevent lock, which real threads
contending for it can deadlock on (two recordings converted at once left a pool thread, and the
greenlet waiting for it, blocked for good: tests/test_twiml_review.py). Here it becomes a real lock.
"""
import soundfile
from gevent import monkey

soundfile.SoundFile._sf_error_lock = monkey.get_original("threading", "Lock")()

__all__ = ["soundfile"]
