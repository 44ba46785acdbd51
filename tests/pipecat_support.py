"""pipecat's real serializers for the tests, in their own venv ($CALLFORK_SERIALIZERS_PYTHON or
.venv-serializers, which `make test` creates): `Driver` runs tests/pipecat_driver.py there and
talks JSON lines with it; `needs_pipecat` skips a test when that venv is missing."""
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYTHON = os.environ.get("CALLFORK_SERIALIZERS_PYTHON") or str(ROOT / ".venv-serializers" / "bin" / "python")

needs_pipecat = pytest.mark.skipif(not os.path.exists(PYTHON),
                                   reason=f"pipecat serializers venv not found ({PYTHON}); "
                                          "set CALLFORK_SERIALIZERS_PYTHON")


class Driver:
    """One pipecat_driver.py subprocess (one serializer)."""

    def __init__(self):
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([PYTHON, str(Path(__file__).parent / "pipecat_driver.py")],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err)

    def __call__(self, **req):
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.err.seek(0)
            raise AssertionError("pipecat driver died: " + self.err.read().decode()[-2000:])
        return json.loads(line)

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(5)
